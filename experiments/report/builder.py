"""Build every table and picture of a ledger, and the README's marked sections (the main ledger's)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from experiments.plots import write_if_changed
from experiments.report import Outputs, tuned
from experiments.report.compare import against_xent
from experiments.report.composites import FRAMES, composite_pictures
from experiments.report.family import keep_family_frames
from experiments.report.figures import feature_pictures, learning_curves, relative
from experiments.report.readme import (
    pictures_markdown,
    replace_section,
    results_markdown,
    visualisations_markdown,
)
from experiments.report.rows import read_ledger
from experiments.report.tables import full_table
from experiments.report.tuned import tuned_markdown


@dataclass(frozen=True)
class Built:
    """What a build wrote: the table's text, and whether the README's text changed (None: no README)."""

    table: str
    readme: Path | None
    readme_changed: bool = False

    def readme_line(self) -> str:
        """What a command says about the README after a build: the truth."""
        if self.readme is None:
            return ", README untouched"
        return (
            f", {self.readme} sections updated"
            if self.readme_changed
            else f", {self.readme} unchanged"
        )


def build(outputs: Outputs, runs: Path, projection: str = "pca") -> Built | None:
    """Write table.md, the pictures and (main ledger) the README sections; None when the ledger has no run."""
    runs_csv = outputs.results / "runs.csv"
    if not runs_csv.exists() or runs_csv.stat().st_size == 0:
        return None
    df = read_ledger(runs_csv)
    if df.empty:
        return None
    table = full_table(df, outputs.results)
    epochs_csv = outputs.results / "epochs.csv"
    epochs = (
        pd.read_csv(epochs_csv, dtype={"code_fingerprint": str}, keep_default_na=False)
        if epochs_csv.exists() and epochs_csv.stat().st_size
        else pd.DataFrame()
    )
    if not epochs.empty:  # the epochs of the rows shown (not of superseded ones)
        shown = set(zip(df["run_id"], df["code_fingerprint"]))
        fingerprints = (
            epochs["code_fingerprint"] if "code_fingerprint" in epochs else [""] * len(epochs)
        )
        epochs = epochs[[k in shown for k in zip(epochs["run_id"], fingerprints)]]
    curves = learning_curves(df, epochs, outputs.imgs)
    made = feature_pictures(df, runs, outputs.imgs)
    keep_family_frames(df, runs, outputs.results / FRAMES)
    composites = composite_pictures(
        df, epochs, runs, outputs.results / FRAMES, outputs.imgs, projection
    )
    tuned_table = (
        (
            "\n## Tuned comparison\n\n"
            + tuned_markdown(df, outputs.results, outputs.imgs, outputs.results, relative)
            + "\n"
        )
        if tuned.summaries(outputs.results)
        else ""
    )
    paired = against_xent(df)
    curve_links = "\n".join(f"![]({relative(p, outputs.results)})" for p in curves)
    write_if_changed(
        outputs.results / "table.md",
        "\n".join(
            p
            for p in (
                table,
                paired,
                curve_links,
                pictures_markdown(made, outputs.results),
                tuned_table,
            )
            if p
        ).encode(),
    )
    if outputs.readme is not None:
        readme_dir = outputs.readme.parent
        text = outputs.readme.read_text()
        text = replace_section(
            text, "tuned", tuned_markdown(df, outputs.results, outputs.imgs, readme_dir, relative)
        )
        text = replace_section(
            text, "results", results_markdown(df, epochs, outputs.results, outputs.imgs, readme_dir)
        )
        text = replace_section(
            text,
            "figures",
            visualisations_markdown(
                composites,
                readme_dir,
                Path(relative(outputs.results / FRAMES, readme_dir)),
                outputs.imgs,
            ),
        )
        return Built(table, outputs.readme, write_if_changed(outputs.readme, text.encode()))
    return Built(table, None)
