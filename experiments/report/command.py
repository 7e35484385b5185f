"""The report command (``python -m experiments.report``): rebuild every table and picture from the recorded rows (see
experiments/report/__init__.py); ``--compare A B`` prints a paired comparison instead."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.cli.entry import loading
from experiments.cli.types import HelpFormatter, Parser, user_path
from experiments.report import MAIN_LEDGER, Outputs
from experiments.report import __doc__ as DOC


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m experiments.report", description=DOC, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--results",
        type=user_path,
        default=MAIN_LEDGER,
        help="the ledger folder: its runs.csv and epochs.csv are read, its table.md written",
    )
    parser.add_argument(
        "--runs",
        type=user_path,
        default=Path("runs"),
        help="the run directories (their per-epoch features make the gifs and PNGs)",
    )
    parser.add_argument(
        "--imgs",
        type=user_path,
        default=None,
        help="where the pictures go (default: imgs/ for the main ledger, RESULTS/imgs otherwise)",
    )
    parser.add_argument(
        "--projection",
        choices=["pca", "tsne"],
        default="pca",
        help="how the side-by-side still of wide (feat_dim > 2) features is projected to 2-D: PCA, or "
        "t-SNE (scikit-learn; slower, and its picture depends on the library's version)",
    )
    parser.add_argument(
        "--readme",
        type=user_path,
        default=None,
        help="the README whose marked sections are rewritten (default: README.md for the main "
        "ledger, none otherwise)",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="print the paired difference A - B of last-epoch test accuracy, runs paired by seed, "
        "instead of rebuilding anything; each of A and B selects one group of runs by "
        "FIELD=VALUE pairs, e.g. 'loss=standalone,weight_inter=0.01,dataset=mnist' (every "
        "config field not named in both must match); stale=true|false picks the group recorded by "
        "other code than the current, or the current one",
    )
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.compare:  # a selector at fault is refused before the ledger and pandas are loaded
        from experiments.report.selectors import CompareError, parse_selector

        try:
            for text in args.compare:
                parse_selector(text)
        except CompareError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    with loading():  # pandas, matplotlib and torch, once the flags are good
        from experiments.report.builder import build
        from experiments.report.compare import compare as paired_comparison
        from experiments.report.rows import read_ledger
    runs_csv = Path(args.results) / "runs.csv"
    nothing = f"no runs recorded in {runs_csv}: run `./suite grid` first (or give --results)"
    if not runs_csv.is_file() or runs_csv.stat().st_size == 0:  # before any folder is made
        print(nothing, file=sys.stderr)
        return 1
    if args.compare:
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
    built = build(outputs, args.runs, args.projection)
    if built is None:  # a ledger of only its header
        print(nothing, file=sys.stderr)
        return 1
    print(f"report: {outputs.results / 'table.md'}" + built.readme_line())
    return 0
