"""Does this Python have what the suite needs? (standard library only: it runs before any install)

    python3 experiments/check_env.py [--tests]     # exit 0: yes; 1: no, with one line per missing piece

Reads the supported ranges from ``supported.txt`` (the one place they are
stated); ``--tests`` also checks the lines marked ``; tests``.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from importlib import metadata
from pathlib import Path

SUPPORTED = Path(__file__).resolve().parent.parent / "supported.txt"


def version_tuple(text: str) -> tuple[int, ...]:
    """``2.11.0+cu130`` -> ``(2, 11, 0)``: the leading numeric release."""
    return tuple(int(p) for p in re.match(r"[\d.]*\d", text).group().split("."))


def requirements(tests: bool) -> list[tuple[str, tuple[int, ...]]]:
    out = []
    for line in SUPPORTED.read_text().splitlines():
        line, _, marker = line.split("#")[0].partition(";")
        if line.strip() and (tests or marker.strip() != "tests"):
            name, minimum = line.strip().split(">=")
            out.append((name.strip(), version_tuple(minimum)))
    return out


def problems(tests: bool) -> list[str]:
    found = []
    for name, minimum in requirements(tests):
        if name == "python":
            have = ".".join(map(str, sys.version_info[:3]))
        else:
            try:
                have = metadata.version(name)
            except metadata.PackageNotFoundError:
                found.append(f"{name}: not installed (need >= {'.'.join(map(str, minimum))})")
                continue
        if version_tuple(have) < minimum:
            found.append(f"{name}: {have} installed, need >= {'.'.join(map(str, minimum))}")
    return found


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    found = problems(tests="--tests" in argv)
    for line in found:
        print(f"{sys.executable}: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (
        KeyboardInterrupt
    ):  # the ./suite wrapper's first step: one line, then ended by SIGINT as Python would be
        print(
            "interrupted (Ctrl-C) while the command was starting (checking its Python): nothing was written; "
            "the same command starts it again",
            file=sys.stderr,
        )
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
