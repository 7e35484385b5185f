"""Rebuild everything shown from the recorded rows.

    python -m experiments.report

Reads results/runs.csv and results/epochs.csv (and, for the pictures, the run
directories in runs/), writes results/table.md, the learning curves
imgs/curves/*.png, the feature gifs and PNGs imgs/{loss}-{dataset}-feat=D/,
and the README's sections between the marker comments. Deterministic:
running it twice changes nothing.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from eval.plots import embedding_pngs, feature_gifs, learning_curve_png, write_if_changed
from experiments.center_rules import CENTER_RULES
from experiments.datasets import SPECS
from experiments.ledger import read_rows
from experiments.stats import mean_ci
from losses import LOSSES, build_loss, loss_options

REFERENCE = {  # the reference study's table (test accuracy, one run each)
    ("mnist", 2): {"xent": 0.991, "cent": 0.990, "standalone": 0.994},
    ("mnist", 128): {"xent": 0.994, "cent": 0.996, "standalone": 0.996},
    ("fashion-mnist", 2): {"xent": 0.913, "cent": 0.913, "standalone": 0.921},
    ("fashion-mnist", 128): {"xent": 0.926, "cent": 0.932, "standalone": 0.922},
    ("cifar-10", 2): {"xent": 0.815, "cent": 0.775, "standalone": 0.787},
    ("cifar-10", 128): {"xent": 0.866, "cent": 0.858, "standalone": 0.806},
}
REFERENCE_RECIPE = {"lr": 0.01, "epochs": 100, "batch_size": 128}
DATASET_ORDER = list(SPECS)
MARKERS = {"results": ("<!-- results:start -->", "<!-- results:end -->"),
           "figures": ("<!-- figures:start -->", "<!-- figures:end -->")}


def number(value: str) -> float:
    return float(value) if value not in ("", None) else math.nan


def fmt_ci(values: list[float]) -> str:
    mean, half = mean_ci(values)
    return f"{mean:.4f}" if half is None else f"{mean:.4f} ± {half:.4f}"


def groups(rows: list[dict]) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for row in rows:
        out[row["group_id"]].append(row)
    return dict(sorted(out.items(), key=lambda kv: group_sort_key(kv[1][0])))


def group_sort_key(row: dict):
    """Dataset, feat_dim, loss (the reference three first), then protocol, center rule, options, length, size."""
    main_losses = ["xent", "cent", "standalone"]
    return (DATASET_ORDER.index(row["dataset"]) if row["dataset"] in DATASET_ORDER else 99, int(row["feat_dim"]),
            main_losses.index(row["loss"]) if row["loss"] in main_losses else 9, row["loss"],
            protocol_of(row) != "reference", CENTER_RULES.index(rule_of(row)), row["loss_options"],
            -int(row["epochs"]), -int(row["train_size"] or 10 ** 9), row["group_id"])


def size_tag(row: dict) -> str:
    if not row["train_size"] and not row["test_size"]:
        return "full"
    return f"{row['train_size'] or 'all'}/{row['test_size'] or 'all'}"


def protocol_of(row: dict) -> str:
    return row.get("protocol") or "reference"


def rule_of(row: dict) -> str:
    return row.get("center_rule") or "joint"


def centers_of(row: dict) -> str:
    """The center update rule, or a dash for a run without learnable centers (asked of the loss itself)."""
    return rule_of(row) if has_learnable_centers(row["loss"], row["feat_dim"], row["loss_options"]) else "—"


@functools.lru_cache(maxsize=None)
def has_learnable_centers(loss: str, feat_dim: str, options: str) -> bool:
    if loss not in LOSSES:
        return False
    known = loss_options(loss)  # a row from an older version may carry an option the loss no longer takes
    kept = {k: v for k, v in json.loads(options).items() if k in known}
    return build_loss(loss, 10, int(feat_dim), **kept).learnable_centers is not None  # any class count answers


def options_tag(row: dict) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in json.loads(row["loss_options"]).items()) or "—"


def full_recipe(row: dict) -> bool:
    """Whether a group ran the reference recipe on the full splits (else `diff` would mislead)."""
    return (not row["train_size"] and not row["test_size"]
            and all(number(row[k]) == v for k, v in REFERENCE_RECIPE.items()))


def table_markdown(rows: list[dict]) -> str:
    finished = [r for r in rows if r["status"] == "finished"]
    on_recipe = sum(full_recipe(r) for r in finished)
    lines = [
        f"**{len(rows)} runs recorded, {len(finished)} finished, {on_recipe} of them on the reference recipe.** "
        "Runs on a subset or with fewer epochs (the quick preset) check that the pipeline works; they are no "
        "evidence about the losses.",
        "",
        "Test accuracy by the rule each loss declares (argmax for xent, cent and contrastive-center; nearest "
        "learned center for the losses without softmax). Protocol `reference` (the study's): the schedule and the "
        "best epoch are chosen on the test split, so `best epoch` is optimistic; protocol `fair`: a fixed "
        "stratified 10% validation split of the training set chooses them and the test split is evaluated once "
        "(both columns are that one figure). Mean ± 95% t-interval over seeds where there is more than one. `ref` "
        "is the reference study's value (one run, its full recipe); `diff` = best − ref, given only for groups that "
        "ran that recipe (lr 0.01, 100 epochs, batch 128, full splits). Generated by "
        "`python -m experiments.report` from `results/runs.csv`.",
        "",
        "| loss | dataset | feat_dim | protocol | acc (best epoch) | acc (last epoch) | ref | diff | seeds | lr | "
        "epochs | batch_size | weights | centers | train/test | device |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for members in groups(rows).values():
        first = members[0]
        finished = [r for r in members if r["status"] == "finished"]
        diverged = sum(r["status"] == "diverged" for r in members)
        ref = REFERENCE.get((first["dataset"], int(first["feat_dim"])), {}).get(first["loss"])
        if finished:
            best = [number(r["best_test_acc"]) for r in finished]
            acc, last = fmt_ci(best), fmt_ci([number(r["final_test_acc"]) for r in finished])
            diff = f"{np.mean(best) - ref:+.4f}" if ref is not None and full_recipe(first) else ""
        else:
            acc, last, diff = "—", "—", ""
        seeds = f"{len(finished)}" + (f" (+{diverged} diverged)" if diverged else "")
        weights = options_tag(first)
        devices = sorted({r["device"] for r in finished if r.get("device")})
        centers = centers_of(first)
        lines.append(f"| {first['loss']} | {first['dataset']} | {first['feat_dim']} | {protocol_of(first)} | {acc} | "
                     f"{last} | {'' if ref is None else f'{ref:.3f}'} | {diff} | {seeds} | {first['lr']} | "
                     f"{first['epochs']} | {first['batch_size']} | {weights} | {centers} | {size_tag(first)} | "
                     f"{', '.join(devices)} |")
    return "\n".join(lines) + "\n"


EMBEDDING_COLUMNS = [("final_test_acc_center", "nearest center"), ("final_test_acc_class_mean", "nearest class mean"),
                     ("final_knn1_acc", "1-NN"), ("final_map_at_r", "MAP@R"),
                     ("final_intra_inter_ratio", "intra / inter")]


def embedding_markdown(rows: list[dict]) -> str:
    """Embedding metrics of the reported model's test features (mean ± 95% CI over seeds)."""
    lines = ["Embedding metrics of the test features of the reported model (the last epoch's, or the selected "
             "one under `fair`): accuracy by nearest learned center (class means for xent) and by nearest class "
             "mean, 1-NN accuracy against the training features, MAP@R (pytorch-metric-learning's definition), and "
             "mean distance to the class mean over mean distance between class means.", "",
             "| loss | dataset | feat_dim | protocol | centers | train/test | "
             + " | ".join(n for _, n in EMBEDDING_COLUMNS) + " |",
             "| --- | --- | --- | --- | --- | --- |" + " --- |" * len(EMBEDDING_COLUMNS)]
    for members in groups(rows).values():
        finished = [r for r in members if r["status"] == "finished"]
        if not finished or not finished[0].get("final_map_at_r"):
            continue
        first = finished[0]
        cells = [fmt_ci([number(r[c]) for r in finished]) for c, _ in EMBEDDING_COLUMNS]
        lines.append(f"| {first['loss']} | {first['dataset']} | {first['feat_dim']} | {protocol_of(first)} | "
                     f"{centers_of(first)} | {size_tag(first)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" if len(lines) > 4 else ""


def curve_label(row: dict, split: str) -> str:
    """Names a group of runs by what usually tells it apart from another in the same panel."""
    rule = centers_of(row)
    lr = "" if number(row["lr"]) == REFERENCE_RECIPE["lr"] else f", lr {row['lr']}"
    return (f"{row['loss']}{'' if rule in ('—', 'joint') else ' ' + rule} [{options_tag(row)}] "
            f"({row['epochs']} ep, {size_tag(row)}{lr}, {protocol_of(row)} {split})")


def curve_panels(rows: list[dict], epoch_rows: list[dict]) -> dict[tuple, dict]:
    """``{(dataset, feat_dim): {label: (epochs, mean, half_width)}}``, one curve per group of finished runs."""
    by_run = defaultdict(list)
    for e in epoch_rows:
        by_run[e["run_id"]].append(e)
    panels = defaultdict(dict)
    for group_id, members in groups([r for r in rows if r["status"] == "finished"]).items():
        first = members[0]
        curves = [sorted(by_run[r["run_id"]], key=lambda e: int(e["epoch"])) for r in members if by_run[r["run_id"]]]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        split = "test" if protocol_of(first) == "reference" else "val"
        acc = np.array([[number(e[f"{split}_acc"]) for e in c[:n]] for c in curves])
        half = np.array([mean_ci(list(col))[1] or 0.0 for col in acc.T])
        panel = panels[(first["dataset"], first["feat_dim"])]
        label = curve_label(first, split)
        if label in panel:  # told apart by something rarer (momentum, batch, schedule): name the group
            label += f" {group_id}"
        panel[label] = (np.arange(1, n + 1), acc.mean(0), half)
    return panels


def learning_curves(rows: list[dict], epoch_rows: list[dict], imgs: Path) -> list[Path]:
    panels = curve_panels(rows, epoch_rows)
    paths = []
    for (dataset, feat_dim), curves in sorted(panels.items(), key=lambda kv: (DATASET_ORDER.index(kv[0][0]),
                                                                               int(kv[0][1]))):
        path = imgs / "curves" / f"{dataset}-feat={feat_dim}.png"
        learning_curve_png(curves, f"{dataset}, feat_dim {feat_dim}: accuracy per epoch (band: 95% CI)", path)
        paths.append(path)
    return paths


def picture_runs(rows: list[dict]) -> dict[tuple, dict]:
    """For each (loss, dataset, feat_dim): the lowest-seed run of its longest, largest finished group,
    preferring the reference protocol and center rule."""
    chosen = {}
    for row in sorted((r for r in rows if r["status"] == "finished"),
                      key=lambda r: (protocol_of(r) == "reference", rule_of(r) == "joint", int(r["epochs"]),
                                     int(r["train_size"] or 10 ** 9), -int(r["seed"]))):
        chosen[(row["loss"], row["dataset"], int(row["feat_dim"]))] = row
    return chosen


def feature_pictures(rows: list[dict], runs: Path, imgs: Path) -> dict[tuple, Path]:
    made = {}
    for (loss, dataset, feat_dim), row in sorted(picture_runs(rows).items()):
        run_dir, out_dir = runs / row["run_id"], imgs / f"{loss}-{dataset}-feat={feat_dim}"
        names = SPECS[dataset].class_names
        title = f"{loss}, {dataset}"
        if feat_dim == 2 and sorted((run_dir / "features").glob("epoch_*.pt")):
            feature_gifs(sorted((run_dir / "features").glob("epoch_*.pt")), names, out_dir, title)
        elif feat_dim != 2 and (run_dir / "features" / "final.pt").exists():
            embedding_pngs(run_dir / "features" / "final.pt", names, out_dir, title)
        if any(out_dir.glob("train.*")):
            made[(loss, dataset, feat_dim)] = out_dir
    return made


def figures_markdown(imgs: Path, readme_dir: Path) -> str:
    cells = sorted((p for p in imgs.glob("*-feat=*") if p.is_dir()), key=lambda p: p.name)
    lines = []
    for feat_dim, ext, what in ((2, "gif", "2-D features over the epochs (centers marked X)"),
                                (128, "png", "PCA of the final 128-D features")):
        entries = []
        for p in cells:
            loss, rest = p.name.split("-", 1)
            dataset, d = rest.rsplit("-feat=", 1)
            if int(d) == feat_dim and (p / f"train.{ext}").exists():
                entries.append((DATASET_ORDER.index(dataset) if dataset in DATASET_ORDER else 99,
                                ["xent", "cent", "standalone"].index(loss) if loss in ("xent", "cent", "standalone")
                                else 9, loss, dataset, p))
        if not entries:
            continue
        lines += [f"**feat_dim {feat_dim}**: {what}.", "", "| loss | dataset | train | val |", "| --- | --- | --- | --- |"]
        for _, _, loss, dataset, p in sorted(entries):
            rel = p.relative_to(readme_dir) if p.is_absolute() else p
            lines.append(f"| {loss} | {dataset} | ![]({rel}/train.{ext}) | ![]({rel}/val.{ext}) |")
        lines.append("")
    return "\n".join(lines) or "No pictures yet: run the grid.\n"


def replace_section(text: str, name: str, body: str) -> str:
    start, end = MARKERS[name]
    if start not in text or end not in text:
        raise ValueError(f"the README has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body.rstrip()}\n{end}{tail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--imgs", type=Path, default=Path("imgs"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args = parser.parse_args(argv)
    rows = read_rows(args.results / "runs.csv")
    if not rows:
        print(f"no runs recorded in {args.results / 'runs.csv'}: run python -m experiments.grid first")
        return 1
    table = table_markdown(rows)
    embedding = embedding_markdown(rows)
    if embedding:
        table += "\n" + embedding
    write_if_changed(args.results / "table.md", table.encode())
    curves = learning_curves(rows, read_rows(args.results / "epochs.csv"), args.imgs)
    feature_pictures(rows, args.runs, args.imgs)
    readme_dir = args.readme.parent
    curve_md = "\n".join(f"![]({p.relative_to(readme_dir) if p.is_absolute() else p})" for p in curves)
    text = args.readme.read_text()
    text = replace_section(text, "results", table + ("\n" + curve_md + "\n" if curve_md else ""))
    text = replace_section(text, "figures", figures_markdown(args.imgs, readme_dir))
    write_if_changed(args.readme, text.encode())
    print(f"report: {args.results / 'table.md'}, {len(curves)} learning curves, README sections updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
