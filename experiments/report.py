"""Rebuild every table and picture from the recorded rows.

    python -m experiments.report                      # the main ledger: results/, imgs/, README.md
    python -m experiments.report --results my-results # another ledger: its table and pictures go under it

Reads runs.csv and epochs.csv of a ledger (and, for the pictures, the run
directories in runs/) and writes table.md, the learning curves, the feature
gifs and PNGs and, for the main ledger only, the README's sections between
the marker comments. Deterministic: running it twice changes nothing.

The README's results section, in order: the reference table in the study's
own shape (runs on the full reference recipe only), the paired comparisons
of the three losses by seed, the train-test gap, then a short table of every
other run, headed as not the reference recipe.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eval.ood import METRICS as OOD_METRICS
from eval.ood import SCORES as OOD_SCORES
from eval.ood import natural_score
from eval.plots import embedding_pngs, feature_gifs, learning_curve_png, write_if_changed
from experiments.center_rules import CENTER_RULES
from experiments.cli_types import HelpFormatter
from experiments.config import RunConfig
from experiments.data import parse_classes
from experiments.datasets import SPECS
from experiments.io import unwritable
from experiments.stats import mean_ci, paired_difference
from losses import LOSSES, build_loss, loss_options

REFERENCE = {  # the reference study's table (test accuracy, one run each)
    ("mnist", 2): {"xent": 0.991, "cent": 0.990, "standalone": 0.994},
    ("mnist", 128): {"xent": 0.994, "cent": 0.996, "standalone": 0.996},
    ("fashion-mnist", 2): {"xent": 0.913, "cent": 0.913, "standalone": 0.921},
    ("fashion-mnist", 128): {"xent": 0.926, "cent": 0.932, "standalone": 0.922},
    ("cifar-10", 2): {"xent": 0.815, "cent": 0.775, "standalone": 0.787},
    ("cifar-10", 128): {"xent": 0.866, "cent": 0.858, "standalone": 0.806},
}
MAIN_LOSSES = ["xent", "cent", "standalone"]
COMPARISONS = [("standalone", "xent"), ("standalone", "cent"), ("cent", "xent")]
DATASET_ORDER = list(SPECS)
MAIN_LEDGER = Path("results")
MARKERS = {"results": ("<!-- results:start -->", "<!-- results:end -->"),
           "figures": ("<!-- figures:start -->", "<!-- figures:end -->")}
PAPER_COMMAND = "./suite grid --preset paper --datasets mnist fashion-mnist"
INT_FIELDS = ("feat_dim", "seed", "epochs", "batch_size", "lr_patience", "train_size", "test_size")
FLOAT_FIELDS = ("lr", "momentum", "weight_decay", "lr_factor", "lr_threshold", "center_lr", "center_alpha")
METRICS = ("best_test_acc", "final_test_acc", "final_train_acc", "final_test_acc_center",
           "final_test_acc_class_mean", "final_knn1_acc", "final_map_at_r", "final_intra_inter_ratio", "wall_s",
           "epochs_done", *(f"final_ood_{s}_{m}" for s in OOD_SCORES for m in OOD_METRICS))


# ---- where a ledger's outputs go -------------------------------------------------
@dataclass(frozen=True)
class Outputs:
    """A ledger and what is generated from it. Only the main ledger writes the README by default."""
    results: Path
    imgs: Path
    readme: Path | None

    @classmethod
    def for_ledger(cls, results: Path, imgs: Path | None = None, readme: Path | None = None) -> "Outputs":
        main = Path(results).resolve() == MAIN_LEDGER.resolve()
        return cls(Path(results), imgs or (Path("imgs") if main else Path(results) / "imgs"),
                   readme or (Path("README.md") if main else None))

    def problem(self) -> str | None:
        """Why the report could not be written, checked before any training."""
        for folder in (self.results, self.imgs):
            if (why := unwritable(folder)) is not None:
                return why
        if self.readme is not None:
            if not self.readme.is_file():
                return f"{self.readme}: no such README (give an existing file with --readme)"
            text = self.readme.read_text()
            if any(m not in text for pair in MARKERS.values() for m in pair):
                return f"{self.readme}: it has no {' ... '.join(MARKERS['results'])} markers"
            if (why := unwritable(self.readme.parent)) is not None:
                return why
        return None


# ---- the ledger as a table ---------------------------------------------------------
def config_of(row: dict) -> RunConfig | None:
    """The run's config from its ledger row (None for a loss this version no longer has)."""
    if row["loss"] not in LOSSES:
        return None
    known = loss_options(row["loss"])
    d = {k: v for k, v in row.items() if k in RunConfig.__dataclass_fields__ and k != "loss_options"}
    for k in INT_FIELDS:
        d[k] = int(float(d[k])) if d.get(k) not in ("", None) else None
    for k in FLOAT_FIELDS:
        d[k] = float(d[k])
    if d.get("precision") == "auto":  # rows from before fp32 was the default everywhere
        d["precision"] = row.get("resolved_precision") or "fp32"
    options = {k: v for k, v in json.loads(row["loss_options"] or "{}").items() if k in known}
    return RunConfig.from_dict({**d, "loss_options": options})


