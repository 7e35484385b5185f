"""Equal-budget tuning: each loss at its best, every loss with the same search budget.

    python -m experiments.tune --losses xent cent standalone --datasets fashion-mnist --feat-dims 2 \\
        --trials 20 --epochs 2 --train-size 4096 --val-size 2000

For each loss (and dataset, feat_dim) one Optuna study searches the loss's
space (experiments/tuning/trial.py; the ranges live with the options in
losses/options.py): a TPE sampler seeded with --seed whose first 10 trials are
drawn at random, the same --trials trials for every loss and the same budget
per trial (epochs, images). A trial trains on --train-size images at a
constant lr and is scored as its winner will be reported: its last epoch's
validation accuracy (the loss's own prediction rule; 0 when it diverges) on
--val-size images held out of the training split beside them, averaged over
--trial-seeds seeds; it never loads the test split. BatchNorm statistics are
recomputed before every evaluation (--precise-bn).

Then the winners are reproduced: each loss's best point is trained again from
scratch over --reproductions seeds on the training images with the
validation images added back, for the same epochs, at a constant lr, and its
last epoch is tested once (protocol last); nothing is chosen on the test
split. Their rows
go into the ledger (--results) as groups of their own, marked with the study
(tuned_by), and the report's "Tuned comparison" compares them, paired by seed.

The study lives in RESULTS/tune/STUDY.journal (Optuna's journal file storage:
safe for several processes, on NFS too) and RESULTS/tune/STUDY.json (its
summary, which the report reads). The same command again continues it:
finished trials are kept; a trial whose worker died (its claim is not held) is
marked failed and its point enqueued again, counting once toward --trials.
The same study name with other losses, spaces, budget or code is refused;
--refresh keeps the search and trains its winners again by the current code.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

from centersuite.losses import LOSSES
from experiments.cli.confirm import add_yes_flag
from experiments.cli.entry import command, loading
from experiments.cli.folders import removed_if_empty
from experiments.cli.recipe import (
    DATASET_HELP,
    add_backend_arguments,
    add_offline_flag,
    add_recipe_fields,
    center_rule_problem,
    recipe_values,
)
from experiments.cli.types import (
    HelpFormatter,
    Parser,
    add_device_flag,
    file_name,
    non_negative_int,
    positive_float,
    positive_int,
    user_path,
)
from experiments.datasets.specs import SPECS, default_data_root
from experiments.engine.config import RECIPE
from experiments.runners.presets import MAIN_LOSSES
from experiments.runners.sweep import SweepError, parse_set
from experiments.text import plural
from experiments.tuning.space import N_STARTUP, PRECISE_BN, PRUNERS, describe_space

# recipe fields the tuner does not take as flags: searched (lr, center_lr) or fixed by the trial rule
# (tuning/study.base_config: the fair protocol, a constant lr, the model's weight decay, no per-epoch embedding
# of training images except where a loss classifies by them); every other recipe field is a flag of `tune`
TRIAL_RULE = (
    "lr",
    "center_lr",
    "protocol",
    "lr_patience",
    "weight_decay",
    "eval_train_size",
    "center_alpha",  # read by the wen rule only, which is not tuned
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m experiments.tune",
        description=__doc__,
        formatter_class=HelpFormatter,
        epilog=spaces_epilog(),
    )
    parser.add_argument(
        "--study",
        type=file_name,
        default="tuned",
        help="the study's name (RESULTS/tune/NAME.journal)",
    )
    parser.add_argument(
        "--losses",
        nargs="+",
        choices=list(LOSSES),
        default=MAIN_LOSSES,
        help="the losses compared, each with its own study",
    )
    parser.add_argument(
        "--datasets", nargs="+", choices=list(SPECS), default=["fashion-mnist"], help=DATASET_HELP
    )
    parser.add_argument(
        "--feat-dims", nargs="+", type=positive_int, default=[2], help="feature dimensions"
    )
    parser.add_argument(
        "--trials",
        type=positive_int,
        default=20,
        help="trials per loss (the same for every loss; a failed trial's point is trained again and "
        "counted once; more trials later continue the study)",
    )
    parser.add_argument(
        "--val-size",
        type=positive_int,
        default=2000,
        help="validation images, held out of the training split beside the training images "
        "(stratified; the same for every trial and loss); the reproductions train on both",
    )
    # the recipe's other fields from its definition (engine/config.py), with the study's budget as their
    # defaults; the trial rule sets the rest (TRIAL_RULE: searched, or fixed by tuning/study.base_config)
    add_recipe_fields(
        parser,
        [name for name in RECIPE if name not in TRIAL_RULE],
        choices={"center_rule": ("joint", "separate")},  # the rules whose center lr the spaces know
    )
    parser.set_defaults(epochs=2, train_size=4096, precise_bn=PRECISE_BN)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="LOSS.OPTION=VALUE",
        help="fix one option of one loss instead of searching it, e.g. standalone.margin=10; "
        "repeatable",
    )
    parser.add_argument(
        "--pruner",
        choices=PRUNERS,
        default="none",
        help="stop hopeless trials early on their per-epoch validation accuracy: median (Optuna's "
        "MedianPruner after 5 trials), hyperband; pruned trials count toward --trials",
    )
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help=f"seed of every study's TPE sampler (its first {N_STARTUP} trials random); results "
        "follow from it only with --workers 1 and no interruption",
    )
    parser.add_argument(
        "--trial-seeds",
        type=positive_int,
        default=1,
        help="seeds each trial trains (each a full training, in the budget): its score is their mean "
        "last-epoch validation accuracy, as a winner is reported over seeds",
    )
    parser.add_argument(
        "--reproductions",
        type=non_negative_int,
        default=5,
        help="seeds each loss's best point is trained again with, then tested",
    )
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="keep the search, and train each loss's best point again by the code as it is now "
        "(new rows; the old ones stay, superseded or marked stale)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="trials at once, each worker a process of the backend that loads the study by name; "
        "with more than 1 the trials' order, so the search, depends on timing",
    )
    add_backend_arguments(parser)
    parser.add_argument(
        "--max-minutes",
        type=positive_float,
        help="time budget: no trial or reproduction starts after it, running ones stop after their "
        "current epoch (enqueued again); the same command continues",
    )
    add_yes_flag(parser)
    parser.add_argument(
        "--results",
        type=user_path,
        default=Path("results"),
        help="the ledger folder: the reproductions' rows, and tune/STUDY.journal and .json",
    )
    parser.add_argument(
        "--out",
        type=user_path,
        default=Path("runs"),
        help="where run directories go (trials under OUT/tune/STUDY/)",
    )
    parser.add_argument(
        "--data-root",
        type=user_path,
        default=default_data_root(),
        help="where the datasets live (env SUITE_DATA)",
    )
    add_offline_flag(parser)
    add_device_flag(parser, "auto, cpu, cuda, cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--no-report", action="store_true", help="do not rebuild the report at the end"
    )
    return parser


def spaces_epilog() -> str:
    lines = ["search spaces (shared: lr; under --center-rule separate also center_lr):"]
    lines += [f"  {loss}: {describe_space(loss, 'joint')}" for loss in LOSSES]
    return "\n".join(lines)


def fixed_options(args) -> dict:
    """``--set``'s values by loss, ``{loss: {option: value}}``, kept out of the search; SweepError names a
    ``--set`` that names a loss not tuned or more than one value."""
    fixed: dict = {}
    for text in args.set:
        loss, option, values = parse_set(text)
        if loss not in args.losses:
            raise SweepError(
                f"--set {text!r}: {loss} is not among --losses {' '.join(args.losses)}"
            )
        if len(values) != 1:
            raise SweepError(f"--set {text!r}: give one value (tuning searches; --set fixes)")
        fixed.setdefault(loss, {})[option] = values[0]
    return fixed


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        fixed_options(args)
    except SweepError as e:
        parser.error(str(e))
    if (problem := center_rule_problem(args.center_rule, args.losses)) is not None:
        parser.error(problem)
    return args


def tune_spec(args, command: str = ""):
    """The study the flags describe: every field of ``TuneSpec`` from the flag of the same name, ``--set``'s
    values (``fixed``), and the command line that made it (for the summary)."""
    from experiments.tuning.study import TuneSpec

    names = {f.name for f in dataclasses.fields(TuneSpec)}
    given = names - {"fixed", "command", "progress", "recipe"}
    values = {k: v for k, v in vars(args).items() if k in given}
    recipe = recipe_values(
        args, names=[n for n in RECIPE if n not in TRIAL_RULE and n not in names]
    )
    return TuneSpec(
        **values,
        recipe=recipe,
        fixed=fixed_options(args),
        command=command,
        progress=not args.no_progress,
    )


def announce(spec, args, device) -> str | None:
    """The study's estimate on a CPU, at most (every trial and reproduction left to run, at a CPU thread's
    measured rate, runners/plan.py; --max-minutes caps it), and the question past an hour
    (cli/confirm.py); the refusal's line, or None to go on."""
    import dataclasses

    import torch

    from experiments.cli.confirm import long_work
    from experiments.runners.plan import rate_seconds
    from experiments.tuning.study import base_config, study_keys

    keys = study_keys(spec)
    what = f"{plural(len(keys), 'study')} x {plural(args.trials, 'trial')}"
    if device.type != "cpu":
        return long_work("tune", what, None, "on a GPU the trials tell", False, args.yes, "")
    threads = max(1, torch.get_num_threads() // args.workers)
    seconds = 0.0
    for key in keys:
        trial = base_config(spec, key)
        reproduction = dataclasses.replace(trial, train_size=args.train_size + args.val_size)
        seconds += args.trials * rate_seconds(trial, threads)
        seconds += args.reproductions * rate_seconds(reproduction, threads)
    seconds /= args.workers
    if args.max_minutes:
        seconds = min(seconds, 60 * args.max_minutes)
    how = "at most: a CPU thread's measured rate" + (", --max-minutes" if args.max_minutes else "")
    less = "fewer --trials, --epochs or --reproductions, or --max-minutes"
    return long_work("tune", what, seconds, how, True, args.yes, less)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    with loading():  # torch, Optuna and the rest, once the flags are good
        import torch

        from experiments import report
        from experiments.cli.recipe import (
            backend_from_args,
            chosen_device,
            run_problem,
            size_problem,
        )
        from experiments.datasets.sources import prepare
        from experiments.datasets.specs import DataError, get_spec
        from experiments.engine.config import RunConfig
        from experiments.engine.io import unwritable
        from experiments.runners.backends import Stop
        from experiments.tuning.study import (
            StudyMismatch,
            WorkerJob,
            base_config,
            counted,
            journal_path,
            open_studies,
            running,
            study_keys,
        )
        from experiments.tuning.trial import TrialData, subset_problem
        from experiments.tuning.winners import reproduce, write_summary
        from experiments.tuning.worker import recover_dead_trials, work
    try:
        import optuna  # noqa: F401
    except ImportError:
        print(
            f"error: tuning needs Optuna, which {sys.executable} lacks: pip install 'optuna>=4.0' (requirements.txt "
            "has it)",
            file=sys.stderr,
        )
        return 2
    spec = tune_spec(args, "python -m experiments.tune " + " ".join(argv))
    for key in study_keys(
        spec
    ):  # a rule that does not fit a loss, or a library it lacks: before any trial
        if (problem := run_problem(base_config(spec, key))) is not None:
            print(f"error: {problem}; nothing was run", file=sys.stderr)
            return 2
    # the folders the checks make are removed again if nothing is written into them (a refusal)
    with removed_if_empty([args.out, args.results]):
        outputs = report.Outputs.for_ledger(args.results)
        for problem in (
            unwritable(args.out),
            unwritable(Path(args.results) / "tune"),
            None if args.no_report else outputs.problem(),
        ):
            if problem is not None:
                print(f"error: {problem}; nothing was run", file=sys.stderr)
                return 2
        device = chosen_device(args.device)
        for dataset in args.datasets:  # the sizes, before the estimate asks for --yes
            size = get_spec(dataset)
            if problem := size_problem(
                RunConfig(dataset=dataset, test_size=args.test_size)
            ) or subset_problem(dataset, size.train_size, args.train_size, args.val_size):
                print(f"error: {problem}; nothing was run", file=sys.stderr)
                return 2
        if (refused := announce(spec, args, device)) is not None:
            print(f"error: {refused}; nothing was run", file=sys.stderr)
            return 2
        try:
            for dataset in args.datasets:  # the data every trial needs, checked before any trial
                prepare(dataset, args.data_root)
                TrialData(
                    get_spec(dataset),
                    args.data_root,
                    torch.device("cpu"),
                    args.train_size,
                    args.val_size,
                )
            studies = open_studies(spec, create=not args.refresh, refresh=args.refresh)
        except (DataError, StudyMismatch) as e:
            print(f"error: {e}; nothing was run", file=sys.stderr)
            return 2
        recover_dead_trials(spec, studies)
        stop = Stop(
            Path(args.out) / f".stop-tune-{os.getpid()}-{time.time_ns()}",
            time.time() + 60 * args.max_minutes if args.max_minutes else None,
        )
        previous_sigterm = signal.signal(signal.SIGTERM, lambda *_: stop.file.touch())
        backend = backend_from_args(args, device, runs_per_gpu=args.workers)
        t0 = time.time()
        print(
            f"tune: study {args.study!r}: {plural(len(studies), 'study')} x {plural(args.trials, 'trial')}, "
            f"{args.epochs} epochs on "
            f"{args.train_size} images, validated on {args.val_size} ({journal_path(spec)})"
        )
        reproductions = {}
        try:
            for outcome in backend.run(
                [] if args.refresh else [WorkerJob(i) for i in range(args.workers)],
                spec,
                stop,
                lambda _: None,
                task=work,
            ):
                if outcome.error:
                    print(
                        f"tune: worker {outcome.cfg.index} failed: {outcome.error}", file=sys.stderr
                    )
            searched = all(
                counted(s) >= args.trials and not running(s) for s in studies.values()
            )  # live: read from the journal
            if searched and args.reproductions:
                reproductions = reproduce(spec, studies, backend, stop, device)
        except KeyboardInterrupt:
            print(
                "tune: interrupted; each running trial is enqueued again and resumes from its last epoch, finished "
                "trials and reproductions are kept: the same command continues",
                file=sys.stderr,
            )
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous_sigterm)
            stop.file.unlink(missing_ok=True)
            write_summary(spec, studies, reproductions, time.time() - t0)
        left = sum(max(0, args.trials - counted(s)) for s in studies.values())
        if left:
            print(f"tune: stopped with {left} trials left; the same command continues the study")
        if not args.no_report:
            built = report.build(outputs, args.out)
            print(
                f"report: {outputs.results / 'table.md'}"
                + (built.readme_line() if built else ", README untouched")
            )
        return 0


if __name__ == "__main__":
    sys.exit(command(main))
