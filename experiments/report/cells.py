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
    "pair_refusal",
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
    "(`4/5, 1 diverged`); a paired comparison pairs the seeds finished in both groups and recorded by the "
    "same committed code on the same device (thread count and instruction set), and says how many pairs a "
    "divergence, a failure, uncommitted or other code, or another device removed."
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


PAIR_REFUSALS = {
    "other code": "recorded by other code (two runs pair when both are recorded by the code as it is now, "
    "or by one commit)",
    "uncommitted code": "recorded by uncommitted code (`-dirty`: which code made its numbers cannot be "
    "named, so it pairs with nothing)",
    "other device": "recorded on another device, thread count or instruction set (one CPU's AVX2 and "
    "AVX-512 paths differ by up to 10 points after one epoch)",
}


def pair_refusal(ra, rb) -> str | None:
    """Why two runs of one seed cannot be paired, or None when they can: a pair compares losses, so both runs
    are recorded by the same code (both by the code as it is now, or by the same clean commit) on the same
    device (its label names the thread count and the CPU's instruction set)."""
    if str(ra.get("device", "")) != str(rb.get("device", "")):
        return "other device"
    va, vb = str(ra.get("code_version", "")), str(rb.get("code_version", ""))
    if va.endswith("-dirty") or vb.endswith("-dirty"):
        return "uncommitted code"
    if not (ra.get("stale") or rb.get("stale")) or va == vb:
        return None
    return "other code"


def paired(a: pd.DataFrame, b: pd.DataFrame, metric: str):
    """The paired difference ``a - b`` of ``metric`` over the seeds finished in both groups and recorded by
    the same code on the same device (``pair_refusal``), and the pairs left out: ``{"diverged": n, "failed": n,
    "uncommitted code": n, "other code": n, "other device": n}`` (a seed of only one group is no pair)."""
    from experiments.report.stats import paired_difference

    rows_a = {r["seed"]: r for r in a.to_dict("records")}
    rows_b = {r["seed"]: r for r in b.to_dict("records")}
    removed = dict.fromkeys(
        ("diverged", "failed", "uncommitted code", "other code", "other device"), 0
    )
    values_a, values_b = [], []
    for seed in sorted(set(rows_a) & set(rows_b)):
        ra, rb = rows_a[seed], rows_b[seed]
        lost = [r["status"] for r in (ra, rb) if r["status"] != "finished"]
        if lost:
            removed["diverged" if "diverged" in lost else "failed"] += 1
        elif (why := pair_refusal(ra, rb)) is not None:
            removed[why] += 1
        else:
            values_a.append(ra[metric])
            values_b.append(rb[metric])
    return paired_difference(values_a, values_b), removed


def pairs_text(d, removed: dict) -> str:
    """``4``, or ``4 (1 removed: diverged)``."""
    lost = ", ".join(f"{n} {why}" for why, n in removed.items() if n)
    return f"{d.pairs}" + (f" ({sum(removed.values())} removed: {lost})" if lost else "")


def comparison_sentence(a: str, b: str, d) -> str:
    if d.pairs == 0:
        return f"{a} and {b}: no pair yet"
    if d.pairs == 1:
        return f"one pair: no interval ({a} − {b} = {points(d.mean)} points)"
    side = "above" if d.mean >= 0 else "below"
    text = f"{a} is {abs(100 * d.mean):.2f} ± {100 * d.half_width:.2f} points {side} {b} over {d.pairs} seeds"
    if d.p_value is not None:
        text += f" (paired t-test p = {d.p_value:.3g})"
    if abs(d.mean) <= d.half_width:
        text += "; the interval includes 0"
    return text
