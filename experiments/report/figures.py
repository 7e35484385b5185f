"""The pictures: learning curves per dataset and feat_dim, the feature pictures of one run per loss
(2-D gifs over the epochs, PCA of the final features otherwise), and a single run's own pictures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from centersuite.losses import LOSSES
from experiments.curves import learning_curve_png
from experiments.engine.data import class_names as dataset_class_names
from experiments.engine.protocol import protocol_of
from experiments.plots import embedding_pngs, feature_gifs
from experiments.report.rows import (
    DATASET_ORDER,
    MAIN_LOSSES,
    held_out_split,
    picture_preference,
    run_groups,
)
from experiments.report.stats import mean_ci


def relative(path: Path, base: Path) -> str:
    """``path`` as a link from a file in ``base`` (``../imgs/...`` from results/table.md)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()


def picture_split(row) -> str:
    """The split a run's feature picture shows, and names (experiments/engine/protocol.py): the per-epoch
    frames' split for feat_dim 2, the test split for the final features of wider runs."""
    return protocol_of(row.get("protocol")).picture_split(int(row["feat_dim"]))


LINES_PER_PANEL = (
    6  # more lines than this in one picture cannot be told apart: the rest go to the next one
)


def shared_departures(labels: list[str]) -> tuple[str, dict[str, str]]:
    """What every label's departures share (said once, in the title), and each label without it."""
    parts = {label: label.partition(" [")[2].rstrip("]").split(", ") for label in labels}
    common = (
        [p for p in next(iter(parts.values())) if all(p in ps for ps in parts.values())]
        if len(labels) > 1
        else []
    )
    short = {
        label: label.partition(" [")[0]
        + (f" [{', '.join(rest)}]" if (rest := [p for p in ps if p not in common]) else "")
        for label, ps in parts.items()
    }
    return ", ".join(common), short


def curve_label(row) -> str:
    """Names a group of runs by what tells it apart from another in the same panel."""
    return f"{row['loss']} [{row['departures'] or 'reference recipe'}]"


def loss_color(loss: str) -> int:
    """One color per loss in every picture: its place in the registry."""
    return list(LOSSES).index(loss) if loss in LOSSES else len(LOSSES)


def curve_panels(df: pd.DataFrame, epochs: pd.DataFrame) -> dict[tuple, dict]:
    """``{(dataset, feat_dim, split): {label: (loss, (epochs, mean, half_width))}}``, one curve per group of
    finished runs; the split (test, val or the training batches) is a panel's own, never mixed with another."""
    panels: dict[tuple, dict] = {}
    by_run = (
        {run_id: e.sort_values("epoch") for run_id, e in epochs.groupby("run_id")}
        if len(epochs)
        else {}
    )
    for g in run_groups(df[df["status"] == "finished"]):
        first = g.iloc[0]
        curve = group_curve(g, by_run)
        if curve is None:
            continue
        panel = panels.setdefault(
            (first["dataset"], int(first["feat_dim"]), held_out_split(first)), {}
        )
        label = curve_label(first)
        if label in panel:
            label += f" {first['group_id']}"
        panel[label] = (first["loss"], curve)
    return panels


def group_curve(g: pd.DataFrame, by_run: dict) -> tuple | None:
    """Held-out accuracy by epoch of a group's runs (``by_run``: run id -> its epoch rows): epochs, mean,
    95% half width over seeds (0 for one seed) and the number of seeds; None when no run of it has epoch rows."""
    split = held_out_split(g.iloc[0])
    curves = [by_run[r][f"{split}_acc"].to_numpy(float) for r in g["run_id"] if r in by_run]
    if not curves:
        return None
    n = min(len(c) for c in curves)
    acc = np.stack([c[:n] for c in curves])
    half = np.array([mean_ci(col)[1] or 0.0 for col in acc.T])
    return np.arange(1, n + 1), acc.mean(0), half, len(curves)


SPLIT_WORDS = {
    "test": "test accuracy",
    "val": "validation accuracy",
    "train": "training accuracy (augmented batches)",
}


