"""The ledger as a table: rows parsed, what each run departs from the reference recipe, groups of
runs that differ only by seed, and the reference study's own figures to compare with."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from centersuite.eval.ood import METRICS as OOD_METRICS
from centersuite.eval.ood import SCORES as OOD_SCORES
from centersuite.losses import CENTER_RULES, LOSSES, has_class_parameters, loss_options
from centersuite.models import MODELS
from experiments.datasets.specs import SPECS
from experiments.engine.config import SWEEPABLE, RunConfig
from experiments.engine.protocol import protocol_of
from experiments.ledger.fingerprint import code_fingerprint
from experiments.ledger.rows import config_of
from experiments.runners.presets import MAIN_LOSSES, is_preset_run
from experiments.runners.sweep import described

REFERENCE = {  # the reference study's table (test accuracy, one run each)
    ("mnist", 2): {"xent": 0.991, "cent": 0.990, "standalone": 0.994},
    ("mnist", 128): {"xent": 0.994, "cent": 0.996, "standalone": 0.996},
    ("fashion-mnist", 2): {"xent": 0.913, "cent": 0.913, "standalone": 0.921},
    ("fashion-mnist", 128): {"xent": 0.926, "cent": 0.932, "standalone": 0.922},
    ("cifar-10", 2): {"xent": 0.815, "cent": 0.775, "standalone": 0.787},
    ("cifar-10", 128): {"xent": 0.866, "cent": 0.858, "standalone": 0.806},
}


DATASET_ORDER = list(SPECS)


METRICS = (
    "best_test_acc",
    "final_test_acc",
    "final_train_acc",
    "final_test_acc_center",
    "final_test_acc_class_mean",
    "final_knn1_acc",
    "final_map_at_r",
    "final_intra_inter_ratio",
    "wall_s",
    "epochs_done",
    *(f"final_ood_{s}_{m}" for s in OOD_SCORES for m in OOD_METRICS),
)


def readable(text: str) -> str:
    """Numbers in a label rounded to 4 significant digits (``lr=0.038239433913468866`` -> ``lr=0.03824``): what
    tells groups apart, not the float's last bits."""
    return re.sub(r"(?<![\w.])\d+\.\d{5,}(?:e-?\d+)?", lambda m: f"{float(m.group()):.4g}", text)


def departures_of(row: dict) -> str:
    cfg = config_of(row)
    return "loss no longer exists" if cfg is None else readable(", ".join(described(cfg)))


def is_stale(row: dict) -> bool:
    """Recorded by other code than the code as it is now (experiments/ledger/fingerprint.py)."""
    if row["loss"] not in LOSSES or row["model"] not in MODELS:
        return True
    return row.get("code_fingerprint", "") != code_fingerprint(row["loss"], row["model"])


def stale_note(row: dict) -> str:
    recorded = row.get("code_fingerprint") or ""
    return (
        f"stale: code changed since (fingerprint {recorded})"
        if recorded
        else "stale: recorded before fingerprints"
    )


def variant_of(row: dict) -> str:
    """The swept values that set this group apart (loss options and SWEEPABLE fields off their defaults),
    ``weight_inter=0.01, lr=0.1``; empty for the defaults. Pictures' titles and file names carry it."""
    cfg = config_of(row)
    if cfg is None:
        return ""
    defaults = RunConfig(loss=cfg.loss)
    parts = [
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in sorted(cfg.loss_options.items())
        if defaults.loss_options.get(k) != v
    ]
    return ", ".join(
        parts
        + [f"{k}={getattr(cfg, k):g}" for k in SWEEPABLE if getattr(cfg, k) != getattr(defaults, k)]
    )


