"""The README's main results: the CPU study (``grid --preset cpu-study``), three seeds of xent, cent and
standalone on MNIST and Fashion-MNIST at feat_dim 2 and 128, in the reference table's shape; each loss
against xent paired by seed; the train-test gap; how flat each run's test curve ended; what the study
departs in from the reference recipe and what it cost.

Which rows: the preset's, by any code, but never a row recorded by uncommitted code (``-dirty``). A row
recorded by other code than the code as it is now stays (its numbers and pictures do not vanish), and the
section says at its top which code recorded it, what changed since and which command trains it again.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from experiments.engine.config import DEFAULTS, NOT_COMPARED, RunConfig
from experiments.ledger.fingerprint import code_fingerprint
from experiments.report.cells import fmt_ci, paired, pairs_text, plural, points, runs_text
from experiments.report.compare import holm_corrected
from experiments.report.rows import MAIN_LOSSES, config_of, reference_of, without_dirty
from experiments.runners.presets import PRESETS, is_preset_run

PRESET = "cpu-study"
COMMAND = f"./suite grid --preset {PRESET} --runs-per-gpu 2 --yes"
METRIC = "final_test_acc"


def study_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The preset's rows that the README may show, and how many of its rows were left out as ``-dirty``."""
    records = df.to_dict("records")
    ours = df[
        pd.Series(
            [(c := config_of(r)) is not None and is_preset_run(c, PRESET) for r in records],
            index=df.index,
            dtype=bool,
        )
    ]
    return without_dirty(ours)


def settings() -> list[tuple[str, int]]:
    preset = PRESETS[PRESET]
    return [(d, f) for d in preset["datasets"] for f in preset["feat_dims"]]


def planned_runs() -> int:
    preset = PRESETS[PRESET]
    return len(settings()) * len(preset["losses"]) * len(preset["seeds"])


def missing_text(rows: pd.DataFrame) -> str:
    """The study's runs not recorded yet, by seed and dataset: ``seed 2 of fashion-mnist (6 runs)``."""
    preset = PRESETS[PRESET]
    have = {
        (r["dataset"], int(r["feat_dim"]), r["loss"], int(r["seed"])) for _, r in rows.iterrows()
    }
    counts = Counter(
        (seed, dataset)
        for dataset, feat_dim in settings()
        for loss in preset["losses"]
        for seed in preset["seeds"]
        if (dataset, feat_dim, loss, seed) not in have
    )
    return "; ".join(
        f"seed {s} of {d} ({plural(n, 'run')})" for (s, d), n in sorted(counts.items())
    )


def stale_notice(rows: pd.DataFrame, what: str, command: str | None = None) -> str:
    """At the top of a section whose rows were recorded by other code than the code as it is now: which code
    recorded them, what changed, and the command that trains them again (``command``: the section's preset,
    which retrains its own stale runs and no other; else every stale run of the ledger). Empty when every
    row is current."""
    stale = rows[rows["stale"]]
    if stale.empty:
        return ""
    changed = []
    for (loss, model), g in stale.groupby(["loss", "model"]):
        recorded = ", ".join(sorted({f or "none" for f in g["code_fingerprint"]}))
        now = code_fingerprint(loss, model)
        changed.append(f"{loss} ({model}): fingerprint {recorded}, now {now}")
    commits = sorted({v for v in stale["code_version"] if v})
    base = commits[0].removesuffix("-dirty") if commits else "COMMIT"
    dirty = (
        " (with uncommitted changes on top)" if any(c.endswith("-dirty") for c in commits) else ""
    )
    return (
        f"**Recorded by older code.** {len(stale)} of {what} {'was' if len(stale) == 1 else 'were'} recorded "
        f"by commit {', '.join(c.removesuffix('-dirty') for c in commits) or 'unrecorded'}{dirty}; the code "
        f"their numbers pass through has changed since ({'; '.join(changed)}: `git diff {base} -- "
        "experiments/engine losses models eval` shows what). The numbers and pictures below are those runs', "
        + (
            f"kept until `{command}` trains them again by the current code (this section's runs only; "
            "`./suite grid --retrain-stale` trains every stale run of the ledger)"
            if command
            else "kept until `./suite grid --retrain-stale` trains every stale run of the ledger again by the "
            "current code"
        )
        + " (it prints how long that takes before it starts).\n"
    )


