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
- ``cli/``: argument types (``cli/types.py``, usable anywhere) and the commands' shared flags with their
  translation into typed objects (``cli/recipe.py``, for commands only).

The modules directly in ``experiments/`` are the commands (``python -m experiments.NAME``, ``./suite
NAME``): each parses its flags into typed objects and calls the packages. docs/architecture.md draws the
flow; tests/test_architecture.py checks the order.
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STARTING = ("interrupted (Ctrl-C) while the command was starting (loading its modules, before its main began): "
            "nothing was written; the same command starts it again")


def _ctrl_c_at_start_up(kind, value, tb, default=sys.excepthook) -> None:
    """``sys.excepthook`` of every command: a Ctrl-C that no frame of a command's ``main`` saw (it came while
    Python imported torch and the rest, which takes seconds) is one line, not a traceback; the process still
    ends by SIGINT (exit status 130 in a shell). Every other exception goes to Python's own hook. The commands
    say themselves what a Ctrl-C inside their ``main`` keeps."""
    frames, step = [], tb
    while step is not None:
        frames.append(step.tb_frame.f_code)
        step = step.tb_next
    in_main = any(code.co_name == "main" and Path(code.co_filename).resolve().is_relative_to(REPO)
                  for code in frames)
    if issubclass(kind, KeyboardInterrupt) and not in_main:
        print(STARTING, file=sys.stderr)
        return
    default(kind, value, tb)


sys.excepthook = _ctrl_c_at_start_up