def departures_of(row: dict) -> str:
    cfg = config_of(row)
    return "loss no longer exists" if cfg is None else ", ".join(cfg.departures())


def read_ledger(path: Path) -> pd.DataFrame:
    """runs.csv as a DataFrame with numbers parsed and, per row, what departs from the reference recipe."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in ("ood_dataset", "known_classes"):
        if col not in df:
            df[col] = ""
    for col in METRICS:
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df else np.nan
    df["departures"] = [departures_of(r) for r in df.to_dict("records")]
    df["on_recipe"] = df["departures"] == ""
    df["feat_dim"] = df["feat_dim"].astype(int)
    df["seed"] = df["seed"].astype(int)
    return df


def sort_key(row) -> tuple:
    """Dataset, feat_dim, loss (the reference three first), protocol, center rule, options, length, size."""
    return (DATASET_ORDER.index(row["dataset"]) if row["dataset"] in DATASET_ORDER else 99, int(row["feat_dim"]),
            MAIN_LOSSES.index(row["loss"]) if row["loss"] in MAIN_LOSSES else 9, row["loss"],
            not row["on_recipe"], (row.get("protocol") or "reference") != "reference",
            CENTER_RULES.index(row.get("center_rule") or "joint"), row["loss_options"], -int(row["epochs"]),
            -int(row["train_size"] or 10 ** 9), row["group_id"])


def run_groups(df: pd.DataFrame) -> list[pd.DataFrame]:
    """Runs that differ only by seed, in display order."""
    groups = [g for _, g in df.groupby("group_id", sort=False)]
    return sorted(groups, key=lambda g: sort_key(g.iloc[0]))


@functools.lru_cache(maxsize=None)
def has_learnable_centers(loss: str, feat_dim: int, options: str) -> bool:
    if loss not in LOSSES:
        return False
    known = loss_options(loss)
    kept = {k: v for k, v in json.loads(options or "{}").items() if k in known}
    return build_loss(loss, 10, int(feat_dim), **kept).learnable_centers is not None  # any class count answers


def centers_of(row) -> str:
    """The center update rule, or a dash for a run without learnable centers (asked of the loss itself)."""
    rule = row.get("center_rule") or "joint"
    return rule if has_learnable_centers(row["loss"], int(row["feat_dim"]), row["loss_options"]) else "—"


# ---- formatting -------------------------------------------------------------------
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


def reference_of(dataset: str, feat_dim: int, loss: str) -> float | None:
    return REFERENCE.get((dataset, int(feat_dim)), {}).get(loss)


def on_recipe_finished(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["status"] == "finished") & df["on_recipe"] & df["loss"].isin(MAIN_LOSSES)]


def cells_by_setting(df: pd.DataFrame):
    """``(dataset, feat_dim, {loss: runs})`` for every setting of the reference table."""
    for (dataset, feat_dim) in REFERENCE:
        runs = df[(df["dataset"] == dataset) & (df["feat_dim"] == feat_dim)]
        yield dataset, feat_dim, {loss: runs[runs["loss"] == loss] for loss in MAIN_LOSSES}


# ---- the README's results section -----------------------------------------------
def paper_table(df: pd.DataFrame) -> str:
    """The reference table's shape: dataset x feat_dim rows, one column per loss, runs on the full recipe only."""
    paper = on_recipe_finished(df)
    if paper.empty:
        return (f"**No run on the full reference recipe is recorded yet**, so there is no reference table, paired "
                f"comparison or train-test gap to show: `{PAPER_COMMAND}` on a GPU produces them (see \"Reproduce the "
                f"paper table on one GPU\").\n")
    head = "| dataset | feat_dim | " + " | ".join(MAIN_LOSSES) + " |\n| --- | --- |" + " --- |" * len(MAIN_LOSSES)
    acc, diff = [head], [head]
    for dataset, feat_dim, by_loss in cells_by_setting(paper):
        acc_cells, diff_cells = [], []
        for loss, runs in by_loss.items():
            ref = reference_of(dataset, feat_dim, loss)
            if runs.empty:
                acc_cells.append(f"— ({ref:.3f})")
                diff_cells.append("—")
                continue
            acc_cells.append(f"{fmt_ci(runs['best_test_acc'])} / {fmt_ci(runs['final_test_acc'])} ({ref:.3f}), "
                             f"{seeds_text(len(runs))}")
            diff_cells.append(f"{points(runs['best_test_acc'].mean() - ref)} / "
                              f"{points(runs['final_test_acc'].mean() - ref)}")
        acc.append(f"| {dataset} | {feat_dim} | " + " | ".join(acc_cells) + " |")
        diff.append(f"| {dataset} | {feat_dim} | " + " | ".join(diff_cells) + " |")
    return "\n".join([
        "**Test accuracy on the reference recipe**: best epoch / last epoch (the reference's value), mean ± 95% "
        "t-interval over seeds. Under the reference protocol the best epoch is chosen on the test split itself, "
        "so it is optimistic; the last epoch is not.", "", *acc, "",
        "Difference to the reference in points (best epoch / last epoch, means):", "", *diff]) + "\n"


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