def read_ledger(path: Path) -> pd.DataFrame:
    """runs.csv as a DataFrame with numbers parsed and, per row, what departs from the reference recipe.
    Superseded rows (recorded again by newer code) are left out; stale rows (recorded by other code than
    this) say so in their departures, so every table and caption marks them, and they form their own groups."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in ("ood_dataset", "known_classes", "code_fingerprint", "superseded_by"):
        if col not in df:
            df[col] = ""
    df = df[df["superseded_by"] == ""].reset_index(drop=True)
    # rows recorded before the label said "1 thread" (the same device, another spelling)
    df["device"] = df["device"].str.replace("(1 threads,", "(1 thread,", regex=False)
    for col in METRICS:
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df else np.nan
    records = df.to_dict("records")
    df["stale"] = [is_stale(r) for r in records]
    df["departures"] = [
        ", ".join(p for p in (departures_of(r), stale_note(r) if s else "") if p)
        for r, s in zip(records, df["stale"])
    ]
    df["variant"] = [variant_of(r) for r in records]
    df.loc[df["stale"], "group_id"] = df.loc[df["stale"], "group_id"] + "-stale"
    df["on_recipe"] = df["departures"] == ""
    df["feat_dim"] = df["feat_dim"].astype(int)
    df["seed"] = df["seed"].astype(int)
    return df


def sort_key(row) -> tuple:
    """Dataset, feat_dim, loss (the reference three first), protocol, center rule, options, length, size."""
    return (
        DATASET_ORDER.index(row["dataset"]) if row["dataset"] in DATASET_ORDER else 99,
        int(row["feat_dim"]),
        MAIN_LOSSES.index(row["loss"]) if row["loss"] in MAIN_LOSSES else 9,
        row["loss"],
        not row["on_recipe"],
        (row.get("protocol") or "reference") != "reference",
        CENTER_RULES.index(row.get("center_rule") or "joint"),
        row["loss_options"],
        -int(row["epochs"]),
        -int(row["train_size"] or 10**9),
        row["group_id"],
    )


def run_groups(df: pd.DataFrame) -> list[pd.DataFrame]:
    """Runs that differ only by seed, in display order."""
    groups = [g for _, g in df.groupby("group_id", sort=False)]
    return sorted(groups, key=lambda g: sort_key(g.iloc[0]))


@functools.cache
def has_learnable_centers(loss: str, feat_dim: int, options: str) -> bool:
    if loss not in LOSSES:
        return False
    known = loss_options(loss)
    kept = {k: v for k, v in json.loads(options or "{}").items() if k in known}
    return has_class_parameters(loss, kept)


def centers_of(row) -> str:
    """The center update rule, or a dash for a run without learnable centers (asked of the loss itself)."""
    rule = row.get("center_rule") or "joint"
    return (
        rule
        if has_learnable_centers(row["loss"], int(row["feat_dim"]), row["loss_options"])
        else "—"
    )


def reference_of(dataset: str, feat_dim: int, loss: str) -> float | None:
    return REFERENCE.get((dataset, int(feat_dim)), {}).get(loss)


def on_recipe_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The main losses' runs on the full reference recipe, whatever their status."""
    return df[df["on_recipe"] & df["loss"].isin(MAIN_LOSSES)]


def on_recipe_finished(df: pd.DataFrame) -> pd.DataFrame:
    return on_recipe_rows(df)[on_recipe_rows(df)["status"] == "finished"]


def cells_by_setting(df: pd.DataFrame):
    """``(dataset, feat_dim, {loss: runs})`` for every setting of the reference table."""
    for dataset, feat_dim in REFERENCE:
        runs = df[(df["dataset"] == dataset) & (df["feat_dim"] == feat_dim)]
        yield dataset, feat_dim, {loss: runs[runs["loss"] == loss] for loss in MAIN_LOSSES}


def held_out_split(row) -> str:
    """The split a run shows per epoch (experiments/engine/protocol.py): test under the reference protocol, val
    under fair, and under ``last`` (no held-out split) the training split (its curves: the training batches'
    accuracy; its 2-D frames: the fixed training subset, unaugmented)."""
    return protocol_of(row.get("protocol")).shown


def is_dirty(row) -> bool:
    """Recorded by uncommitted code (``-dirty``): which code made its numbers cannot be named."""
    return str(row.get("code_version", "")).endswith("-dirty")


def without_dirty(rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``rows`` but those recorded by uncommitted code (``is_dirty``), and how many were left out."""
    dirty = pd.Series([is_dirty(r) for r in rows.to_dict("records")], index=rows.index, dtype=bool)
    return rows[~dirty], int(dirty.sum())


def picture_preference(row) -> tuple:
    """Which run of a loss the pictures show (the smallest first): the full reference recipe, then the CPU
    study's seed 0 (the README's main results), then the demo preset's; the code as it is now before older
    code, committed code before uncommitted; the reference protocol and center rule; then the longest,
    largest, lowest-seed run. A run recorded by older code is still shown when nothing better is there:
    pictures never vanish because the code moved on (their captions say so)."""
    cfg = config_of(row)
    return (
        not row["on_recipe"],
        not (cfg is not None and is_preset_run(cfg, "cpu-study") and int(row["seed"]) == 0),
        not (cfg is not None and is_preset_run(cfg, "demo")),
        bool(row["stale"]),
        is_dirty(row),
        (row.get("protocol") or "reference") != "reference",
        (row.get("center_rule") or "joint") != "joint",
        -int(row["epochs"]),
        -int(row["train_size"] or 10**9),
        int(row["seed"]),
        row["run_id"],
    )
