"""The README's generated sections: the results and the figure tables, written between marker comments."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from experiments.report.cells import COUNT_RULE
from experiments.report.compare import against_xent
from experiments.report.figures import picture_split
from experiments.report.markers import MARKERS
from experiments.report.rows import config_of, held_out_split, on_recipe_finished
from experiments.report.tables import (
    PAPER_COMMAND,
    ood_table,
    other_runs_table,
    paper_table,
    train_test_gap,
)
from experiments.runners.presets import is_preset_run


def relative(path: Path, base: Path) -> str:
    """``path`` as a link from a file in ``base`` (``../imgs/...`` from results/table.md)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()


def regenerating_command(rows: dict) -> str:
    """The command that trains the runs a composite shows."""
    configs = [config_of(r) for r in rows.values()]
    if all(c is not None and is_preset_run(c, "demo") for c in configs):
        return "`./suite grid --preset demo --max-minutes 45`"
    if all(r["on_recipe"] for r in rows.values()):
        return f"`{PAPER_COMMAND}`"
    return "`./suite grid` with the options each run departs in"


def training_time(rows: dict) -> str:
    """The runs' training wall time in all, and where: ``33.1 min on cpu (2 threads, AVX2)``."""
    minutes = sum(float(r["wall_s"]) for r in rows.values()) / 60
    return f"{minutes:.1f} min of training in all on {', '.join(sorted({r['device'] for r in rows.values()}))}"


def visualisations_markdown(composites: list[dict], readme_dir: Path, store: Path) -> str:
    """Per dataset and feat_dim: the side-by-side pictures, the curves, and a caption naming the runs."""
    if not composites:
        return (
            "No side-by-side pictures yet: `./suite grid --preset demo --max-minutes 45` trains the three "
            "losses at feat_dim 2 on a CPU.\n"
        )
    lines = []
    for entry in composites:
        rows, first = entry["rows"], next(iter(entry["rows"].values()))
        what = (
            f"2-D features of the {held_out_split(first)} split over training (centers marked X; the PNG is the "
            "last frame)"
            if entry["feat_dim"] == 2
            else f"test features projected to 2-D by {entry['projection'].upper() if entry['projection'] == 'pca' else 't-SNE'}"
            " (one projection method for every panel, fit per panel; a projection can hide a separation that "
            "is there, so each panel names its 1-NN accuracy and MAP@R in the full space)"
        )
        runs = "; ".join(
            f"{loss} `{row['run_id']}` ({row['departures'] or 'reference recipe'})"
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


def results_markdown(df: pd.DataFrame, ledger: Path, curves: list[Path], readme_dir: Path) -> str:
    parts = [f"*{COUNT_RULE}*\n", paper_table(df), against_xent(df)]
    if not on_recipe_finished(df).empty:
        parts.append(train_test_gap(df))
    parts.append(other_runs_table(df, ledger))
    parts.append(ood_table(df))
    parts.append("\n".join(f"![]({relative(p, readme_dir)})" for p in curves))
    return "\n".join(p for p in parts if p)
