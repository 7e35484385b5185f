"""Datasets: what each one is on disk and how to parse it (``specs``: sizes, md5s, label counts, the
parsers; the engine reads data through it), and how it gets into the data root (``sources``: local
files, downloads, package registries, packing for a machine without network)."""
