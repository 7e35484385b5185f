"""The README's generated sections: the results and the figure tables, written between marker comments."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.report.cells import COUNT_RULE, plural
from experiments.report.composites import FRAMES
from experiments.report.family import current_rows, family_markdown
from experiments.report.figures import picture_dir, picture_split, relative
from experiments.report.markers import MARKERS
from experiments.report.rows import config_of, held_out_split, on_recipe_finished, on_recipe_rows
from experiments.report.study import COMMAND as STUDY_COMMAND
from experiments.report.study import stale_notice, study_markdown, study_rows
from experiments.report.tables import (
    PAPER_COMMAND,
    ood_table,
    paper_table,
    train_test_gap,
)
from experiments.runners.presets import is_preset_run


def regenerating_command(rows: dict) -> str:
    """The command that trains the runs a composite shows."""
    configs = [config_of(r) for r in rows.values()]
    for preset in ("cpu-study", "demo"):
        if all(c is not None and is_preset_run(c, preset) for c in configs):
            return f"`./suite grid --preset {preset}`"
    if all(r["on_recipe"] for r in rows.values()):
        return f"`{PAPER_COMMAND}`"
    return "`./suite grid` with the options each run departs in"


def training_time(rows: dict) -> str:
    """The runs' training wall time in all, and where: ``33.1 min on cpu (2 threads, AVX2)``."""
    minutes = sum(float(r["wall_s"]) for r in rows.values()) / 60
    return f"{minutes:.1f} min of training in all on {', '.join(sorted({r['device'] for r in rows.values()}))}"


def visualisations_markdown(
    composites: list[dict], readme_dir: Path, store: Path, imgs: Path
) -> str:
    """Per dataset and feat_dim: the side-by-side pictures, the curves, and a caption naming the runs and
    linking each run's own pictures; at the top, which shown runs older code recorded."""
    if not composites:
        return (
            f"No side-by-side pictures yet: `{STUDY_COMMAND}` trains the three losses at feat_dim 2 and 128 "
            "on a CPU.\n"
        )
    shown = pd.DataFrame([row for entry in composites for row in entry["rows"].values()])
    lines = [notice] if (notice := stale_notice(shown, "the runs drawn here")) else []
    for entry in composites:
        rows, first = entry["rows"], next(iter(entry["rows"].values()))
        what = (
            f"2-D features of the {held_out_split(first)} split over training (centers marked X; the PNG is the "
            "last frame; each frame's axes fit the middle 99% of that frame's points and all its centers, and "
            "a panel's title counts the points outside them; so panels and frames differ in scale: read the "
            "ticks)"
            if entry["feat_dim"] == 2
            else f"test features projected to 2-D by {entry['projection'].upper() if entry['projection'] == 'pca' else 't-SNE'}"
            " (one projection method for every panel, fit per panel; a projection can hide a separation that "
            "is there, so each panel names its 1-NN accuracy and MAP@R in the full space)"
        )
        runs = "; ".join(
            f"{loss} `{row['run_id']}` ({row['departures'] or 'reference recipe'})"
            + own_pictures(row, imgs, readme_dir)
            for loss, row in rows.items()
        )
        lines += [
            f"**{first['dataset']}, feat_dim {entry['feat_dim']}**: {what}.",
            "",
            " ".join(f"![]({relative(p, readme_dir)})" for p in entry["pictures"]),
            "",
            f"Runs: {runs}. Trained by {regenerating_command(rows)} ({training_time(rows)}); drawn from "
            f"`{store.as_posix()}/` by `python -m experiments.report`.",
            "",
        ]
    return "\n".join(lines)


def own_pictures(row, imgs: Path, readme_dir: Path) -> str:
    """Links to a run's own pictures (``imgs/{loss}-{dataset}-feat=2/{train,test}.gif``) when they are
    there: ``, its own: [train](...) [test](...)``."""
    folder = picture_dir(imgs, row)
    found = [
        f"[{p.stem}]({relative(p, readme_dir)})"
        for split in ("train", picture_split(row))
        for p in sorted(folder.glob(f"{split}.*"))
        if p.suffix in (".gif", ".png")
    ]
    return f", its own: {' '.join(found)}" if found else ""


def pictures_markdown(made: list, table_dir: Path) -> str:
    """Every run's own pictures (table.md): one run per loss, dataset, feat_dim and swept values."""
    lines = []
    for ext, what in (
        ("gif", "2-D features over the epochs (centers marked X)"),
        ("png", "PCA of the final features"),
    ):
        entries = [(row, folder) for row, folder, e in made if e == ext]
        if not entries:
            continue
        lines += [
            "",
            f"**{what}**, one run each, named with what departs from the reference recipe:",
            "",
            "| loss | dataset | feat_dim | run | train | held-out split |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for row, folder in entries:
            rel, split = relative(folder, table_dir), picture_split(row)
            lines.append(
                f"| {row['loss']} | {row['dataset']} | {row['feat_dim']} | `{row['run_id']}` "
                f"({row['departures'] or 'reference recipe'}) | "
                + (f"![]({rel}/train.{ext})" if (folder / f"train.{ext}").exists() else "—")
                + f" | {split}: ![]({rel}/{split}.{ext}) |"
            )
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str) -> str:
    start, end = MARKERS[name]
    if start not in text or end not in text:
        raise ValueError(f"the README has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body.rstrip()}\n{end}{tail}"


def results_markdown(
    df: pd.DataFrame, epochs: pd.DataFrame, ledger: Path, imgs: Path, readme_dir: Path
) -> str:
    """The README's results: the CPU study (the main results), the reference table (a GPU's), the family
    table, out-of-distribution detection of those runs; every other run is in ``ledger/table.md``."""
    study, _ = study_rows(df)
    family, _ = current_rows(df)
    parts = [f"*{COUNT_RULE}*\n", study_markdown(df, epochs)]
    parts.append("### The reference table\n")
    parts.append(paper_table(df))
    if not on_recipe_finished(df).empty:
        parts.append(train_test_gap(on_recipe_rows(df)))
    parts.append("### The family and the field's competitors\n")
    parts.append(
        family_markdown(df, ledger / FRAMES, imgs, readme_dir)
        or "**The family table has no run yet**: `./suite grid --preset family --runs-per-gpu 2 --yes` trains "
        "every loss of the family and the field's competitors on Fashion-MNIST (about 3 hours on 2 cores).\n"
    )
    shown = pd.concat([study, family, on_recipe_rows(df)]).drop_duplicates("run_id")
    if ood := ood_table(shown):
        parts += ["### Out-of-distribution detection\n", ood]
    others = len(df) - len(shown)
    parts.append(
        f"Every other run of the ledger ({plural(others, 'run')}: earlier and smaller studies, variants, rows "
        f"recorded by uncommitted code), each with its code and device, and every loss against xent on the "
        f"same recipe: `{ledger / 'table.md'}`.\n"
    )
    return "\n".join(p for p in parts if p)
