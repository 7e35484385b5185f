"""The README's "Tuned comparison": every equal-budget tuning study of the ledger (RESULTS/tune/STUDY.json,
written by experiments/tune.py) with the ledger rows of its reproductions, and a plot of the best validation
accuracy so far by trial for each loss."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from centersuite.losses import LOSSES
from experiments.curves import best_so_far_png
from experiments.report.cells import (
    COUNT_RULE,
    comparison_sentence,
    fmt_ci,
    paired,
    pairs_text,
    points,
    runs_text,
)
from experiments.report.figures import loss_color
from experiments.report.rows import without_dirty
from experiments.tuning.space import CENTER_LR, describe_space

METRIC = "final_test_acc"


def read_summary(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def summaries(results: Path) -> list[dict]:
    found = (read_summary(p) for p in sorted((Path(results) / "tune").glob("*.json")))
    return [s for s in found if s is not None]


def counted_trials(entry: dict) -> list[dict]:
    """The trials that count toward the budget, in the order they were started (a failed trial was enqueued
    again and counts as its retry)."""
    return [t for t in entry["trials"] if t["state"] in ("COMPLETE", "PRUNED", "RUNNING")]


def plot_path(imgs: Path, study: str, dataset: str, feat_dim: int) -> Path:
    return Path(imgs) / "tuned" / f"{study}-{dataset}-d{feat_dim}.png"


def reproduced(df: pd.DataFrame, run_ids: list[str]) -> tuple[pd.DataFrame, int]:
    """The current rows of the reproductions, whatever their status (finished, diverged, failed), but those
    recorded by uncommitted code (``-dirty``: which code made their numbers cannot be named), which enter no
    mean and no pair; and how many of those were left out."""
    if df.empty or not run_ids:
        return df.iloc[0:0], 0
    return without_dirty(df[df["run_id"].isin(run_ids)])


def ledger_history(results: Path) -> pd.DataFrame:
    """Every row of the ledger's runs.csv as recorded, the superseded ones included (``read_ledger`` leaves
    those out): the rows that show how many times a study's reproductions have been tested."""
    path = Path(results) / "runs.csv"
    if not path.exists():
        return pd.DataFrame()
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def tested_counts(study: str, history: pd.DataFrame | None) -> tuple[int, int]:
    """How many reproduction runs of ``study`` the test split has scored, as ``(current, earlier)``: rows
    tuned by the study with a test accuracy recorded, current or superseded (recorded again since)."""
    if history is None or history.empty or "tuned_by" not in history:
        return 0, 0
    rows = history[history["tuned_by"] == study]
    scored = pd.Series(False, index=rows.index)
    for col in ("final_test_acc", "best_test_acc"):
        if col in rows:
            scored |= rows[col].astype(str).str.strip() != ""
    rows = rows[scored]
    superseded = (
        rows["superseded_by"].astype(str).str.strip() != ""
        if "superseded_by" in rows
        else pd.Series(False, index=rows.index)
    )
    return int((~superseded).sum()), int(superseded.sum())


def history_text(study: str, history: pd.DataFrame | None) -> str:
    current, earlier = tested_counts(study, history)
    total = current + earlier
    if total == 0:
        return "no reproduction of this study has been tested yet"
    return (
        f"in all, the test split has scored {total} reproduction{'s' if total != 1 else ''} of this study ("
        + (
            f"{current} current, {earlier} by earlier code, since recorded again"
            if earlier
            else f"{current} current, none by earlier code"
        )
        + ")"
    )


def point_text(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in params.items())


def budget_text(summary: dict, df: pd.DataFrame, history: pd.DataFrame | None = None) -> str:
    ident = summary["identity"]
    ids = [r for e in summary["studies"] for r in e["reproductions"]]
    # all the work done, uncommitted code's too
    runs = df[df["run_id"].isin(ids)] if not df.empty else df
    seeds = ident.get("trial_seeds", 1)
    scored = (
        f"its last epoch's validation accuracy on {ident['val_size']:,} images held out of the training split"
        + (f", averaged over {seeds} seeds" if seeds > 1 else "")
        if "trial_seeds" in ident
        else f"its best epoch's validation accuracy on {ident['val_size']:,} images held out of the training split"
    )
    precise = (
        f"; BatchNorm statistics recomputed on {ident['precise_bn']:,} training images before every "
        "evaluation"
        if ident.get("precise_bn")
        else ""
    )
    trial_s = sum(t.get("wall_s") or 0 for e in summary["studies"] for t in e["trials"])
    devices = ", ".join(sorted(set(runs["device"]))) if not runs.empty else "—"
    test = (
        f"{summary['test_size']:,} test images"
        if summary.get("test_size")
        else "the whole test split"
    )
    return (
        f"Budget: {summary['trials_per_loss']} trials per loss, each {ident['epochs']} epochs on "
        f"{ident['train_size']:,} training images at a constant lr, scored by {scored} (TPE sampler, seed "
        f"{ident['seed']}, its first {ident['startup_trials']} trials random; pruner: {ident['pruner']}{precise}); "
        "the best point of each loss reproduced over "
        f"{summary['reproductions']} seeds on the {ident['train_size'] + ident['val_size']:,} images, each run's "
        f"last epoch tested on {test}; {history_text(summary['study'], history)}. Compute: "
        f"{trial_s / 60:.0f} min of trials and "
        f"{runs['wall_s'].astype(float).sum() / 60:.0f} min of its current reproductions on {devices} (each "
        "run's own wall time, summed over every invocation and worker of the study). Code: the search by trial code "
        f"{ident.get('trial_code') or 'unrecorded'}; "
        f"the reproductions by {', '.join(sorted({c for c in runs.get('code_version', []) if c})) or '—'}."
    )


