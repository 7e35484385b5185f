"""Paired comparisons of groups of runs: runs of one seed paired, last-epoch test accuracy.

``report --compare 'loss=standalone,dataset=mnist,feat_dim=2' 'loss=xent,dataset=mnist,feat_dim=2'`` compares
any two groups (``stale=true|false`` tells a group recorded by other code than the current from the current
one); the README's section compares every loss with ``xent`` on the same recipe, Holm-corrected over the
section's tests (statsmodels).
"""

from __future__ import annotations

import pandas as pd

from centersuite.losses import option_definitions
from experiments.engine.protocol import protocol_of
from experiments.report.cells import (
    PAIR_REFUSALS,
    comparison_sentence,
    paired,
    pairs_text,
    points,
    runs_text,
)
from experiments.report.rows import config_of, run_groups
from experiments.report.selectors import CompareError, normal, parse_selector

METRIC = "final_test_acc"


def group_fields(row) -> dict[str, str]:
    """A group's config as ``field -> text``, loss options flattened, without the seed."""
    cfg = config_of(row)
    if cfg is None:
        return {"loss": row["loss"]}
    d = {k: v for k, v in cfg.to_dict().items() if k not in ("seed", "loss_options")}
    d.update(cfg.loss_options)
    return {k: normal(v) for k, v in d.items()} | {"stale": normal(bool(row["stale"]))}


def describe(g: pd.DataFrame) -> str:
    first = g.iloc[0]
    return f"{first['loss']} on {first['dataset']}, feat_dim {first['feat_dim']} [{first['departures'] or 'reference recipe'}]"


def select(groups: list[pd.DataFrame], text: str) -> pd.DataFrame:
    wanted = parse_selector(text)
    found = [
        g for g in groups if all(group_fields(g.iloc[0]).get(k) == v for k, v in wanted.items())
    ]
    if not found:
        raise CompareError(f"no runs match {text!r}")
    if len(found) > 1:
        listing = "; ".join(describe(g) for g in found)
        raise CompareError(
            f"{text!r} matches {len(found)} groups, name more fields to pick one: {listing}"
        )
    return found[0]


def compare(df: pd.DataFrame, a_text: str, b_text: str) -> str:
    """The paired difference of two groups, in words.

    Raises CompareError when a selector matches no group or several, when the groups differ in a field
    neither selector names, or when they share no seed that can be paired (the message says which)."""
    groups = run_groups(df[df["status"].isin(("finished", "diverged", "failed"))])
    a, b = select(groups, a_text), select(groups, b_text)
    named = set(parse_selector(a_text)) & set(
        parse_selector(b_text)
    )  # differences asked for in both
    fa, fb = group_fields(a.iloc[0]), group_fields(b.iloc[0])
    other = sorted(
        k
        for k in fa.keys() | fb.keys()
        if fa.get(k) != fb.get(k) and k not in named and k not in option_definitions()
    )
    if other:
        raise CompareError(
            f"the groups differ also in {', '.join(other)}, which would confound the comparison; "
            "name those fields in both selectors (A has "
            + ",".join(f"{k}={fa.get(k, '')}" for k in other)
            + ", B "
            + ",".join(f"{k}={fb.get(k, '')}" for k in other)
            + ")"
        )
    d, removed = paired(a, b, METRIC)
    head = (
        f"A: {describe(a)}, seeds {sorted(a['seed'])}, runs {runs_text(a)}\n"
        f"B: {describe(b)}, seeds {sorted(b['seed'])}, runs {runs_text(b)}\n"
        f"pairs: {pairs_text(d, removed)}\n"
    )
    if d.pairs == 0:
        refused = [
            f"{n} {'seed' if n == 1 else 'seeds'} {PAIR_REFUSALS[why]}"
            for why, n in removed.items()
            if n and why in PAIR_REFUSALS
        ]
        raise CompareError(
            head
            + (
                "no pair, refused: the runs of "
                + "; ".join(refused)
                + ". A difference between them could be the code's or the device's, not the losses'"
                if refused
                else "no pair: the two groups share no seed that finished in both, so they cannot "
                "be compared by seed"
            )
        )
    epoch = (
        "the epoch its validation split selected"
        if protocol_of(a.iloc[0].get("protocol")).selection == "val"
        else "the last epoch"
    )
    return head + f"test accuracy of {epoch}, paired by seed: " + comparison_sentence("A", "B", d)


def holm_corrected(p_values: list[float]) -> tuple[list[float] | None, str]:
    """Holm's step-down correction (statsmodels), and how the table names it. Without statsmodels (a GPU
    machine with only the training libraries) the column stays empty and the table says why."""
    try:
        from statsmodels.stats.multitest import multipletests
    except ImportError:
        return (
            None,
            "not corrected: statsmodels is not installed here, rebuild the report where it is",
        )
    corrected = list(multipletests(p_values, method="holm")[1]) if p_values else []
    return corrected, "Holm-corrected over the {n} tests of this table"


def against_xent(df: pd.DataFrame) -> str:
    """Every group that has an ``xent`` group on the same recipe (all other fields equal), paired by seed,
    with Holm-corrected p-values; empty when there is none."""
    groups = run_groups(df[df["status"].isin(("finished", "diverged", "failed"))])
    by_recipe = {}
    for g in groups:
        fields = group_fields(g.iloc[0])
        recipe = tuple(
            sorted(
                (k, v) for k, v in fields.items() if k != "loss" and k not in option_definitions()
            )
        )
        by_recipe.setdefault(recipe, []).append(g)
    rows = []
    for recipe_groups in by_recipe.values():
        xent = next((g for g in recipe_groups if g.iloc[0]["loss"] == "xent"), None)
        for g in recipe_groups if xent is not None else []:
            if g is xent:
                continue
            rows.append((g, xent, *paired(g, xent, METRIC)))
    if not rows:
        return ""
    tested = [i for i, (_, _, d, _) in enumerate(rows) if d.p_value is not None]
    holm, correction = holm_corrected([rows[i][2].p_value for i in tested])
    lines = [
        "**Each loss against `xent` on the same recipe** (last-epoch test accuracy, runs of one seed paired; "
        "mean difference in points with its 95% t-interval; a paired t-test where there are 3 pairs or more"
        + (
            f", its p-value {correction.format(n=len(tested))}"
            if tested
            else ": no row has them yet"
        )
        + "; runs: finished / recorded for the loss and for xent):",
        "",
        "| loss | dataset | feat_dim | recipe (departs from the reference in) | loss − xent | runs | pairs | p | "
        "p (Holm) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, (g, xent, d, removed) in enumerate(rows):
        first = g.iloc[0]
        diff = (
            "—"
            if d.pairs == 0
            else points(d.mean) + (f" ± {100 * d.half_width:.2f}" if d.half_width else "")
        )
        p = "—" if d.p_value is None else f"{d.p_value:.3g}"
        lines.append(
            f"| {first['loss']} | {first['dataset']} | {first['feat_dim']} | "
            f"{first['departures'] or '— (reference recipe)'} | {diff} | {runs_text(g)}; xent {runs_text(xent)} | "
            f"{pairs_text(d, removed)} | {p} | "
            f"{'—' if i not in tested or holm is None else f'{holm[tested.index(i)]:.3g}'} |"
        )
    return "\n".join(lines) + "\n"
