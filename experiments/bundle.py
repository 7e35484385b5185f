"""Carry a grid between machines in one tar file: its ledger, its pictures, its unfinished runs.

    python -m experiments.bundle export grid.tar     # results/, imgs/, and every unfinished run in runs/
    python -m experiments.bundle import grid.tar     # merge into this checkout, then rebuild the report
    python -m experiments.bundle export grid.tar --part-mb 15   # grid.tar, grid.2.tar ...: 15 MiB at most each

What a bundle holds and how an import merges it: experiments/runners/bundle.py.
Export refuses a bundle over ``--max-mb`` and never overwrites an existing file
unless ``--force``; import merges, then rebuilds the report of that ledger.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments import report
from experiments.cli.entry import command, loading
from experiments.cli.types import HelpFormatter, Parser, positive_float, user_path


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m experiments.bundle", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "command", choices=["export", "import"], help="export: write FILE; import: merge FILE here"
    )
    parser.add_argument(
        "files",
        nargs="+",
        type=user_path,
        metavar="FILE",
        help="export: the bundle to write (a tar file); import: the bundle, or all of its parts "
        "(grid.tar grid.2.tar ...)",
    )
    parser.add_argument(
        "--results", type=user_path, default=report.MAIN_LEDGER, help="the ledger folder"
    )
    parser.add_argument(
        "--imgs",
        type=user_path,
        help="the pictures (default: imgs/ for the main ledger, RESULTS/imgs otherwise)",
    )
    parser.add_argument(
        "--readme",
        type=user_path,
        help="import: the README rebuilt (default: README.md for the main ledger, none otherwise)",
    )
    parser.add_argument("--runs", type=user_path, default=Path("runs"), help="the run directories")
    parser.add_argument(
        "--max-mb",
        type=positive_float,
        default=16.0,
        help="export: refuse a bundle larger than this many MiB",
    )
    parser.add_argument("--force", action="store_true", help="export: replace FILE if it exists")
    parser.add_argument(
        "--part-mb",
        type=positive_float,
        help="export: cut the bundle into tar files of at most this many MiB each (FILE, then "
        "FILE's stem .2.tar, .3.tar ...), for a machine that hands back files of a limited size",
    )
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "export" and len(args.files) != 1:
        parser.error("export writes one FILE (its parts are named after it: --part-mb)")
    outputs = report.Outputs.for_ledger(args.results, args.imgs, args.readme)
    with loading():  # the ledger's modules (torch), once the flags are good
        from experiments.runners.bundle import BundleError, export, import_bundle
    try:
        if args.command == "export":
            counts = export(
                args.files[0],
                outputs.results,
                outputs.imgs,
                args.runs,
                args.max_mb,
                args.force,
                args.part_mb,
            )
            print(
                f"bundle: {' '.join(str(p) for p in counts['files'])} "
                f"({sum(p.stat().st_size for p in counts['files']) / 2**20:.1f} MiB): "
                f"{counts['results']} ledger files, {counts['imgs']} pictures, {counts['runs']} files of "
                "unfinished runs"
            )
            return 0
        if (problem := outputs.problem()) is not None:
            raise BundleError(problem)
        counts = import_bundle(args.files, outputs.results, outputs.imgs, args.runs)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report.build(outputs, args.runs)
    print(
        "bundle: imported "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
        + f"; report rebuilt from {outputs.results / 'runs.csv'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(command(main))
