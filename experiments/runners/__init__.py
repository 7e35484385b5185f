"""Runners: which runs a command trains and where. ``presets`` (named grids), ``sweep`` (sweep axes of
recipe fields and loss options), ``plan`` (what is recorded already, usable datasets, the time budget,
estimates), ``backends`` (this machine, Ray, SLURM: each trains runs through the engine and records their
rows), ``bundle`` (a grid carried between machines in tar files)."""

BACKENDS = ("local", "ray", "slurm")  # where a grid's runs train: experiments/runners/backends.py