def study_markdown(
    summary: dict,
    df: pd.DataFrame,
    imgs: Path,
    readme_dir: Path,
    relative,
    history: pd.DataFrame | None = None,
) -> str:
    ident = summary["identity"]
    lines = [
        f"**Study `{summary['study']}`** (`{summary['command']}`)",
        "",
        budget_text(summary, df, history),
        "",
    ]
    panels = {}
    for entry in summary["studies"]:
        panels.setdefault((entry["dataset"], entry["feat_dim"]), []).append(entry)
    for (dataset, feat_dim), entries in panels.items():
        path = plot_path(imgs, summary["study"], dataset, feat_dim)
        best_so_far_png(
            {
                e["loss"]: [
                    (t["number"], t["value"] if t["state"] == "COMPLETE" else None)
                    for t in counted_trials(e)
                ]
                for e in entries
            },
            f"tuning {dataset}, feat_dim {feat_dim}",
            path,
            colors={e["loss"]: loss_color(e["loss"]) for e in entries},
        )
        found = {e["loss"]: reproduced(df, e["reproductions"]) for e in entries}
        runs = {loss: rows for loss, (rows, _) in found.items()}
        xent = runs.get("xent")
        lines += [
            f"*{dataset}, feat_dim {feat_dim}*",
            "",
            "| loss | searched | best point | best trial's score | trials: scored / pruned (epochs saved) "
            "/ diverged / failed | reproduced test acc (95% CI), runs | − xent, points (95% CI), pairs | p |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        sentences = []
        for e in entries:
            trials = counted_trials(e)
            scored = sum(t["state"] == "COMPLETE" for t in trials)
            pruned = [t for t in trials if t["state"] == "PRUNED"]
            saved = sum(ident["epochs"] - (t["epochs_done"] or 0) for t in pruned)
            diverged = sum(t.get("diverged_epoch") is not None for t in trials)
            failed = sum(t["state"] == "FAIL" for t in e["trials"])
            unfinished = len(e["trials"]) - scored - len(pruned) - failed  # running or waiting
            best = e["best"]
            g = runs[e["loss"]]
            diff, p = "—", "—"
            if xent is not None and e["loss"] != "xent" and not g.empty:
                d, removed = paired(g, xent, METRIC)
                if d.pairs:
                    diff = points(d.mean) + (f" ± {100 * d.half_width:.2f}" if d.half_width else "")
                    p = "—" if d.p_value is None else f"{d.p_value:.3g}"
                diff += f", {pairs_text(d, removed)}"
                sentences.append(
                    comparison_sentence(f"tuned {e['loss']}", "tuned xent", d)
                    + (f" ({pairs_text(d, removed)} pairs)" if sum(removed.values()) else "")
                )
            best_point = point_text(best["params"]) if best else "—"
            best_value = f"{best['value']:.4f} (trial {best['number']})" if best else "—"
            done = g[g["status"] == "finished"]
            stale = int(g["stale"].sum()) if not g.empty else 0
            dirty = found[e["loss"]][1]
            test = (
                f"{fmt_ci(done[METRIC].astype(float))}, {runs_text(g)}"
                + (f", {stale} stale" if stale else "")
                if not g.empty
                else "—"
            ) + (f" ({dirty} by uncommitted code left out)" if dirty else "")
            lines.append(
                f"| {e['loss']} | {e['space']} | {best_point} | {best_value} | "
                f"{scored} / {len(pruned)} ({saved}) / {diverged} / {failed}"
                + (f", {unfinished} unfinished" if unfinished else "")
                + f" | {test} | {diff} | {p} |"
            )
        lines += ["", f"![best so far]({relative(path, readme_dir)})", ""]
        lines += [f"- {s[0].upper()}{s[1:]}." for s in sentences] + ([""] if sentences else [])
    return "\n".join(lines)


def tuned_markdown(df: pd.DataFrame, results: Path, imgs: Path, readme_dir: Path, relative) -> str:
    found = summaries(results)
    if not found:
        return "No tuning study is recorded in this ledger yet (`./suite tune --help`)."
    head = (
        "Each loss searched with the same budget (trials, epochs, images) on validation images held out of "
        "the training split, its best point then trained again over several seeds, each run tested once, on "
        "its last epoch (each study says how many reproductions its test split has scored in all, earlier "
        "code's included); differences are paired by seed (the same seed gives every loss the same initialisation, "
        "batches and augmentations). "
        + COUNT_RULE
        + " A reproduction recorded by other code than the "
        "current is counted as stale (`./suite tune --refresh` with the study's options trains it again)."
    )
    history = ledger_history(results)
    return "\n\n".join(
        [head]
        + [study_markdown(s, df, imgs, readme_dir, relative, history) for s in found]
        + [spaces()]
    )


def spaces() -> str:
    """Every loss's search space under the joint center rule, from the option definitions."""
    return "\n".join(
        [
            f"Search spaces (`--center-rule separate` adds {CENTER_LR.describe_search()} to the losses "
            "with class centers or proxies):",
            "",
        ]
        + [f"- `{loss}`: {describe_space(loss, 'joint')}" for loss in LOSSES]
    )
