"""One GPU slot, one command: check, train the paper grid, export, within the slot's minutes.

    ./suite slot --pack .carry                              # here, before a slot: data, bundle, wheels (< 60 MB)
    python3 -m experiments.slot --minutes 9.5 --out $OUT    # there, on the GPU machine: the slot's one command

GPU time often comes in short slots (a shared or rented GPU, a cluster's
walltime) on a machine with no network, where a second command may cost a
second start. Within ``--minutes`` of wall time in all, in one process tree,
the slot command:

1. installs the carried wheels (``CARRY/wheels``) and names, in one line, what
   this Python lacks before anything starts; a bad option (a dataset, a loss,
   a device that is not there) is refused the same way;
2. makes the datasets present from the carried folder (``data fetch --from``,
   offline) and imports the carried bundle (``CARRY/grid*.tar``);
3. runs the self-check (``experiments/probes/self_check.py``; about one
   minute, less when the budget is short): the graph-pool probe and a few
   hundred CUDA-graph steps of a real run against eager ones. Its verdict
   decides the steps: when it fails the grid trains with eager steps
   (``--no-graph``) and says so; without CUDA the CUDA parts are skipped;
4. trains the paper grid (MNIST and Fashion-MNIST, both feat_dims, the three
   losses, fp32, 100 epochs) for the seeds still to do, every cell of one seed
   before the next, runs packed on the GPU, with every minute left but what
   the export and the last epoch in flight need (an epoch is never cut: runs
   stop after one, checkpointed);
5. exports the bundle into ``--out`` in parts of at most 15 MiB (``grid.tar``,
   ``grid.2.tar``, ...: the ledger, the compact frames the README's pictures
   are drawn from, and the unfinished runs, the furthest along first, up to
   ``UNFINISHED_MB``: a run left out starts again next time, and the summary
   names it);
6. prints and writes into ``--out`` one summary (``summary.txt``,
   ``summary.json``) and the whole log (``slot.log``, the grid's lines too):
   the self-check's verdict, every problem met, cells recorded per seed,
   epochs done of the unfinished runs, the img/s and s/epoch measured, and the
   exact commands for the next slot. It is written whatever happens: a bad
   option, Ctrl-C, SIGTERM, a failed step. The exit code is 0 only when
   nothing went wrong.

Back here, ``./suite bundle import OUT/grid*.tar`` merges the rows and rebuilds
the README, and ``./suite slot --pack .carry`` packs for the next slot. The
options from ``--datasets`` on change the grid (tests, smaller slots): a run
that departs from the paper recipe is no cell of the paper table, and the
summary says which options departed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

PACK_MB = 60.0
PAPER = dict(
    datasets=["mnist", "fashion-mnist"],
    feat_dims=[2, 128],
    losses=["xent", "cent", "standalone"],
    seeds=[0, 1, 2, 3, 4],
)
MARKER = "PACKED.json"


def build_parser() -> argparse.ArgumentParser:
    from experiments.cli.types import (
        HelpFormatter,
        Parser,
        add_device_flag,
        non_negative_int,
        positive_float,
        positive_int,
        user_path,
    )

    parser = Parser(
        prog="python -m experiments.slot", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--pack",
        type=user_path,
        metavar="DIR",
        help="here, before a slot: put the datasets, the current bundle and the wheels the GPU "
        "machine lacks into DIR (.carry/ in the checkout is git-ignored and travels with it), "
        "and say its size",
    )
    parser.add_argument(
        "--minutes",
        type=positive_float,
        help="the slot: wall time in all, from this command's start",
    )
    parser.add_argument(
        "--out",
        type=user_path,
        help="the slot: where the bundle, the summary and the log go (the folder "
        "whose files come back)",
    )
    parser.add_argument(
        "--carry",
        type=user_path,
        default=Path(".carry"),
        help="the slot: the folder made by --pack",
    )
    add_device_flag(parser, "auto (CUDA if present), cpu, cuda, cuda:N")
    parser.add_argument(
        "--runs-per-gpu",
        type=positive_int,
        help="runs side by side on the GPU (default: the grid's)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=non_negative_int,
        default=PAPER["seeds"],
        help="the seeds to train, in order (the grid skips the cells already recorded)",
    )
    parser.add_argument(
        "--datasets", nargs="+", default=PAPER["datasets"], help="the grid's datasets"
    )
    parser.add_argument(
        "--feat-dims", nargs="+", type=positive_int, default=PAPER["feat_dims"], help="feature dims"
    )
    parser.add_argument("--losses", nargs="+", default=PAPER["losses"], help="the grid's losses")
    parser.add_argument(
        "--epochs", type=positive_int, help="epochs per run (default: the recipe's 100)"
    )
    parser.add_argument(
        "--train-size", type=positive_int, help="a training subset (default: the whole split)"
    )
    parser.add_argument(
        "--test-size", type=positive_int, help="a test subset (default: the whole split)"
    )
    parser.add_argument(
        "--check-steps",
        type=positive_int,
        help="steps of the self-check per mode on CUDA (default: 300)",
    )
    parser.add_argument(
        "--results", type=user_path, default=Path("results"), help="the ledger folder"
    )
    parser.add_argument("--runs", type=user_path, default=Path("runs"), help="the run directories")
    parser.add_argument(
        "--data-root",
        type=user_path,
        help="where the datasets live (default: the suite's, SUITE_DATA)",
    )
    parser.add_argument(
        "--max-mb", type=positive_float, default=PACK_MB, help="--pack: the largest folder allowed"
    )
    return parser


def datasets_option(args) -> list[str]:
    """``--datasets ...`` when not the paper's: the slot trains only what was packed."""
    return ["--datasets", *args.datasets] if args.datasets != PAPER["datasets"] else []


def ledger_options(args) -> list[str]:
    """``--results`` and ``--runs`` when not the main ledger's: the printed commands for the returned files
    must bring them into the ledger this slot trained for, not into the README's."""
    return [
        part
        for flag, value, default in (
            ("--results", args.results, "results"),
            ("--runs", args.runs, "runs"),
        )
        if value != Path(default)
        for part in (flag, shlex.quote(str(value)))
    ]


def option_problem(args) -> str | None:
    """Why an option cannot work, in one line (asked once the Python has what the suite needs)."""
    from centersuite.losses import LOSSES
    from experiments.datasets.specs import SPECS

    for flag, given, known in (
        ("--datasets", args.datasets, SPECS),
        ("--losses", getattr(args, "losses", []), LOSSES),
    ):
        unknown = [v for v in given if v not in known]
        if unknown:
            return f"{flag} {' '.join(unknown)}: unknown; choose from {', '.join(known)}"
    return None


def main(argv=None) -> int:
    t0 = time.time()  # the slot's clock starts with the command
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.pack is not None:
        from experiments.slot.pack import pack

        try:
            return pack(args)
        except KeyboardInterrupt:
            print(
                f"interrupted: {args.pack} is incomplete, and a slot will not use it; pack again",
                file=sys.stderr,
            )
            return 130
    if args.minutes is None or args.out is None:
        parser.error("give --minutes and --out (the slot), or --pack DIR (before it)")
    from experiments.slot.steps import run_slot

    return run_slot(args, argv, t0)