def departures() -> str:
    """The preset's recipe next to the reference's, field by field, from the recipe's own definitions."""
    fields = RunConfig.__dataclass_fields__
    parts = []
    for key, value in PRESETS[PRESET]["recipe"].items():
        meta = fields[key].metadata["recipe"]
        default = DEFAULTS[key]
        shown = "the whole split" if default is None else f"{default:,}"
        whose = "the suite's default" if meta["reference"] is NOT_COMPARED else "reference"
        parts.append(f"`{key}` {value:,} ({whose}: {shown}; {meta['help']})")
    return "; ".join(parts)


def last_two_epochs(epochs: pd.DataFrame, run_ids) -> pd.Series:
    """Per run: how far its test accuracy moved over its last two epochs, in points (absolute)."""
    out = {}
    for run_id in run_ids:
        e = epochs[epochs["run_id"] == run_id].sort_values("epoch") if len(epochs) else epochs
        acc = pd.to_numeric(e["test_acc"], errors="coerce").dropna() if len(e) else []
        if len(acc) >= 2:
            out[run_id] = abs(float(acc.iloc[-1]) - float(acc.iloc[-2])) * 100
    return pd.Series(out, dtype=float)


def accuracy_table(rows: pd.DataFrame, epochs: pd.DataFrame) -> list[str]:
    lines = [
        "| dataset | feat_dim | "
        + " | ".join(MAIN_LOSSES)
        + " | last two epochs differ (points) |",
        "| --- | --- |" + " --- |" * (len(MAIN_LOSSES) + 1),
    ]
    for dataset, feat_dim in settings():
        here = rows[(rows["dataset"] == dataset) & (rows["feat_dim"] == feat_dim)]
        cells = []
        for loss in MAIN_LOSSES:
            g = here[here["loss"] == loss]
            done = g[g["status"] == "finished"]
            ref = reference_of(dataset, feat_dim, loss)
            value = fmt_ci(done[METRIC]) if len(done) else "—"
            cells.append(f"{value} ({runs_text(g) if len(g) else 'no run'}) [{ref:.3f}]")
        moved = last_two_epochs(epochs, here.loc[here["status"] == "finished", "run_id"])
        flat = f"{moved.mean():.2f} mean, {moved.max():.2f} max" if len(moved) else "—"
        lines.append(f"| {dataset} | {feat_dim} | " + " | ".join(cells) + f" | {flat} |")
    return lines


def found_pairs(rows: pd.DataFrame) -> list[tuple]:
    """``(dataset, feat_dim, loss, PairedDifference, removed)`` of each loss against xent, per setting."""
    found = []
    for dataset, feat_dim in settings():
        here = rows[(rows["dataset"] == dataset) & (rows["feat_dim"] == feat_dim)]
        xent = here[here["loss"] == "xent"]
        for loss in (loss for loss in MAIN_LOSSES if loss != "xent"):
            g = here[here["loss"] == loss]
            if len(g) and len(xent):
                found.append((dataset, feat_dim, loss, *paired(g, xent, METRIC)))
    return found


