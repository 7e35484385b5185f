"""The suite's experiments, split by job. Each package may import those listed before it, never one after:

- ``datasets/``: what each dataset is on disk (specs, parsing, verification) and how it gets there
  (sources, fetching, packing); the engine reads data through the specs only;
- ``engine/``: everything a run's numbers pass through (config, data on the device, augmentation, the
  step: eager, compiled or one CUDA graph, center rules, the trainer); its entry is ``engine.run.run_one``;
- ``ledger/``: what is recorded: rows, their lock, run claims, code fingerprints, provenance, event logs;
- ``runners/``: which runs train, where and in what order: presets, sweep axes, plans, backends, bundles;
  ``probes/``: checks and measurements of the fast paths (graph-pool probe, self-check, plain loop);
- ``tuning/``: equal-budget studies and their trials;
- ``report/``: tables, pictures and the README's generated sections, from the ledger's rows;
- ``cli/``: argument types (``cli/types.py``, usable anywhere), the commands' shared flags with their
  translation into typed objects (``cli/recipe.py``, for commands only) and how a command runs
  (``cli/entry.py``: flags first, a Ctrl-C while it loads is one line);
- ``plots.py`` (pictures from arrays) and ``text.py`` (words), usable anywhere.

The modules directly in ``experiments/`` are the commands (``python -m experiments.NAME``, ``./suite
NAME``): each parses its flags into typed objects and calls the packages. docs/architecture.md draws the
flow; tests/test_architecture.py checks the order.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
