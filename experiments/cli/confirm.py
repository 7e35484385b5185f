"""Long work is announced: a command prints its estimate before it trains and, past an hour on a CPU, asks
on a terminal (off one it needs ``--yes``). Torch-free."""

from __future__ import annotations

import sys

from experiments.text import duration

LONG_ON_CPU_S = 3600.0  # past this on a CPU, a command asks before it trains


def long_work(
    command: str, what: str, seconds: float | None, how: str, on_cpu: bool, yes: bool, less: str
):
    """Print ``command: what, about <seconds> on this device (how)``; the refusal's line, or None to go on.

    Past ``LONG_ON_CPU_S`` on a CPU without ``yes``: on a terminal the question (Ctrl-C or Ctrl-D at it is
    a no), off one a refusal naming the estimate, ``--yes`` and how to ask for ``less`` work."""
    if seconds is None:
        print(f"{command}: {what}; no estimate on this device ({how})")
        return None
    print(f"{command}: {what}, about {duration(seconds)} on this device ({how})")
    if not on_cpu or seconds <= LONG_ON_CPU_S or yes:
        return None
    if not sys.stdin.isatty():
        return (
            f"it would train for about {duration(seconds)} on this CPU; give --yes to start it "
            f"off a terminal (or {less})"
        )
    try:
        answer = input(f"train for about {duration(seconds)} on this CPU? [y/N] ").strip().lower()
    except (EOFError, KeyboardInterrupt):  # Ctrl-D or Ctrl-C at the question: no
        print()
        return "not started (no answer)"
    return None if answer in ("y", "yes") else "not started (answered no)"


def add_yes_flag(parser) -> None:
    """``--yes``: start long work without the question (``long_work``)."""
    parser.add_argument(
        "--yes",
        action="store_true",
        help="start without asking when the estimate is over an hour on a CPU (needed off a terminal)",
    )
