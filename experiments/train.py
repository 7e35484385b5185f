"""Train one run.

    python -m experiments.train --dataset fashion-mnist --loss standalone --feat-dim 2

Writes runs/<run id>/ (config.json, metrics.csv, checkpoint.pt, result.json,
features/, and pictures/: the 2-D gifs over training, or the PCA of the final
features). Defaults are the reference study's recipe; every
departure is a named option. Running the same command again resumes an
interrupted run, or prints the result of a finished one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from centersuite.losses import LOSSES, loss_options
from experiments.cli.confirm import add_yes_flag
from experiments.cli.entry import command, loading
from experiments.cli.recipe import (
    DATASET_HELP,
    KNOWN_CLASSES_HELP,
    LOSS_OPTION_FLAGS,
    add_recipe_arguments,
    config_from_args,
    recipe_problem,
    recipe_values,
    split_problem,
    warn_single_class_batches,
)
from experiments.cli.types import HelpFormatter, Parser, class_list, non_negative_int, positive_int
from experiments.datasets.specs import SPECS


def build_parser() -> argparse.ArgumentParser:
    paired = ", ".join(n for n in LOSSES if LOSSES.entry(n).pairs_across_classes)
    parser = Parser(
        prog="python -m experiments.train",
        description=__doc__,
        formatter_class=HelpFormatter,
        epilog=f"{paired} need batches holding several classes (a term of each sums over pairs of "
        "samples with different labels).",
    )
    parser.add_argument(
        "--dataset", choices=list(SPECS), default="fashion-mnist", help=DATASET_HELP
    )
    parser.add_argument(
        "--loss", choices=list(LOSSES), default="standalone", help="the loss (see losses/)"
    )
    parser.add_argument(
        "--feat-dim", type=positive_int, default=2, help="feature dimension (2 for the plots)"
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the initialisation and batches"
    )
    parser.add_argument("--known-classes", type=class_list, help=KNOWN_CLASSES_HELP)
    add_yes_flag(parser)
    add_recipe_arguments(parser)
    return parser


def parse_args(argv=None):
    """The flags (``run_config`` makes the run of them); every refusal the flags alone decide, in one line, before
    torch is loaded."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for option, flag in LOSS_OPTION_FLAGS.items():
        if getattr(args, option) is not None and option not in loss_options(args.loss):
            parser.error(
                f"{flag} does not apply to --loss {args.loss} (it takes: "
                f"{', '.join(LOSS_OPTION_FLAGS[o] for o in loss_options(args.loss)) or 'no loss option'})"
            )
    if problem := recipe_problem(recipe_values(args), None, [args.loss]) or split_problem(
        args.dataset, args.train_size, args.test_size, args.known_classes or ""
    ):
        parser.error(problem)
    warn_single_class_batches(args.batch_size, [args.loss])
    return args


def run_config(args):
    """The run the parsed flags make."""
    return config_from_args(
        args, args.dataset, args.loss, args.feat_dim, args.seed, args.known_classes or ""
    )


def announce(cfg, device, out: Path, yes: bool, fingerprint: str) -> str | None:
    """The run's estimate on a CPU (its epochs left at a CPU thread's measured rate, runners/plan.py), and
    the question past an hour (cli/confirm.py); the refusal's line, or None to go on."""
    import torch

    from experiments.cli.confirm import long_work
    from experiments.engine.records import run_fingerprint
    from experiments.runners.plan import epochs_to_resume, rate_seconds

    run_dir = out / cfg.run_id
    if (run_dir / "result.json").exists() and run_fingerprint(
        run_dir
    ) == fingerprint:  # finished or diverged: its result is returned, nothing trains
        print(
            f"train: run {cfg.run_id} is done already ({run_dir / 'result.json'}): nothing to train"
        )
        return None
    if device.type != "cpu":
        return None
    left = cfg.epochs - epochs_to_resume(cfg, run_dir)
    seconds = rate_seconds(cfg, torch.get_num_threads()) * left / cfg.epochs
    what = f"run {cfg.run_id}, {left} of {cfg.epochs} epochs to train"
    less = "fewer --epochs, or a --train-size"
    return long_work("train", what, seconds, "a CPU thread's measured rate", True, yes, less)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = run_config(args)
    with loading():  # torch and the rest, once the flags are good
        import dataclasses

        from experiments.cli.recipe import chosen_device, run_problem, run_settings
        from experiments.datasets.sources import prepare_run, run_cannot_ready
        from experiments.datasets.specs import DataError
        from experiments.engine.io import unwritable
        from experiments.engine.run import never, run_one
        from experiments.engine.trainer import RunInterrupted
        from experiments.ledger.claims import Claim
        from experiments.ledger.fingerprint import code_fingerprint
        from experiments.ledger.rows import checkpoint_problem
        from experiments.report.figures import run_pictures
    if (problem := run_problem(cfg)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    problem = unwritable(args.out)
    if problem:
        print(f"error: {problem}; choose another --out", file=sys.stderr)
        return 2
    settings = run_settings(args, results=Path(args.out))
    try:
        device = chosen_device(args.device)
        fingerprint = code_fingerprint(cfg.loss, cfg.model)
        if unreadable := checkpoint_problem(Path(args.out) / cfg.run_id, fingerprint):
            raise ValueError(f"run {cfg.run_id}: {unreadable}")
        if run_cannot_ready(cfg.dataset, settings.data_root):
            prepare_run(cfg.dataset, settings.data_root)  # its refusal names the file and the fix
        if (refused := announce(cfg, device, Path(args.out), args.yes, fingerprint)) is not None:
            print(f"error: {refused}; nothing was trained", file=sys.stderr)
            return 2
        claim = Claim(Path(args.out), cfg.run_id)  # as a grid's runner holds it: one trainer a run
        if not claim.take():
            print(
                f"error: run {cfg.run_id} is being trained by another process ({claim.describe_holder()}) "
                f"into {args.out}; the same command resumes it once that one stops",
                file=sys.stderr,
            )
            return 2
        try:
            prepare_run(cfg.dataset, settings.data_root)
            ctx = dataclasses.replace(settings.context(device, never), fingerprint=fingerprint)
            result = run_one(cfg, ctx)
        finally:
            claim.release()
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunInterrupted as e:
        print(e, file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # while the data is made present and loaded: nothing has trained yet
        print(
            "interrupted while loading the data, before training began; the same command starts the run",
            file=sys.stderr,
        )
        return 130
    summary = {
        k: result.get(k)
        for k in (
            "run_id",
            "status",
            "epochs_done",
            "final_test_acc",
            "best_test_acc",
            "final_test_acc_argmax",
            "final_test_acc_center",
            "wall_s",
        )
    }
    print(json.dumps(summary, indent=2))
    run_dir = Path(args.out) / cfg.run_id
    print(f"run directory: {run_dir}")
    if result.get("error"):
        print(f"error: run {cfg.run_id} failed in its {result['error']}", file=sys.stderr)
    try:
        if (pictures := run_pictures(cfg, run_dir)) is not None:
            print(f"pictures: {pictures}")
    except KeyboardInterrupt:
        print(
            f"interrupted while drawing the pictures; the run is done and kept in {run_dir}: the same command "
            "draws them",
            file=sys.stderr,
        )
        return 130
    return 0 if result["status"] == "finished" else 1


if __name__ == "__main__":
    sys.exit(command(main))
