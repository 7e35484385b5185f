"""The README's side-by-side pictures: per dataset, the three main losses at feat_dim 2 as one gif
(its last frame also a PNG) with their learning curves, and for wider features one still of the
three projected to 2-D.

Which runs: for each main loss, the finished run that rows.picture_preference puts first (the full
reference recipe, else the CPU study's seed 0, else the demo preset's, ...; the caption names what it
departs from, and a run recorded by older code is shown with a notice rather than dropped). The pictures are drawn from compact
frames kept in the ledger folder (``RESULTS/frames/<run id>.pt``, float16, at most 40 frames of the
held-out split, as the bundle keeps them), written there from ``runs/`` whenever the run directory
is present, so that a clean clone redraws every picture from what git holds.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from experiments.curves import learning_curve_png
from experiments.plots import composite_gif, composite_projection_png, even_subset
from experiments.report.figures import SPLIT_WORDS, class_names, group_curve, loss_color
from experiments.report.rows import (
    DATASET_ORDER,
    MAIN_LOSSES,
    held_out_split,
    picture_preference,
)

FRAMES = (
    "frames"  # the compact frames the pictures are drawn from, in the ledger folder (committed)
)
STILL_POINTS = 2000  # held-out points kept per wide run for its projection


def composite_runs(df: pd.DataFrame) -> dict[tuple[str, int], dict[str, dict]]:
    """``{(dataset, feat_dim): {loss: row}}`` for every setting where at least two main losses have a run."""
    ok = df[
        (df["status"] == "finished")
        & df["loss"].isin(MAIN_LOSSES)
        & (df["variant"] == "")
        & (df["center_rule"].replace("", "joint") == "joint")
        & (df["protocol"].replace("", "reference") == "reference")
        & (df["known_classes"] == "")
    ]
    out = {}
    for (dataset, feat_dim), runs in ok.groupby(["dataset", "feat_dim"]):
        chosen = {
            loss: min(r.to_dict("records"), key=picture_preference)
            for loss, r in runs.groupby("loss")
        }
        if len(chosen) >= 2:
            out[(dataset, int(feat_dim))] = {
                loss: chosen[loss] for loss in MAIN_LOSSES if loss in chosen
            }
    return dict(sorted(out.items(), key=lambda kv: (DATASET_ORDER.index(kv[0][0]), kv[0][1])))


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and torch.equal(a, b)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def compact(run_dir: Path, feat_dim: int) -> dict | None:
    """What the pictures need from a run directory, small: 2-D frames, or the final wide features."""
    features = run_dir / "features"
    if feat_dim == 2:
        files = sorted(features.glob("epoch_*.pt"))
        if not files:
            return None
        frames = [torch.load(files[i]) for i in even_subset(len(files))]
        return {
            "frames": [
                {k: f[k] for k in ("epoch", "test_acc", "test_features", "test_labels", "centers")}
                for f in frames
            ]
        }
    if not (features / "final.pt").exists():
        return None
    final = torch.load(features / "final.pt")
    keep = torch.randperm(len(final["test_labels"]), generator=torch.Generator().manual_seed(3))[
        :STILL_POINTS
    ]
    keep = keep.sort().values
    return {
        "final": {
            "test_features": final["test_features"][keep].half(),
            "test_labels": final["test_labels"][keep],
            "test_acc": final["test_acc"],
        }
    }


def stored(row, runs: Path, store: Path) -> dict | None:
    """The run's compact frames: made from ``runs/<id>`` when it is there (and kept in ``store``), else
    read from ``store``; None when neither has them."""
    path = store / f"{row['run_id']}.pt"
    made = compact(runs / row["run_id"], int(row["feat_dim"]))
    kept = torch.load(path) if path.exists() else None
    if made is None:
        return kept
    if kept is None or not _equal(made, kept):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(made, path)
    return made


def keep_frames(df: pd.DataFrame, runs: Path, store: Path) -> int:
    """Write into ``store`` the compact frames of the runs the README's pictures would show (one per main loss,
    dataset and feat_dim: at most a few MiB whatever the number of seeds) whose directories are in ``runs``,
    without drawing anything: for a machine that hands its results back in a bundle, its run directories
    left behind. The number of runs kept."""
    kept = 0
    for rows in composite_runs(df).values():
        for row in rows.values():
            if (Path(runs) / row["run_id"]).is_dir() and stored(row, runs, store) is not None:
                kept += 1
    return kept


def composite_pictures(
    df: pd.DataFrame,
    epochs: pd.DataFrame,
    runs: Path,
    store: Path,
    imgs: Path,
    projection: str = "pca",
) -> list[dict]:
    """Draw every composite; one entry per setting drawn: ``dataset``, ``feat_dim``, ``rows`` (loss -> row),
    ``pictures`` (paths: the gif and its still, or the projection still; the curves)."""
    made = []
    for (dataset, feat_dim), rows in composite_runs(df).items():
        data = {loss: stored(row, runs, store) for loss, row in rows.items()}
        rows = {loss: row for loss, row in rows.items() if data[loss] is not None}
        if len(rows) < 2:
            continue
        first = next(iter(rows.values()))
        names, base = class_names(first), imgs / "composite" / f"{dataset}-feat={feat_dim}"
        if feat_dim == 2:
            panels = [{"name": loss, "frames": data[loss]["frames"]} for loss in rows]
            pictures = [base.with_suffix(".gif"), base.with_suffix(".png")]
            composite_gif(
                panels, names, f"{dataset}, feat_dim 2, {held_out_split(first)} split", *pictures
            )
        else:
            panels = [
                {
                    "name": f"{loss}: acc {row['final_test_acc']:.3f}, 1-NN {row['final_knn1_acc']:.3f}, "
                    f"MAP@R {row['final_map_at_r']:.3f}",
                    "features": data[loss]["final"]["test_features"].float().numpy(),
                    "labels": data[loss]["final"]["test_labels"].numpy(),
                }
                for loss, row in rows.items()
            ]
            pictures = [imgs / "composite" / f"{dataset}-feat={feat_dim}-{projection}.png"]
            composite_projection_png(
                panels,
                names,
                f"{dataset}, feat_dim {feat_dim}: test features, "
                f"{projection.upper() if projection == 'pca' else 't-SNE'}",
                projection,
                pictures[0],
            )
        by_run = (
            {run_id: e.sort_values("epoch") for run_id, e in epochs.groupby("run_id")}
            if len(epochs)
            else {}
        )
        finished = df[df["status"] == "finished"]
        curves = {
            loss: c
            for loss, row in rows.items()
            if (c := group_curve(finished[finished["group_id"] == row["group_id"]], by_run))
            is not None
        }
        if curves:
            pictures.append(imgs / "composite" / f"{dataset}-feat={feat_dim}-curves.png")
            learning_curve_png(
                curves,
                f"{dataset}, feat_dim {feat_dim}: {SPLIT_WORDS[held_out_split(first)]} per epoch",
                pictures[-1],
                colors={loss: loss_color(loss) for loss in curves},
                ylabel=SPLIT_WORDS[held_out_split(first)],
            )
        made.append(
            {
                "dataset": dataset,
                "feat_dim": feat_dim,
                "rows": rows,
                "pictures": pictures,
                "projection": projection,
            }
        )
    return made
