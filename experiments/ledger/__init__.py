"""The ledger: what is recorded about runs. ``rows`` (runs.csv and epochs.csv under one lock, rows from
results, configs from rows), ``claims`` (which runner trains which run), ``fingerprint`` (the code each row
was made by), ``provenance`` (the code version), ``tensorboard`` (each run's event files)."""