def against_xent_table(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The paired table and one sentence per comparison whose interval excludes 0."""
    found = found_pairs(rows)
    tested = [i for i, f in enumerate(found) if f[3].p_value is not None]
    holm, correction = holm_corrected([found[i][3].p_value for i in tested])
    lines = [
        "| dataset | feat_dim | loss | loss − xent, points (95% CI) | pairs | p | p (Holm) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    clear = []
    for i, (dataset, feat_dim, loss, d, removed) in enumerate(found):
        diff = (
            "—"
            if d.pairs == 0
            else points(d.mean) + (f" ± {100 * d.half_width:.2f}" if d.half_width else "")
        )
        p = "—" if d.p_value is None else f"{d.p_value:.3g}"
        p_holm = "—" if i not in tested or holm is None else f"{holm[tested.index(i)]:.3g}"
        lines.append(
            f"| {dataset} | {feat_dim} | {loss} | {diff} | {pairs_text(d, removed)} | {p} | {p_holm} |"
        )
        if d.half_width and abs(d.mean) > d.half_width:
            side = "above" if d.mean > 0 else "below"
            clear.append(
                f"{loss} {side} xent on {dataset} at feat_dim {feat_dim} ({points(d.mean)} points)"
            )
    note = (
        f"p-values {correction.format(n=len(tested))}"
        + (
            "; a comparison of fewer than 3 pairs has no p-value (—)"
            if len(tested) < len(found)
            else ""
        )
        if tested
        else "no comparison has 3 pairs yet: no p-value"
    )
    return lines, [note, *clear]


def gap_table(rows: pd.DataFrame) -> list[str]:
    lines = [
        "| dataset | feat_dim | " + " | ".join(MAIN_LOSSES) + " |",
        "| --- | --- |" + " --- |" * len(MAIN_LOSSES),
    ]
    for dataset, feat_dim in settings():
        here = rows[(rows["dataset"] == dataset) & (rows["feat_dim"] == feat_dim)]
        cells = []
        for loss in MAIN_LOSSES:
            done = here[(here["loss"] == loss) & (here["status"] == "finished")]
            cells.append(
                f"{fmt_ci(100 * (done['final_train_acc'] - done[METRIC]), 2)} ({len(done)})"
                if len(done)
                else "—"
            )
        lines.append(f"| {dataset} | {feat_dim} | " + " | ".join(cells) + " |")
    return lines


def cost(rows: pd.DataFrame) -> str:
    done = rows[rows["status"].isin(("finished", "diverged"))]
    if done.empty:
        return ""
    hours = pd.to_numeric(done["wall_s"], errors="coerce").sum() / 3600
    devices = ", ".join(sorted({d for d in done["device"] if d}))
    return (
        f"Cost: {hours:.1f} h of training summed over the {len(done)} runs recorded (each run's own wall time), "
        f"on {devices}; the grid trains two runs at a time on 2 cores, one thread each, so about "
        f"{hours / 2:.1f} h of wall clock."
    )


def study_markdown(df: pd.DataFrame, epochs: pd.DataFrame) -> str:
    """The section, or a line saying how to make it when the ledger has no run of the study."""
    rows, dirty = study_rows(df)
    preset = PRESETS[PRESET]
    if rows.empty:
        return (
            f"**The CPU study has no run yet**: `{COMMAND}` trains it (about 4 hours on 2 cores; it resumes "
            "where it stopped).\n"
        )
    recorded = len(rows)
    lines = [
        "### The CPU study: three seeds a CPU can finish",
        "",
    ]
    if notice := stale_notice(rows, "the runs of this study", COMMAND):
        lines += [notice]
    if recorded < planned_runs():
        lines += [
            f"**{recorded} of the study's {planned_runs()} runs are recorded** (not yet: {missing_text(rows)}); "
            f"`{COMMAND}` trains the rest (it skips what is recorded and resumes a run where it stopped). A "
            "cell shows how many runs its figure rests on.",
            "",
        ]
    if dirty:
        lines += [
            f"{plural(dirty, 'run')} of the study recorded by uncommitted code (`-dirty`) "
            f"{'is' if dirty == 1 else 'are'} left out.",
            "",
        ]
    table_lines, notes = against_xent_table(rows)
    lines += [
        f"`{COMMAND}`: {', '.join(preset['losses'])} on {' and '.join(preset['datasets'])} at feat_dim "
        f"{' and '.join(map(str, preset['feat_dims']))}, seeds {', '.join(map(str, preset['seeds']))}; the "
        "reference pre-activation ResNet in fp32 with the reference's augmentation, batch 128, SGD lr 0.01 "
        "momentum 0.9; scored on the whole test split (10,000 images). It departs from the reference recipe "
        f"in: {departures()}. The lr schedule reads the test accuracy after every epoch, as the reference's "
        "does; no epoch is chosen: every figure is the last epoch's.",
        "",
        "**Test accuracy, last epoch**: mean ± 95% t-interval over the seeds, (runs it rests on), [the "
        "reference's value: 100 epochs on the whole training split, its best epoch chosen on the test split, "
        "one run; for scale, not for a difference]. The last column says how flat the test curves ended: "
        "how far each run's test accuracy moved over its last two epochs, mean and max over the setting's runs.",
        "",
        *accuracy_table(rows, epochs),
        "",
        "**Each loss against xent**, paired by seed (the same seed gives both losses the same initialisation, "
        f"batches and augmentations; a pair needs both runs finished, by the same code on the same device); "
        f"{notes[0]}:",
        "",
        *table_lines,
        "",
    ]
    if len(notes) > 1:
        lines += [
            "Intervals that exclude 0: " + "; ".join(notes[1:]) + ".",
            "",
        ]
    elif any(d.half_width for *_, d, _ in found_pairs(rows)):
        lines += ["No interval excludes 0.", ""]
    else:
        lines += ["No comparison has two pairs yet: no interval.", ""]
    lines += [
        "**Train-test gap**, points: last-epoch training accuracy by the loss's own rule (over the epoch's "
        "augmented batches) minus test accuracy, mean ± 95% t-interval (runs it rests on):",
        "",
        *gap_table(rows),
        "",
    ]
    if text := cost(rows):
        lines += [text, ""]
    return "\n".join(lines)
