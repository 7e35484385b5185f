"""Words for a reader, usable anywhere: counts with their noun."""

from __future__ import annotations


def plural(n: int, word: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 20 min``: a duration as a reader says it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
