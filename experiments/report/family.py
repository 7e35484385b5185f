"""The README's family table (issue 38): every loss of the center-loss family and the field's competitors on
Fashion-MNIST at feat_dim 2 and 128 (the ``family`` preset, experiments/runners/presets.py), best first by
last-epoch test accuracy under each loss's own rule, with nearest-center and nearest-class-mean accuracy beside
it, the paired difference with ``xent`` by seed, the runs flagged for collapse or dead centers, and the 2-D runs'
last frames as small multiples.

A row recorded from a checkout with uncommitted changes (its ``code_version`` ends in ``-dirty``) is counted
and left out; a row recorded by older code stays, and the section says so at its top. The table renders any
partial state of the preset: each mean says how many runs it rests on, and the losses with no run yet are
named with the command that trains them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from centersuite.losses import LOSSES
from experiments.engine.protocol import protocol_of
from experiments.plots import small_multiples_png
from experiments.report.cells import fmt_ci, paired, pairs_text, plural, points, runs_text
from experiments.report.composites import stored
from experiments.report.figures import class_names, relative
from experiments.report.rows import config_of, without_dirty
from experiments.report.study import stale_notice
from experiments.report.tables import rules_sentence
from experiments.runners.presets import PRESETS, is_preset_run, preset_value

PRESET = "family"
COMMAND = f"./suite grid --preset {PRESET}"
PICTURE_SEED = 0  # the seed whose 2-D runs the small multiples show
FLAG = "⚑"  # marks a loss with a run flagged for collapse or centers that never moved


def is_family_run(row) -> bool:
    cfg = config_of(row)
    return cfg is not None and is_preset_run(cfg, PRESET)


def family_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The ledger's rows of the ``family`` preset (whatever their status or code)."""
    if df.empty:
        return df
    return df[
        pd.Series([is_family_run(r) for r in df.to_dict("records")], index=df.index, dtype=bool)
    ]


