"""The tables: the reference table in the study's shape, the train-test gap, the runs
off the recipe, OOD detection (the README's results section), and table.md with every group."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from centersuite.eval.ood import SCORES as OOD_SCORES
from centersuite.eval.ood import natural_score
from centersuite.losses import LOSSES, has_class_parameters
from experiments.engine.protocol import protocol_of
from experiments.report.cells import fmt_ci, plural, points, runs_text
from experiments.report.rows import (
    MAIN_LOSSES,
    cells_by_setting,
    centers_of,
    on_recipe_finished,
    on_recipe_rows,
    reference_of,
    run_groups,
)

PAPER_COMMAND = "./suite grid --preset paper --datasets mnist fashion-mnist"


def paper_table(df: pd.DataFrame) -> str:
    """The reference table's shape: dataset x feat_dim rows, one column per loss, runs on the full recipe only."""
    paper = on_recipe_rows(df)
    if on_recipe_finished(df).empty:
        return (
            f"**No run on the full reference recipe is recorded yet**, so there is no reference table, paired "
            f"comparison or train-test gap to show: `{PAPER_COMMAND}` on a GPU produces them (see "
            f"[docs/gpu-slot.md](docs/gpu-slot.md)).\n"
        )
    head = (
        "| dataset | feat_dim | "
        + " | ".join(MAIN_LOSSES)
        + " |\n| --- | --- |"
        + " --- |" * len(MAIN_LOSSES)
    )
    acc, diff = [head], [head]
    for dataset, feat_dim, by_loss in cells_by_setting(paper):
        acc_cells, diff_cells = [], []
        for loss, runs in by_loss.items():
            ref = reference_of(dataset, feat_dim, loss)
            done = runs[runs["status"] == "finished"]
            if done.empty:
                acc_cells.append(
                    f"— ({ref:.3f})" + (f", runs {runs_text(runs)}" if len(runs) else "")
                )
                diff_cells.append("—")
                continue
            acc_cells.append(
                f"{fmt_ci(done['best_test_acc'])} / {fmt_ci(done['final_test_acc'])} ({ref:.3f}), "
                f"runs {runs_text(runs)}"
            )
            diff_cells.append(
                f"{points(done['best_test_acc'].mean() - ref)} / "
                f"{points(done['final_test_acc'].mean() - ref)}"
            )
        acc.append(f"| {dataset} | {feat_dim} | " + " | ".join(acc_cells) + " |")
        diff.append(f"| {dataset} | {feat_dim} | " + " | ".join(diff_cells) + " |")
    return (
        "\n".join(
            [
                "**Test accuracy on the reference recipe**: best epoch / last epoch (the reference's value), mean ± 95% "
                "t-interval over the finished runs, and how many runs finished. Under the reference protocol the best "
                "epoch is chosen on the test split itself, so it is optimistic; the last epoch is not.",
                "",
                *acc,
                "",
                "Difference to the reference in points (best epoch / last epoch, means):",
                "",
                *diff,
            ]
        )
        + "\n"
    )


