"""The README's generated sections: the results and the figure tables, written between marker comments."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.report.figures import picture_split
from experiments.report.rows import on_recipe_finished
from experiments.report.tables import ood_table, other_runs_table, paired_comparisons, paper_table, train_test_gap

MARKERS = {"results": ("<!-- results:start -->", "<!-- results:end -->"),
           "figures": ("<!-- figures:start -->", "<!-- figures:end -->")}


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
