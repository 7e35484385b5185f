"""Table cells from numbers: a mean with its 95% interval, points, seed counts, a paired comparison in words."""
from __future__ import annotations

import pandas as pd

from experiments.report.stats import mean_ci


def fmt_ci(values, digits: int = 4) -> str:
    values = [v for v in values if not pd.isna(v)]
    if not values:
        return "—"
    mean, half = mean_ci(values)
    return f"{mean:.{digits}f}" if half is None else f"{mean:.{digits}f} ± {half:.{digits}f}"


def points(value: float) -> str:
    return f"{100 * value:+.2f}"


def seeds_text(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} seeds"


def comparison_sentence(a: str, b: str, d) -> str:
    if d.pairs == 0:
        return "no pair yet"
    if d.pairs == 1:
        return f"one pair: no interval ({a} − {b} = {points(d.mean)} points)"
    side = "above" if d.mean >= 0 else "below"
    text = f"{a} is {abs(100 * d.mean):.2f} ± {100 * d.half_width:.2f} points {side} {b} over {d.pairs} seeds"
    if d.p_value is not None:
        text += f" (paired t-test p = {d.p_value:.3g})"
    if abs(d.mean) <= d.half_width:
        text += "; the interval includes 0"
    return text