def train_test_gap(paper: pd.DataFrame) -> str:
    """Last-epoch train accuracy by the loss's own rule minus test accuracy of the runs on the reference
    recipe (``on_recipe_rows``): does a loss overfit less?"""
    lines = [
        "**Train-test gap** in points (last epoch; train accuracy by the loss's own rule over the epoch's "
        "augmented batches, minus test accuracy), mean ± 95% t-interval (finished runs / runs):",
        "",
        "| dataset | feat_dim | " + " | ".join(MAIN_LOSSES) + " |",
        "| --- | --- |" + " --- |" * len(MAIN_LOSSES),
    ]
    for dataset, feat_dim, by_loss in cells_by_setting(paper):
        if all(r.empty for r in by_loss.values()):
            continue
        cells = [
            fmt_ci(100 * (r["final_train_acc"] - r["final_test_acc"]), 2)
            + (f" ({runs_text(r)})" if len(r) else "")
            for r in by_loss.values()
        ]
        lines.append(f"| {dataset} | {feat_dim} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ood_table(df: pd.DataFrame) -> str:
    """AUROC and FPR at 95% TPR of every score, per group, FPR95 in both conventions (ODIN's: the test split
    positive; OpenOOD's: the out-of-distribution set positive); the loss's natural score marked *, a group
    scored against uniform noise (its planned OOD set missing, experiments/engine/data.py) marked †."""
    noise = "noise"  # experiments/engine/data.NOISE: the ood_dataset of a run scored against uniform noise
    groups = [
        g
        for g in run_groups(df)
        if "final_ood_center_auroc" in g
        and g.loc[g["status"] == "finished", "final_ood_center_auroc"].notna().any()
    ]
    if not groups:
        return ""
    head = " | ".join(
        f"{score} AUROC | {score} FPR95 (ID+) | {score} FPR95 (OOD+)" for score in OOD_SCORES
    )
    lines = [
        "**Out-of-distribution detection and open-set recognition**: the test split against the "
        "out-of-distribution set (the other dataset of MNIST and Fashion-MNIST, uniform noise where that one "
        "is missing or for the others, or the unknown classes of an open-set run), by each score: distance to "
        "the nearest center (class means without centers), maximum softmax probability and energy (losses "
        "with a softmax), distance to the nearest training feature. Mean ± 95% t-interval over seeds (over 2 "
        "seeds t is 12.7, so an interval can run past [0, 1]: the scores are bounded, the interval is not); "
        "* marks "
        "the score that matches how the loss classifies. FPR95 is given in both conventions, which differ on "
        "the same scores: `ID+` (ODIN's, as docs/evaluation.md defines it) counts the in-distribution test "
        "split positive, the share of out-of-distribution images taken for in-distribution at the threshold "
        "that keeps 95% of the test split; `OOD+` (OpenOOD's) counts the out-of-distribution set positive, "
        "the share of test images taken for out-of-distribution at the threshold that catches 95% of the "
        "out-of-distribution set. AUROC is the same in both.",
        "",
        f"| loss | dataset | feat_dim | departs from the reference in | runs | OOD set | {head} |",
        "|" + " --- |" * (6 + 3 * len(OOD_SCORES)),
    ]
    noisy = 0
    for g in groups:
        g, runs = g[g["status"] == "finished"], runs_text(g)
        first = g.iloc[0]
        natural = natural_score(LOSSES[first["loss"]]) if first["loss"] in LOSSES else None
        cells = []
        for score in OOD_SCORES:
            mark = "*" if score == natural else ""
            cells += [
                fmt_ci(g[f"final_ood_{score}_auroc"], 3) + mark
                if g[f"final_ood_{score}_auroc"].notna().any()
                else "—",
                fmt_ci(g[f"final_ood_{score}_fpr95"], 3),
                fmt_ci(g.get(f"final_ood_{score}_fpr95_ood", pd.Series(dtype=float)), 3),
            ]
        found = sorted({d for d in g["ood_dataset"] if d})
        noisy += noise in found
        sets = ", ".join(
            f"{d} † ({int((g['ood_dataset'] == d).sum())} of {len(g)})"
            if d == noise and len(found) > 1
            else (f"{d} †" if d == noise else d)
            for d in found
        )
        lines.append(
            f"| {first['loss']} | {first['dataset']} | {first['feat_dim']} | "
            f"{first['departures'] or '— (reference recipe)'} | {runs} | {sets} | "
            + " | ".join(cells)
            + " |"
        )
    if noisy:
        lines += [
            "",
            f"† Scored against uniform noise, not a real dataset ({noisy} of {len(groups)} groups; a count "
            "beside † when only some of a group's runs were): the dataset has no partner (any but MNIST and "
            "Fashion-MNIST), or its partner was missing where the run trained (`./suite data fetch NAME` brings "
            "it). Noise is far easier to tell from the test split than another dataset is, so such a row says "
            "little about detecting a real shift.",
        ]
    return "\n".join(lines) + "\n"


def group_cells(g: pd.DataFrame, columns: list[str]) -> str:
    first, finished = g.iloc[0], g[g["status"] == "finished"]
    # the reported epoch as the protocol chose it: only the reference's best epoch is chosen on the test split;
    # a run that selects on another split is tested once, on that epoch, and its cell says which it is
    protocol = protocol_of(first.get("protocol"))
    ref = (
        reference_of(first["dataset"], first["feat_dim"], first["loss"])
        if first["on_recipe"]
        else None
    )
    cell = {
        "loss": first["loss"],
        "dataset": first["dataset"],
        "feat_dim": str(first["feat_dim"]),
        "departs": first["departures"] or "— (reference recipe)",
        "centers": centers_of(first),
        "best": fmt_ci(finished["best_test_acc"]) if protocol.selection == "test" else "—",
        "last": fmt_ci(finished["final_test_acc"])
        + ("" if protocol.selection in ("test", None) else f" ({protocol.label})"),
        "ref": ""
        if reference_of(first["dataset"], first["feat_dim"], first["loss"]) is None
        else f"{reference_of(first['dataset'], first['feat_dim'], first['loss']):.3f}",
        "diff best": ""
        if ref is None or finished.empty
        else points(finished["best_test_acc"].mean() - ref),
        "diff last": ""
        if ref is None or finished.empty
        else points(finished["final_test_acc"].mean() - ref),
        "runs": runs_text(g),
        "device": ", ".join(sorted({d for d in g["device"] if d})),
        "code": ", ".join(sorted({c for c in g["code_version"] if c})),
    }
    for name, column in EMBEDDING_COLUMNS:
        cell[name] = fmt_ci(finished[column])
    return "| " + " | ".join(cell[c] for c in columns) + " |"


FULL_COLUMNS = [
    "loss",
    "dataset",
    "feat_dim",
    "departs",
    "centers",
    "best",
    "last",
    "ref",
    "diff best",
    "diff last",
    "runs",
    "device",
    "code",
]


FULL_HEADERS = [
    "loss",
    "dataset",
    "feat_dim",
    "departs from the reference in",
    "centers",
    "acc (best epoch)",
    "acc (last epoch)",
    "ref",
    "diff best (points)",
    "diff last (points)",
    "runs",
    "device",
    "code",
]


EMBEDDING_COLUMNS = [
    ("nearest center", "final_test_acc_center"),
    ("nearest class mean", "final_test_acc_class_mean"),
    ("1-NN", "final_knn1_acc"),
    ("MAP@R", "final_map_at_r"),
    ("intra / inter", "final_intra_inter_ratio"),
]


def rules_sentence(losses: list[str]) -> str:
    """Which of ``losses`` classify by argmax of logits, by the nearest learned center or proxy, and by the
    nearest class mean of the training features (a loss without class parameters)."""
    rules: dict[str, list[str]] = {}
    for loss in losses:
        cls = LOSSES.get(loss)
        if cls is None:
            rule = "its own rule"
        elif cls.prediction == "logits":
            rule = "argmax of its logits"
        else:
            rule = "nearest learned center" if has_class_parameters(loss) else "nearest class mean"
        rules.setdefault(rule, []).append(loss)
    return "; ".join(f"{rule}: {', '.join(names)}" for rule, names in rules.items())


def full_table(df: pd.DataFrame, ledger: Path) -> str:
    finished = df[df["status"] == "finished"]
    lines = [
        f"**{plural(len(df), 'run')} recorded, {len(finished)} finished, {int(finished['on_recipe'].sum())} of them on the "
        f"full reference recipe.** Generated by `python -m experiments.report` from `{ledger / 'runs.csv'}`.",
        "",
        f"Test accuracy by the rule each loss declares ({rules_sentence(sorted(set(df['loss'])))}). Protocol `reference` (the study's): the schedule and the best epoch "
        "are chosen on the test split, so `best epoch` is optimistic; protocol `fair`: a fixed stratified "
        f"{protocol_of('fair').val_fraction:.0%} validation split of the training set chooses them and the test "
        "split is evaluated once, on the selected epoch: that one figure stands in `last epoch`, labelled as the "
        "epoch it is, and `best epoch` shows —; protocol `last`: no held-out split, a constant lr, the last "
        "epoch tested once (`last epoch`; `best epoch` shows —). "
        "Mean ± 95% t-interval over seeds where there is more than one. `ref` is the reference "
        "study's value (one run, its full recipe); `diff` = ours − ref in points, only for groups on the full "
        "reference recipe (every field of it, the loss's default options, full splits, fp32).",
        "",
        "| " + " | ".join(FULL_HEADERS) + " |",
        "|" + " --- |" * len(FULL_HEADERS),
    ]
    lines += [group_cells(g, FULL_COLUMNS) for g in run_groups(df)]
    if ood := ood_table(df):
        lines += ["", ood.rstrip()]
    embedding = [
        group_cells(
            g,
            ["loss", "dataset", "feat_dim", "departs", "centers"]
            + [n for n, _ in EMBEDDING_COLUMNS],
        )
        for g in run_groups(df)
        if (g["status"] == "finished").any()
    ]
    if embedding:
        lines += [
            "",
            "Embedding metrics of the test features of the reported model (the last epoch's, or the "
            "selected one under `fair`): accuracy by nearest learned center (class means for xent) and by "
            "nearest class mean, 1-NN accuracy against the training features, MAP@R (pytorch-metric-learning's "
            "definition), and mean distance to the class mean over mean distance between class means.",
            "",
            "| loss | dataset | feat_dim | departs from the reference in | centers | "
            + " | ".join(n for n, _ in EMBEDDING_COLUMNS)
            + " |",
            "|" + " --- |" * (5 + len(EMBEDDING_COLUMNS)),
            *embedding,
        ]
    return "\n".join(lines) + "\n"
