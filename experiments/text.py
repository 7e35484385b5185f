"""Words for a reader, usable anywhere: counts with their noun."""

from __future__ import annotations


def plural(n: int, word: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{n} {word}" + ("" if n == 1 else "s")
