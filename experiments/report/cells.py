"""Table cells from numbers: a mean with its 95% interval, points, seed counts, a paired comparison in words."""

from __future__ import annotations

import pandas as pd

from experiments.report.stats import mean_ci
from experiments.text import plural

__all__ = [
    "COUNT_RULE",
    "comparison_sentence",
    "fmt_ci",
    "paired",
    "pairs_text",
    "plural",
    "points",
    "runs_text",
]


def fmt_ci(values, digits: int = 4) -> str:
    values = [v for v in values if not pd.isna(v)]
    if not values:
        return "—"
    mean, half = mean_ci(values)
    return f"{mean:.{digits}f}" if half is None else f"{mean:.{digits}f} ± {half:.{digits}f}"


def points(value: float) -> str:
    return f"{100 * value:+.2f}"


COUNT_RULE = (
    "A run that diverged or failed enters no mean: every mean is over a group's finished runs, and "
    "beside it stands how many of the group's runs finished, and how many diverged or failed "
    "(`4/5, 1 diverged`); a paired comparison pairs the seeds finished in both groups and says how many "
    "pairs a divergence or failure removed."
)


def runs_text(g: pd.DataFrame) -> str:
    """How many of a group's runs finished (``5``), or ``4/5, 1 diverged``, ``3/5, 1 diverged, 1 failed``:
    the count that stands beside every mean (COUNT_RULE)."""
    finished = int((g["status"] == "finished").sum())
    if finished == len(g):
        return str(finished)
    lost = [
        f"{n} {status}"
        for status in ("diverged", "failed")
        if (n := int((g["status"] == status).sum()))
    ]
    return ", ".join([f"{finished}/{len(g)}"] + lost)


def paired(a: pd.DataFrame, b: pd.DataFrame, metric: str):
    """The paired difference ``a - b`` of ``metric`` over the seeds finished in both groups, and the pairs that
    a run that diverged or failed removed: ``{"diverged": n, "failed": n}`` (the status of the run that is not
    finished; a seed of only one group is no pair)."""
    from experiments.report.stats import paired_difference

    status_a, status_b = dict(zip(a["seed"], a["status"])), dict(zip(b["seed"], b["status"]))
    removed = {"diverged": 0, "failed": 0}
    for seed in set(status_a) & set(status_b):
        lost = [s for s in (status_a[seed], status_b[seed]) if s != "finished"]
        if lost:
            removed["diverged" if "diverged" in lost else "failed"] += 1
    fa, fb = a[a["status"] == "finished"], b[b["status"] == "finished"]
    pairs = fa[["seed", metric]].merge(fb[["seed", metric]], on="seed")
    return paired_difference(pairs[f"{metric}_x"], pairs[f"{metric}_y"]), removed


def pairs_text(d, removed: dict) -> str:
    """``4``, or ``4 (1 removed: diverged)``."""
    lost = ", ".join(f"{n} {why}" for why, n in removed.items() if n)
    return f"{d.pairs}" + (f" ({sum(removed.values())} removed: {lost})" if lost else "")


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