def learning_curves(df: pd.DataFrame, epochs: pd.DataFrame, imgs: Path) -> list[Path]:
    """One picture per dataset, feat_dim and split, at most LINES_PER_PANEL lines each (more: numbered parts)."""
    paths = []
    for (dataset, feat_dim, split), curves in sorted(
        curve_panels(df, epochs).items(),
        key=lambda kv: (DATASET_ORDER.index(kv[0][0]), kv[0][1], list(SPLIT_WORDS).index(kv[0][2])),
    ):
        labels = sorted(curves, key=lambda label: (loss_color(curves[label][0]), label))
        parts = [labels[i : i + LINES_PER_PANEL] for i in range(0, len(labels), LINES_PER_PANEL)]
        for k, part in enumerate(parts, 1):
            suffix = "" if len(parts) == 1 else f"-{k}"
            path = imgs / "curves" / f"{dataset}-feat={feat_dim}-{split}{suffix}.png"
            shared, short = shared_departures(part)
            title = (
                f"{dataset}, feat_dim {feat_dim}: {SPLIT_WORDS[split]} per epoch"
                + (f" ({k} of {len(parts)})" if len(parts) > 1 else "")
                + (f"\nall: {shared}" if shared else "")
            )
            learning_curve_png(
                {short[label]: curves[label][1] for label in part},
                title,
                path,
                colors={short[label]: loss_color(curves[label][0]) for label in part},
                ylabel=SPLIT_WORDS[split],
            )
            paths.append(path)
    return paths


def picture_runs(df: pd.DataFrame) -> list:
    """For each (loss, dataset, feat_dim, swept values): one finished run, the first by rows.picture_preference
    (the one the side-by-side pictures show)."""
    chosen = {}
    finished = df[df["status"] == "finished"].to_dict("records")
    for row in sorted(
        finished, key=picture_preference, reverse=True
    ):  # the preferred one comes last
        chosen[(row["loss"], row["dataset"], int(row["feat_dim"]), row["variant"])] = row
    return [
        chosen[k]
        for k in sorted(
            chosen,
            key=lambda k: (
                DATASET_ORDER.index(k[1]) if k[1] in DATASET_ORDER else 99,
                MAIN_LOSSES.index(k[0]) if k[0] in MAIN_LOSSES else 9,
                k[0],
                k[2],
                k[3],
            ),
        )
    ]


def class_names(row) -> tuple[str, ...]:
    """A run's class names (its known classes only, for an open-set run) from its row or config dict."""
    return dataset_class_names(row["dataset"], row.get("known_classes") or "")


def picture_dir(imgs: Path, row) -> Path:
    """``imgs/standalone-mnist-feat=2``, with the swept values for a sweep's group: ``...-feat=2-weight_inter=0.01``."""
    variant = row["variant"].replace(", ", "-")
    return imgs / (
        f"{row['loss']}-{row['dataset']}-feat={row['feat_dim']}"
        + (f"-{variant}" if variant else "")
    )


def feature_pictures(df: pd.DataFrame, runs: Path, imgs: Path) -> list[tuple[dict, Path, str]]:
    """Make the pictures of each picture run; ``(row, folder, extension)`` for those that exist."""
    made = []
    for row in picture_runs(df):
        run_dir, out_dir = runs / row["run_id"], picture_dir(imgs, row)
        names, split = class_names(row), picture_split(row)
        title = (
            f"{row['loss']}"
            + (f" ({row['variant']})" if row["variant"] else "")
            + f", {row['dataset']}"
        )
        frames = sorted((run_dir / "features").glob("epoch_*.pt"))
        if int(row["feat_dim"]) == 2 and frames:
            feature_gifs(frames, names, out_dir, title, split)
        elif int(row["feat_dim"]) != 2 and (run_dir / "features" / "final.pt").exists():
            embedding_pngs(run_dir / "features" / "final.pt", names, out_dir, title)
        ext = "gif" if int(row["feat_dim"]) == 2 else "png"
        if (out_dir / f"{split}.{ext}").exists():
            made.append((row, out_dir, ext))
    return made


def run_pictures(cfg, run_dir: Path) -> Path | None:
    """The run's own pictures in ``run_dir/pictures``: 2-D gifs over training (train and held-out split), or
    the PCA of the final wide features; None when the run has no features (it diverged)."""
    names, out = class_names(cfg.to_dict()), run_dir / "pictures"
    frames = sorted((run_dir / "features").glob("epoch_*.pt"))
    title = f"{cfg.loss}, {cfg.dataset}"
    if cfg.feat_dim == 2 and frames:
        feature_gifs(frames, names, out, title, protocol_of(cfg.protocol).shown)
    elif cfg.feat_dim != 2 and (run_dir / "features" / "final.pt").exists():
        embedding_pngs(run_dir / "features" / "final.pt", names, out, title)
    else:
        return None
    return out
