"""Rebuild every table and picture from the recorded rows.

    python -m experiments.report                      # the main ledger: results/, imgs/, README.md
    python -m experiments.report --results my-results # another ledger: its table and pictures go under it
    python -m experiments.report --compare 'loss=standalone,dataset=mnist' 'loss=xent,dataset=mnist'

Reads runs.csv and epochs.csv of a ledger (and, for the pictures, the run
directories in runs/) and writes table.md, the learning curves, the feature
gifs and PNGs and, for the main ledger only, the README's sections between
the marker comments (the results, the feature visualisations, and the tuned
comparison of every study in RESULTS/tune/, see experiments/tune.py). Deterministic: running it twice changes nothing.

The README's results section, in order: the reference table in the study's
own shape (runs on the full reference recipe only), the paired comparisons
of the three losses by seed, the train-test gap, then a short table of every
other run, headed as not the reference recipe.

Where each thing is made: ``rows`` (the ledger read and grouped), ``cells``
(a number as a table cell), ``tables`` (every table), ``figures`` (every
picture), ``readme`` (the README's marked sections); this module ties them
together and is the command.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from experiments.plots import write_if_changed
from experiments.cli.types import HelpFormatter, Parser
from experiments.engine.io import unwritable
from experiments.report.figures import feature_pictures, learning_curves
from experiments.report.compare import CompareError, compare as paired_comparison
from experiments.report.composites import composite_pictures
from experiments.report.readme import (MARKERS, pictures_markdown, relative, replace_section, results_markdown,
                                       visualisations_markdown)
from experiments.report import tuned
from experiments.report.rows import config_of, read_ledger
from experiments.report.tables import full_table
from experiments.report.tuned import tuned_markdown

__all__ = ["MAIN_LEDGER", "Outputs", "build", "build_parser", "config_of", "main", "read_ledger", "tuned"]

MAIN_LEDGER = Path("results")


@dataclass(frozen=True)
class Outputs:
    """A ledger and what is generated from it. Only the main ledger writes the README by default."""
    results: Path
    imgs: Path
    readme: Path | None

    @classmethod
    def for_ledger(cls, results: Path, imgs: Path | None = None, readme: Path | None = None) -> "Outputs":
        main = Path(results).resolve() == MAIN_LEDGER.resolve()
        return cls(Path(results), imgs or (Path("imgs") if main else Path(results) / "imgs"),
                   readme or (Path("README.md") if main else None))

    def problem(self) -> str | None:
        """Why the report could not be written, checked before any training."""
        for folder in (self.results, self.imgs):
            if (why := unwritable(folder)) is not None:
                return why
        if self.readme is not None:
            if not self.readme.is_file():
                return f"{self.readme}: no such README (give an existing file with --readme)"
            text = self.readme.read_text()
            if any(m not in text for pair in MARKERS.values() for m in pair):
                return f"{self.readme}: it has no {' ... '.join(MARKERS['results'])} markers"
            if (why := unwritable(self.readme.parent)) is not None:
                return why
        return None


FRAMES = "frames"  # the compact frames the composites are drawn from, in the ledger folder (committed)


def build(outputs: Outputs, runs: Path, projection: str = "pca") -> str | None:
    """Write table.md, the pictures and (main ledger) the README sections; the table's text, or None.
    ``README_CHANGED`` says afterwards whether the README's text changed."""
    global README_CHANGED
    README_CHANGED = False
    runs_csv = outputs.results / "runs.csv"
    if not runs_csv.exists() or runs_csv.stat().st_size == 0:
        return None
    df = read_ledger(runs_csv)
    if df.empty:
        return None
    table = full_table(df, outputs.results)
    epochs_csv = outputs.results / "epochs.csv"
    epochs = pd.read_csv(epochs_csv, dtype={"code_fingerprint": str}, keep_default_na=False) \
        if epochs_csv.exists() and epochs_csv.stat().st_size else pd.DataFrame()
    if not epochs.empty:  # the epochs of the rows shown (not of superseded ones)
        shown = set(zip(df["run_id"], df["code_fingerprint"]))
        fingerprints = epochs["code_fingerprint"] if "code_fingerprint" in epochs else [""] * len(epochs)
        epochs = epochs[[k in shown for k in zip(epochs["run_id"], fingerprints)]]
    curves = learning_curves(df, epochs, outputs.imgs)
    made = feature_pictures(df, runs, outputs.imgs)
    composites = composite_pictures(df, epochs, runs, outputs.results / FRAMES, outputs.imgs, projection)
    tuned_table = ("\n## Tuned comparison\n\n" + tuned_markdown(df, outputs.results, outputs.imgs, outputs.results,
                                                                 relative) + "\n") if tuned.summaries(outputs.results) else ""
    write_if_changed(outputs.results / "table.md", (table + pictures_markdown(made, outputs.results) + tuned_table).encode())
    if outputs.readme is not None:
        readme_dir = outputs.readme.parent
        text = outputs.readme.read_text()
        text = replace_section(text, "tuned", tuned_markdown(df, outputs.results, outputs.imgs, readme_dir, relative))
        text = replace_section(text, "results", results_markdown(df, outputs.results, curves, readme_dir))
        text = replace_section(text, "figures", visualisations_markdown(
            composites, readme_dir, Path(relative(outputs.results / FRAMES, readme_dir))))
        README_CHANGED = write_if_changed(outputs.readme, text.encode())
    return table


README_CHANGED = False  # set by build: whether the README's sections changed


def readme_line(outputs: Outputs) -> str:
    """What a command says about the README after a build: the truth."""
    if outputs.readme is None:
        return ", README untouched"
    return f", {outputs.readme} sections updated" if README_CHANGED else f", {outputs.readme} unchanged"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m experiments.report", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--results", type=Path, default=MAIN_LEDGER,
                        help="the ledger folder: its runs.csv and epochs.csv are read, its table.md written")
    parser.add_argument("--runs", type=Path, default=Path("runs"),
                        help="the run directories (their per-epoch features make the gifs and PNGs)")
    parser.add_argument("--imgs", type=Path, default=None,
                        help="where the pictures go (default: imgs/ for the main ledger, RESULTS/imgs otherwise)")
    parser.add_argument("--projection", choices=["pca", "tsne"], default="pca",
                        help="how the side-by-side still of wide (feat_dim > 2) features is projected to 2-D: PCA, or "
                             "t-SNE (scikit-learn; slower, and its picture depends on the library's version)")
    parser.add_argument("--readme", type=Path, default=None,
                        help="the README whose marked sections are rewritten (default: README.md for the main "
                             "ledger, none otherwise)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="print the paired difference A - B of last-epoch test accuracy, runs paired by seed, "
                             "instead of rebuilding anything; each of A and B selects one group of runs by "
                             "FIELD=VALUE pairs, e.g. 'loss=standalone,weight_inter=0.01,dataset=mnist' (every "
                             "config field not named in both must match)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.compare:
        runs_csv = Path(args.results) / "runs.csv"
        if not runs_csv.exists():
            print(f"error: no ledger at {runs_csv}; give --results", file=sys.stderr)
            return 2
        try:
            print(paired_comparison(read_ledger(runs_csv), *args.compare))
        except CompareError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    outputs = Outputs.for_ledger(args.results, args.imgs, args.readme)
    if (problem := outputs.problem()) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    table = build(outputs, args.runs, args.projection)
    if table is None:
        print(f"no runs recorded in {args.results / 'runs.csv'}: run `./suite grid` first", file=sys.stderr)
        return 1
    print(f"report: {outputs.results / 'table.md'}" + readme_line(outputs))
    return 0
