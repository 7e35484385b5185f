"""The README's "Tuned comparison": every equal-budget tuning study of the ledger (RESULTS/tune/STUDY.json,
written by experiments/tune.py) with the ledger rows of its reproductions, and a plot of the best validation
accuracy so far by trial for each loss."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from eval.plots import best_so_far_png
from experiments.report.cells import comparison_sentence, fmt_ci, points
from experiments.report.stats import paired_difference
from experiments.tuning.trial import CENTER_LR, describe_space
from losses import LOSSES

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


def reproduced(df: pd.DataFrame, run_ids: list[str]) -> pd.DataFrame:
    """The finished current rows of the reproductions."""
    if df.empty or not run_ids:
        return df.iloc[0:0]
    return df[df["run_id"].isin(run_ids) & (df["status"] == "finished")]


def point_text(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in params.items())


def budget_text(summary: dict, df: pd.DataFrame) -> str:
    ident = summary["identity"]
    runs = reproduced(df, [r for e in summary["studies"] for r in e["reproductions"]])
    trial_s = sum(t.get("wall_s") or 0 for e in summary["studies"] for t in e["trials"])
    devices = ", ".join(sorted(set(runs["device"]))) if not runs.empty else "—"
    test = f"{summary['test_size']:,} test images" if summary.get("test_size") else "the whole test split"
    return (f"Budget: {summary['trials_per_loss']} trials per loss, each {ident['epochs']} epochs on "
            f"{ident['train_size']:,} training images, scored on {ident['val_size']:,} validation images held out "
            f"of the training split (TPE sampler, seed {ident['seed']}, its first {ident['startup_trials']} trials "
            f"random; pruner: {ident['pruner']}); the best point of each loss reproduced over "
            f"{summary['reproductions']} seeds on the {ident['train_size'] + ident['val_size']:,} images, its last "
            f"epoch tested once on {test}. Wall time: {summary['wall_s'] / 60:.0f} min in all "
            f"({trial_s / 60:.0f} min of trials, {runs['wall_s'].astype(float).sum() / 60:.0f} min of "
            f"reproductions on {devices}).")


def study_markdown(summary: dict, df: pd.DataFrame, imgs: Path, readme_dir: Path, relative) -> str:
    ident = summary["identity"]
    lines = [f"**Study `{summary['study']}`** (`{summary['command']}`)", "", budget_text(summary, df), ""]
    panels = {}
    for entry in summary["studies"]:
        panels.setdefault((entry["dataset"], entry["feat_dim"]), []).append(entry)
    for (dataset, feat_dim), entries in panels.items():
        path = plot_path(imgs, summary["study"], dataset, feat_dim)
        best_so_far_png({e["loss"]: [t["value"] if t["state"] == "COMPLETE" else None for t in counted_trials(e)]
                         for e in entries}, f"tuning {dataset}, feat_dim {feat_dim}", path)
        runs = {e["loss"]: reproduced(df, e["reproductions"]) for e in entries}
        xent = runs.get("xent")
        lines += [f"*{dataset}, feat_dim {feat_dim}*", "",
                  "| loss | searched | best point | best trial's val acc | trials: scored / pruned (epochs saved) "
                  "/ diverged | reproduced test acc (95% CI) | − xent, points (95% CI) | p |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        sentences = []
        for e in entries:
            trials = counted_trials(e)
            scored = sum(t["state"] == "COMPLETE" for t in trials)
            pruned = [t for t in trials if t["state"] == "PRUNED"]
            saved = sum(ident["epochs"] - (t["epochs_done"] or 0) for t in pruned)
            diverged = sum(t.get("diverged_epoch") is not None for t in trials)
            best = e["best"]
            g = runs[e["loss"]]
            diff, p = "—", "—"
            if xent is not None and e["loss"] != "xent" and not g.empty:
                pairs = g[["seed", METRIC]].merge(xent[["seed", METRIC]], on="seed")
                d = paired_difference(pairs[f"{METRIC}_x"], pairs[f"{METRIC}_y"])
                if d.pairs:
                    diff = points(d.mean) + (f" ± {100 * d.half_width:.2f}" if d.half_width else "")
                    p = "—" if d.p_value is None else f"{d.p_value:.3g}"
                sentences.append(comparison_sentence(f"tuned {e['loss']}", "tuned xent", d))
            best_point = point_text(best["params"]) if best else "—"
            best_value = f"{best['value']:.4f} (trial {best['number']})" if best else "—"
            test = f"{fmt_ci(g[METRIC].astype(float))} ({len(g)} seeds)" if not g.empty else "—"
            lines.append(f"| {e['loss']} | {e['space']} | {best_point} | {best_value} | "
                         f"{scored} / {len(pruned)} ({saved}) / {diverged} | {test} | {diff} | {p} |")
        lines += ["", f"![best so far]({relative(path, readme_dir)})", ""]
        lines += [f"- {s[0].upper()}{s[1:]}." for s in sentences] + ([""] if sentences else [])
    return "\n".join(lines)


def tuned_markdown(df: pd.DataFrame, results: Path, imgs: Path, readme_dir: Path, relative) -> str:
    found = summaries(results)
    if not found:
        return "No tuning study is recorded in this ledger yet (`./suite tune --help`)."
    head = ("Each loss searched with the same budget (trials, epochs, images) on validation images held out of "
            "the training split, its best point then trained again over several seeds and tested once; "
            "differences are paired by seed (the same seed gives the same initialisation and batches).")
    return "\n\n".join([head] + [study_markdown(s, df, imgs, readme_dir, relative) for s in found] + [spaces()])


def spaces() -> str:
    """Every loss's search space under the joint center rule, from the option definitions."""
    return "\n".join([f"Search spaces (`--center-rule separate` adds {CENTER_LR.describe_search()}):", ""]
                     + [f"- `{loss}`: {describe_space(loss, 'joint')}" for loss in LOSSES])