def current_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The family's rows that enter the table, and how many were left out by reason: a row recorded from a
    checkout with uncommitted changes (``dirty``). A row recorded by older code enters, and the section says so
    at its top (study.stale_notice)."""
    rows = family_rows(df)
    rows, dirty = without_dirty(rows)
    return rows, {"dirty": dirty} if dirty else {}


def own_rule(loss: str) -> str:
    """How the loss classifies (the table module's words): ``argmax of its logits``, ``nearest learned
    center``, ``nearest class mean``."""
    return rules_sentence([loss]).rpartition(": ")[0]


def ordered_groups(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(loss, its runs)``, best first by the mean last-epoch test accuracy of the finished runs; a loss with
    no finished run last; ties in the registry's order."""
    order = list(LOSSES)
    groups = [(loss, g.sort_values("seed")) for loss, g in runs.groupby("loss", sort=False)]

    def key(item):
        loss, g = item
        done = g.loc[g["status"] == "finished", "final_test_acc"].dropna()
        return (
            done.empty,
            -done.mean() if len(done) else 0.0,
            order.index(loss) if loss in order else len(order),
        )

    return sorted(groups, key=key)


def left_out_sentence(left: dict[str, int], total: int) -> str:
    n = left.get("dirty", 0)
    if not n:
        return ""
    return (
        f"{n} of the preset's {plural(total, 'recorded run')} {'is' if n == 1 else 'are'} left out of the "
        "table: recorded from a checkout with uncommitted changes (code version `-dirty`), which no commit "
        "reproduces."
    )


def _diff_cell(d) -> str:
    if d.pairs == 0:
        return "—"
    return points(d.mean) + ("" if d.half_width is None else f" ± {100 * d.half_width:.2f}")


def setting_table(
    runs: pd.DataFrame, dataset: str, feat_dim: int, footnotes: list[str]
) -> list[str]:
    """The lines of one feat_dim's table (the runs entering it), and its flagged runs appended to
    ``footnotes`` (numbered across the tables)."""
    losses = list(PRESETS[PRESET]["losses"])
    seeds = list(PRESETS[PRESET]["seeds"])
    groups = ordered_groups(runs)
    missing = [loss for loss in losses if loss not in set(runs["loss"])]
    head = f"**{dataset}, feat_dim {feat_dim}**"
    if not groups:
        return [
            f"{head}: no run in this table yet; `{COMMAND}` trains the {len(losses)} losses at "
            f"{plural(len(seeds), 'seed')} each.",
            "",
        ]
    xent = runs[runs["loss"] == "xent"]
    lines = [
        f"{head}: {plural(len(runs), 'run')} of {len(losses) * len(seeds)} ({len(losses)} losses × "
        f"{len(seeds)} seeds)"
        + (
            ""
            if len(xent)
            else "; no `xent` run yet, so no loss is paired with it (its column stays empty)"
        )
        + ".",
        "",
        "| # | loss | classified by | acc, own rule | runs | nearest center | nearest class mean | "
        "− xent (points) | pairs with xent |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rank, (loss, g) in enumerate(groups, 1):
        done = g[g["status"] == "finished"]
        flagged = [r for r in g.to_dict("records") if str(r.get("health") or "")]
        marks = []
        for r in flagged:
            footnotes.append(
                f"{FLAG}{len(footnotes) + 1} {loss}, feat_dim {feat_dim}, seed {r['seed']} "
                f"(`{r['run_id']}`, {r['status']}): {r['health']}."
            )
            marks.append(f"{FLAG}{len(footnotes)}")
        have = sorted(int(s) for s in g["seed"])
        runs_cell = runs_text(g) + (
            ""
            if have == seeds
            else f" (seed{'s' if len(have) > 1 else ''} {', '.join(map(str, have))})"
        )
        if loss == "xent":
            diff, pairs = "(the baseline)", "—"
        elif xent.empty:
            diff, pairs = "—", "no xent run"
        else:
            d, removed = paired(g, xent, "final_test_acc")
            diff, pairs = _diff_cell(d), pairs_text(d, removed)
        lines.append(
            f"| {rank} | {loss}{' ' + ' '.join(marks) if marks else ''} | {own_rule(loss)} | "
            f"{fmt_ci(done['final_test_acc'])} | {runs_cell} | {fmt_ci(done['final_test_acc_center'])} | "
            f"{fmt_ci(done['final_test_acc_class_mean'])} | {diff} | {pairs} |"
        )
    lines.append("")
    if missing:
        lines += [
            f"{len(missing)} of {len(losses)} losses {'has' if len(missing) == 1 else 'have'} no run in this "
            f"table yet at feat_dim {feat_dim} "
            f"({', '.join(missing)}): `{COMMAND}` trains them.",
            "",
        ]
    return lines


def picture_rows(df: pd.DataFrame, dataset: str) -> list[dict]:
    """The current seed-0 2-D family runs of ``dataset``, in the table's order: the small multiples' runs."""
    runs, _ = current_rows(df)
    runs = runs[(runs["dataset"] == dataset) & (runs["feat_dim"] == 2)]
    return [  # ordered by every seed's runs, as the table is; then the picture's seed alone
        pictured.iloc[0].to_dict()
        for _, g in ordered_groups(runs)
        if not (pictured := g[g["seed"] == PICTURE_SEED]).empty
    ]


def keep_family_frames(df: pd.DataFrame, runs: Path, store: Path) -> int:
    """Write into ``store`` the compact frames of the family's current seed-0 2-D runs whose directories are in
    ``runs`` (the small multiples' runs: one frame set per loss, a few MiB in all), drawing nothing. The number
    of runs kept."""
    kept = 0
    for dataset in PRESETS[PRESET]["datasets"]:
        for row in picture_rows(df, dataset):
            if (Path(runs) / row["run_id"]).is_dir() and stored(row, runs, store) is not None:
                kept += 1
    return kept


def picture_path(imgs: Path, dataset: str) -> Path:
    return Path(imgs) / "family" / f"{dataset}-feat=2-last.png"


def small_multiples(
    df: pd.DataFrame, dataset: str, store: Path, imgs: Path, readme_dir: Path
) -> list[str]:
    """Draw the last frame of each seed-0 2-D run found in ``store`` and return the markdown that shows it and
    says which runs have no panel."""
    rows = picture_rows(df, dataset)
    if not rows:
        return []
    frames = {}
    for row in rows:
        path = Path(store) / f"{row['run_id']}.pt"
        data = torch.load(path) if path.exists() else None
        if data is not None and data.get("frames"):
            frames[row["run_id"]] = data["frames"][-1]
    absent = [row for row in rows if row["run_id"] not in frames]
    store_name = relative(store, readme_dir)
    if not frames:
        return [
            f"No small multiples of the 2-D runs yet: the frames of none of the {plural(len(rows), 'seed-0 run')} "
            f"are in `{store_name}/` (`python -m experiments.report` keeps them there from `runs/`).",
            "",
        ]
    shown = [row for row in rows if row["run_id"] in frames]
    path = picture_path(imgs, dataset)
    train_eval = int(preset_value(PRESET, "eval_train_size"))
    small_multiples_png(
        [{"name": row["loss"], "frame": frames[row["run_id"]]} for row in shown],
        class_names(shown[0]),
        f"{dataset}, feat_dim 2, seed {PICTURE_SEED}: the last epoch's features of the fixed training subset "
        "(centers marked X; each panel on its own scale)",
        path,
    )
    lines = [
        f"![]({relative(path, readme_dir)})",
        "",
        f"The 2-D runs of seed {PICTURE_SEED} after their last epoch, one panel per loss in the table's order: "
        f"the features of the fixed training subset ({train_eval:,} images, unaugmented; protocol `last` "
        "embeds no held-out split during training), centers or proxies marked X, and each panel's accuracy "
        f"by the loss's own rule on those images. Drawn from `{store_name}/` by `python -m experiments.report`.",
    ]
    if absent:
        named = [f"{r['loss']} (`{r['run_id']}`)" for r in absent]
        lines[-1] += (
            f" {len(absent)} of {plural(len(rows), 'panel')} {'is' if len(absent) == 1 else 'are'} missing: "
            f"the frames of {', '.join(named)} are not in the store."
        )
    return lines + [""]


def family_markdown(df: pd.DataFrame, store: Path, imgs: Path, readme_dir: Path) -> str:
    """The README's family section: per dataset and feat_dim of the preset, its table (best first), the flagged
    runs, what was left out, and the small multiples of the 2-D runs (written to
    ``imgs/family/<dataset>-feat=2-last.png``); "" when the ledger has no run of the preset."""
    if family_rows(df).empty:
        return ""
    preset = PRESETS[PRESET]
    runs, left = current_rows(df)
    total = len(family_rows(df))
    protocol = protocol_of(preset_value(PRESET, "protocol"))
    epochs, size = preset_value(PRESET, "epochs"), preset_value(PRESET, "train_size")
    test_images = sorted({int(float(t)) for t in runs.get("test_images", []) if str(t)})
    losses = list(preset["losses"])
    lines = [
        f"**Every loss of the family and the field's competitors** (`{COMMAND}`): "
        f"{len(losses)} losses on {', '.join(preset['datasets'])} at feat_dim "
        f"{' and '.join(map(str, preset['feat_dims']))}, seeds {', '.join(map(str, preset['seeds']))}, "
        f"{epochs} epochs on {size:,} training images at a constant lr, each loss at its own default "
        "(the competitors' set on a validation split, docs/losses.md). "
        f"Protocol `{protocol.name}` ({protocol.label}): no split is held out and nothing (epoch, schedule, "
        "option) is chosen on the test split; the last epoch's model is tested once on the whole test split"
        + (f" ({' / '.join(f'{n:,}' for n in test_images)} images)" if test_images else "")
        + ".",
        "",
        "Best first by the mean last-epoch test accuracy by each loss's own rule; mean ± 95% t-interval over "
        "the finished runs, with how many runs it rests on (`2/3, 1 diverged`; a loss with fewer than "
        f"{len(preset['seeds'])} runs names its seeds). Beside it the accuracy by the nearest learned center or proxy (the class "
        "means for a loss without them) and by the nearest class mean of the training features. "
        "`− xent`: the paired difference with `xent` of the same feat_dim by seed, in points (mean ± 95% "
        f"t-interval over the pairs). {FLAG}: a run flagged for collapse or for centers that never moved "
        "(experiments/engine/health.py); it stays in the means, and the flag is said below the table.",
        "",
    ]
    if notice := stale_notice(runs, "the runs of this table", COMMAND):
        lines = [notice, *lines]
    if runs.empty:
        lines += [
            "No run of the preset enters the table: every recorded one is left out (below).",
            "",
        ]
    footnotes: list[str] = []
    for dataset in preset["datasets"]:
        for feat_dim in preset["feat_dims"]:
            setting = runs[(runs["dataset"] == dataset) & (runs["feat_dim"] == feat_dim)]
            lines += setting_table(setting, dataset, feat_dim, footnotes)
    if len(runs):
        flagged = int((runs.get("health", pd.Series(dtype=str)).fillna("").astype(str) != "").sum())
        lines += [
            f"Flagged: {flagged} of {plural(len(runs), 'run')}"
            + (":" if footnotes else " (no collapse, no learnable centers that never moved).")
        ]
        if footnotes:
            lines += ["", *(f"- {note}" for note in footnotes)]
        lines.append("")
    if sentence := left_out_sentence(left, total):
        lines += [sentence, ""]
    for dataset in preset["datasets"]:
        if 2 in preset["feat_dims"]:
            lines += small_multiples(df, dataset, store, imgs, readme_dir)
    return "\n".join(lines).rstrip() + "\n"
