"""Words for a reader, usable anywhere: counts with their noun."""

from __future__ import annotations


def plural(n: int, word: str) -> str:
    """``1 run``, ``2 runs``, ``2 studies``."""
    if n == 1:
        return f"{n} {word}"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return f"{n} {word[:-1]}ies"
    return f"{n} {word}s"


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 20 min``: a duration as a reader says it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