def paired_comparisons(df: pd.DataFrame) -> str:
    """``a − b`` of last-epoch test accuracy, paired by seed, per dataset x feat_dim."""
    paper = on_recipe_finished(df)
    head = "| dataset | feat_dim | " + " | ".join(f"{a} − {b}" for a, b in COMPARISONS) + " |"
    lines = ["**Paired comparisons** (last-epoch test accuracy, the runs of one seed paired; mean difference with "
             "its 95% t-interval):", "", head, "| --- | --- |" + " --- |" * len(COMPARISONS)]
    for dataset, feat_dim, by_loss in cells_by_setting(paper):
        if all(r.empty for r in by_loss.values()):
            continue
        cells = []
        for a, b in COMPARISONS:
            pairs = by_loss[a][["seed", "final_test_acc"]].merge(by_loss[b][["seed", "final_test_acc"]], on="seed")
            cells.append(comparison_sentence(a, b, paired_difference(pairs["final_test_acc_x"],
                                                                     pairs["final_test_acc_y"])))
        lines.append(f"| {dataset} | {feat_dim} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def train_test_gap(df: pd.DataFrame) -> str:
    """Last-epoch train accuracy by the loss's own rule minus test accuracy: does a loss overfit less?"""
    paper = on_recipe_finished(df)
    lines = ["**Train-test gap** in points (last epoch; train accuracy by the loss's own rule over the epoch's "
             "augmented batches, minus test accuracy), mean ± 95% t-interval:", "",
             "| dataset | feat_dim | " + " | ".join(MAIN_LOSSES) + " |", "| --- | --- |" + " --- |" * len(MAIN_LOSSES)]
    for dataset, feat_dim, by_loss in cells_by_setting(paper):
        if all(r.empty for r in by_loss.values()):
            continue
        cells = [fmt_ci(100 * (r["final_train_acc"] - r["final_test_acc"]), 2) + (f" ({len(r)})" if len(r) else "")
                 for r in by_loss.values()]
        lines.append(f"| {dataset} | {feat_dim} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def other_runs_table(df: pd.DataFrame, ledger: Path) -> str:
    """Every group that is not on the full reference recipe, short."""
    others = [g for g in run_groups(df) if not (g.iloc[0]["on_recipe"] and g.iloc[0]["loss"] in MAIN_LOSSES)]
    if not others:
        return ""
    lines = [f"**Not the reference recipe** ({sum(len(g) for g in others)} runs): subsets, fewer epochs, other "
             "losses, center rules or protocols. They check the pipeline and compare variants; they are no evidence "
             f"about the study's table. Every column, device and embedding metric: `{ledger / 'table.md'}`.", "",
             "| loss | dataset | feat_dim | departs from the reference in | acc (best epoch) | acc (last epoch) | "
             "seeds | code |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for g in others:
        lines.append(group_cells(g, ["loss", "dataset", "feat_dim", "departs", "best", "last", "seeds", "code"]))
    return "\n".join(lines) + "\n"


def ood_table(df: pd.DataFrame) -> str:
    """AUROC and FPR at 95% TPR of every score, per group; the loss's natural score marked *."""
    groups = [g for g in run_groups(df[df["status"] == "finished"])
              if "final_ood_center_auroc" in g and g["final_ood_center_auroc"].notna().any()]
    if not groups:
        return ""
    head = " | ".join(f"{score} AUROC | {score} FPR95" for score in OOD_SCORES)
    lines = ["**Out-of-distribution detection and open-set recognition**: the test split (positive) against the "
             "out-of-distribution set (the other dataset of MNIST and Fashion-MNIST, uniform noise for the others, "
             "or the unknown classes of an open-set run), by each score: distance to the nearest center (class "
             "means without centers), maximum softmax probability and energy (losses with a softmax), "
             "distance to the nearest training feature. Mean ± 95% t-interval over seeds; * marks the "
             "score that matches how the loss classifies.", "",
             f"| loss | dataset | feat_dim | departs from the reference in | OOD set | {head} |",
             "|" + " --- |" * (5 + 2 * len(OOD_SCORES))]
    for g in groups:
        first = g.iloc[0]
        natural = natural_score(LOSSES[first["loss"]]) if first["loss"] in LOSSES else None
        cells = []
        for score in OOD_SCORES:
            mark = "*" if score == natural else ""
            cells += [fmt_ci(g[f"final_ood_{score}_auroc"], 3) + mark if g[f"final_ood_{score}_auroc"].notna().any()
                      else "—", fmt_ci(g[f"final_ood_{score}_fpr95"], 3)]
        sets = ", ".join(sorted({d for d in g["ood_dataset"] if d}))
        lines.append(f"| {first['loss']} | {first['dataset']} | {first['feat_dim']} | "
                     f"{first['departures'] or '— (reference recipe)'} | {sets} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---- table.md: every group ---------------------------------------------------------
def group_cells(g: pd.DataFrame, columns: list[str]) -> str:
    first, finished = g.iloc[0], g[g["status"] == "finished"]
    ref = reference_of(first["dataset"], first["feat_dim"], first["loss"]) if first["on_recipe"] else None
    diverged = int((g["status"] == "diverged").sum())
    failed = int((g["status"] == "failed").sum())
    seeds = str(len(finished)) + (f" (+{diverged} diverged)" if diverged else "") + (f" (+{failed} failed)" if failed else "")
    cell = {
        "loss": first["loss"], "dataset": first["dataset"], "feat_dim": str(first["feat_dim"]),
        "departs": first["departures"] or "— (reference recipe)", "centers": centers_of(first),
        "best": fmt_ci(finished["best_test_acc"]), "last": fmt_ci(finished["final_test_acc"]),
        "ref": "" if reference_of(first["dataset"], first["feat_dim"], first["loss"]) is None
        else f"{reference_of(first['dataset'], first['feat_dim'], first['loss']):.3f}",
        "diff best": "" if ref is None or finished.empty else points(finished["best_test_acc"].mean() - ref),
        "diff last": "" if ref is None or finished.empty else points(finished["final_test_acc"].mean() - ref),
        "seeds": seeds, "device": ", ".join(sorted({d for d in g["device"] if d})),
        "code": ", ".join(sorted({c for c in g["code_version"] if c})),
    }
    for name, column in EMBEDDING_COLUMNS:
        cell[name] = fmt_ci(finished[column])
    return "| " + " | ".join(cell[c] for c in columns) + " |"


FULL_COLUMNS = ["loss", "dataset", "feat_dim", "departs", "centers", "best", "last", "ref", "diff best", "diff last",
                "seeds", "device", "code"]
FULL_HEADERS = ["loss", "dataset", "feat_dim", "departs from the reference in", "centers", "acc (best epoch)",
                "acc (last epoch)", "ref", "diff best (points)", "diff last (points)", "seeds", "device", "code"]
EMBEDDING_COLUMNS = [("nearest center", "final_test_acc_center"), ("nearest class mean", "final_test_acc_class_mean"),
                     ("1-NN", "final_knn1_acc"), ("MAP@R", "final_map_at_r"), ("intra / inter", "final_intra_inter_ratio")]


def full_table(df: pd.DataFrame, ledger: Path) -> str:
    finished = df[df["status"] == "finished"]
    lines = [
        f"**{len(df)} runs recorded, {len(finished)} finished, {int(finished['on_recipe'].sum())} of them on the "
        f"full reference recipe.** Generated by `python -m experiments.report` from `{ledger / 'runs.csv'}`.", "",
        "Test accuracy by the rule each loss declares (argmax for xent, cent and contrastive-center; nearest learned "
        "center for the losses without softmax). Protocol `reference` (the study's): the schedule and the best epoch "
        "are chosen on the test split, so `best epoch` is optimistic; protocol `fair`: a fixed stratified 10% "
        "validation split of the training set chooses them and the test split is evaluated once (both columns are "
        "that one figure). Mean ± 95% t-interval over seeds where there is more than one. `ref` is the reference "
        "study's value (one run, its full recipe); `diff` = ours − ref in points, only for groups on the full "
        "reference recipe (every field of it, the loss's default options, full splits, fp32).", "",
        "| " + " | ".join(FULL_HEADERS) + " |", "|" + " --- |" * len(FULL_HEADERS)]
    lines += [group_cells(g, FULL_COLUMNS) for g in run_groups(df)]
    if ood := ood_table(df):
        lines += ["", ood.rstrip()]
    embedding = [group_cells(g, ["loss", "dataset", "feat_dim", "departs", "centers"] + [n for n, _ in EMBEDDING_COLUMNS])
                 for g in run_groups(df) if (g["status"] == "finished").any()]
    if embedding:
        lines += ["", "Embedding metrics of the test features of the reported model (the last epoch's, or the "
                  "selected one under `fair`): accuracy by nearest learned center (class means for xent) and by "
                  "nearest class mean, 1-NN accuracy against the training features, MAP@R (pytorch-metric-learning's "
                  "definition), and mean distance to the class mean over mean distance between class means.", "",
                  "| loss | dataset | feat_dim | departs from the reference in | centers | "
                  + " | ".join(n for n, _ in EMBEDDING_COLUMNS) + " |",
                  "|" + " --- |" * (5 + len(EMBEDDING_COLUMNS)), *embedding]
    return "\n".join(lines) + "\n"


# ---- pictures ----------------------------------------------------------------------
def held_out_split(row) -> str:
    """The split the per-epoch frames show: test under the reference protocol, val under fair."""
    return "test" if (row.get("protocol") or "reference") == "reference" else "val"


def picture_split(row) -> str:
    """The held-out split a run's pictures show: the per-epoch frames (feat_dim 2) hold the split that
    chose the epoch; the final features (wider) are always the test split's."""
    return held_out_split(row) if int(row["feat_dim"]) == 2 else "test"


def curve_label(row) -> str:
    """Names a group of runs by what tells it apart from another in the same panel."""
    return f"{row['loss']} [{row['departures'] or 'reference recipe'}] ({held_out_split(row)})"


def curve_panels(df: pd.DataFrame, epochs: pd.DataFrame) -> dict[tuple, dict]:
    """``{(dataset, feat_dim): {label: (epochs, mean, half_width)}}``, one curve per group of finished runs."""
    panels: dict[tuple, dict] = {}
    by_run = {run_id: e.sort_values("epoch") for run_id, e in epochs.groupby("run_id")} if len(epochs) else {}
    for g in run_groups(df[df["status"] == "finished"]):
        first = g.iloc[0]
        split = held_out_split(first)
        curves = [by_run[r][f"{split}_acc"].to_numpy(float) for r in g["run_id"] if r in by_run]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        acc = np.stack([c[:n] for c in curves])
        half = np.array([mean_ci(col)[1] or 0.0 for col in acc.T])
        panel = panels.setdefault((first["dataset"], int(first["feat_dim"])), {})
        label = curve_label(first)
        if label in panel:
            label += f" {first['group_id']}"
        panel[label] = (np.arange(1, n + 1), acc.mean(0), half)
    return panels


def learning_curves(df: pd.DataFrame, epochs: pd.DataFrame, imgs: Path) -> list[Path]:
    paths = []
    for (dataset, feat_dim), curves in sorted(curve_panels(df, epochs).items(),
                                              key=lambda kv: (DATASET_ORDER.index(kv[0][0]), kv[0][1])):
        path = imgs / "curves" / f"{dataset}-feat={feat_dim}.png"
        learning_curve_png(curves, f"{dataset}, feat_dim {feat_dim}: held-out accuracy per epoch (band: 95% CI)", path)
        paths.append(path)
    return paths


def picture_runs(df: pd.DataFrame) -> list:
    """For each (loss, dataset, feat_dim): one finished run, preferring the reference recipe, then the
    reference protocol and center rule, then the longest, largest, lowest-seed run."""
    chosen = {}
    finished = df[df["status"] == "finished"].to_dict("records")
    for row in sorted(finished, key=lambda r: (r["on_recipe"], held_out_split(r) == "test",
                                               (r.get("center_rule") or "joint") == "joint", int(r["epochs"]),
                                               int(r["train_size"] or 10 ** 9), -int(r["seed"]), r["run_id"])):
        chosen[(row["loss"], row["dataset"], int(row["feat_dim"]))] = row
    return [chosen[k] for k in sorted(chosen, key=lambda k: (DATASET_ORDER.index(k[1]) if k[1] in DATASET_ORDER
                                                             else 99, MAIN_LOSSES.index(k[0]) if k[0] in MAIN_LOSSES
                                                             else 9, k[0]))]


def class_names(row) -> tuple[str, ...]:
    names = SPECS[row["dataset"]].class_names
    known = parse_classes(row.get("known_classes") or "")
    return tuple(names[c] for c in known) if known else names


def picture_dir(imgs: Path, row) -> Path:
    return imgs / f"{row['loss']}-{row['dataset']}-feat={row['feat_dim']}"


def feature_pictures(df: pd.DataFrame, runs: Path, imgs: Path) -> list[tuple[dict, Path, str]]:
    """Make the pictures of each picture run; ``(row, folder, extension)`` for those that exist."""
    made = []
    for row in picture_runs(df):
        run_dir, out_dir = runs / row["run_id"], picture_dir(imgs, row)
        names, split = class_names(row), picture_split(row)
        title = f"{row['loss']}, {row['dataset']}"
        frames = sorted((run_dir / "features").glob("epoch_*.pt"))
        if int(row["feat_dim"]) == 2 and frames:
            feature_gifs(frames, names, out_dir, title, split)
        elif int(row["feat_dim"]) != 2 and (run_dir / "features" / "final.pt").exists():
            embedding_pngs(run_dir / "features" / "final.pt", names, out_dir, title)
        ext = "gif" if int(row["feat_dim"]) == 2 else "png"
        if (out_dir / f"train.{ext}").exists() and (out_dir / f"{split}.{ext}").exists():
            made.append((row, out_dir, ext))
    return made


def relative(path: Path, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_posix()


def figures_markdown(made: list, readme_dir: Path) -> str:
    """The figure tables, built from the ledger rows the pictures were made from."""
    lines = []
    for ext, what in (("gif", "2-D features over the epochs (centers marked X)"),
                      ("png", "PCA of the final features")):
        entries = [(row, folder) for row, folder, e in made if e == ext]
        if not entries:
            continue
        lines += [f"**{what}**. Each picture is of one run, named in the `run` column with what departs from the "
                  "reference recipe.", "", "| loss | dataset | feat_dim | run | train | held-out split |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for row, folder in entries:
            rel, split = relative(folder, readme_dir), picture_split(row)
            lines.append(f"| {row['loss']} | {row['dataset']} | {row['feat_dim']} | `{row['run_id']}` "
                         f"({row['departures'] or 'reference recipe'}) | ![]({rel}/train.{ext}) | "
                         f"{split}: ![]({rel}/{split}.{ext}) |")
        lines.append("")
    return "\n".join(lines) or "No pictures yet: run the grid.\n"


# ---- README --------------------------------------------------------------------------
def replace_section(text: str, name: str, body: str) -> str:
    start, end = MARKERS[name]
    if start not in text or end not in text:
        raise ValueError(f"the README has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body.rstrip()}\n{end}{tail}"


def results_markdown(df: pd.DataFrame, ledger: Path, curves: list[Path], readme_dir: Path) -> str:
    parts = [paper_table(df)]
    if not on_recipe_finished(df).empty:
        parts += [paired_comparisons(df), train_test_gap(df)]
    parts.append(other_runs_table(df, ledger))
    parts.append(ood_table(df))
    parts.append("\n".join(f"![]({relative(p, readme_dir)})" for p in curves))
    return "\n".join(p for p in parts if p)


def build(outputs: Outputs, runs: Path) -> str | None:
    """Write table.md, the pictures and (main ledger) the README sections; the table's text, or None."""
    runs_csv = outputs.results / "runs.csv"
    if not runs_csv.exists() or runs_csv.stat().st_size == 0:
        return None
    df = read_ledger(runs_csv)
    if df.empty:
        return None
    table = full_table(df, outputs.results)
    write_if_changed(outputs.results / "table.md", table.encode())
    epochs_csv = outputs.results / "epochs.csv"
    epochs = pd.read_csv(epochs_csv) if epochs_csv.exists() and epochs_csv.stat().st_size else pd.DataFrame()
    curves = learning_curves(df, epochs, outputs.imgs)
    made = feature_pictures(df, runs, outputs.imgs)
    if outputs.readme is not None:
        readme_dir = outputs.readme.parent
        text = outputs.readme.read_text()
        text = replace_section(text, "results", results_markdown(df, outputs.results, curves, readme_dir))
        text = replace_section(text, "figures", figures_markdown(made, readme_dir))
        write_if_changed(outputs.readme, text.encode())
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--results", type=Path, default=MAIN_LEDGER,
                        help="the ledger folder: its runs.csv and epochs.csv are read, its table.md written")
    parser.add_argument("--runs", type=Path, default=Path("runs"),
                        help="the run directories (their per-epoch features make the gifs and PNGs)")
    parser.add_argument("--imgs", type=Path, default=None,
                        help="where the pictures go (default: imgs/ for the main ledger, RESULTS/imgs otherwise)")
    parser.add_argument("--readme", type=Path, default=None,
                        help="the README whose marked sections are rewritten (default: README.md for the main "
                             "ledger, none otherwise)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    outputs = Outputs.for_ledger(args.results, args.imgs, args.readme)
    if (problem := outputs.problem()) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    table = build(outputs, args.runs)
    if table is None:
        print(f"no runs recorded in {args.results / 'runs.csv'}: run python -m experiments.grid first", file=sys.stderr)
        return 1
    print(f"report: {outputs.results / 'table.md'}" + (f", {outputs.readme} sections updated" if outputs.readme else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
