"""Run the grid: datasets x feat_dims x losses x seeds, then rebuild the report.

    python -m experiments.grid --preset quick        # a first run on a CPU, minutes; its own ledger
    python -m experiments.grid --preset paper        # the reference grid, 100 epochs, into results/
    python -m experiments.grid --preset paper --datasets mnist --seeds 0 1 2 --max-minutes 25

Each run has a stable id (the hash of its config). Finished (or diverged)
runs recorded in the ledger are skipped; a run interrupted mid-way resumes
from its last epoch; a run that fails is recorded as failed and retried next
time. Kill it at any moment and start it again: nothing is lost or done twice.
Before it trains, the grid prints its estimate on this device; past an hour on
a CPU it asks first (--yes: do not ask; off a terminal it needs --yes).

Outputs follow the ledger (--results): the main ledger results/ rebuilds
imgs/ and the README; any other ledger gets its table and pictures under
itself and leaves the README alone. The quick preset's ledger is
results/quick/ (not tracked by git).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from centersuite.losses import LOSSES
from experiments.cli.confirm import add_yes_flag
from experiments.cli.entry import command, loading
from experiments.cli.folders import removed_if_empty
from experiments.cli.recipe import (
    DATASET_HELP,
    KNOWN_CLASSES_HELP,
    SweepError,
    add_backend_arguments,
    add_recipe_arguments,
    recipe_problem,
    split_problem,
    sweep_values,
    warn_single_class_batches,
)
from experiments.cli.types import (
    HelpFormatter,
    Parser,
    class_list,
    non_negative_int,
    positive_float,
    positive_int,
    user_path,
)
from experiments.datasets.specs import SPECS
from experiments.runners.presets import AXES, PRESET_KEYS, PRESETS, preset_value
from experiments.runners.sweep import GridSpec


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m experiments.grid", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="paper",
        help="; ".join(f"{name}: {preset['about']}" for name, preset in PRESETS.items())
        + ". Every option below overrides the preset",
    )
    parser.add_argument("--datasets", nargs="+", choices=list(SPECS), help=DATASET_HELP)
    parser.add_argument("--losses", nargs="+", choices=list(LOSSES), help="losses to train")
    parser.add_argument("--feat-dims", nargs="+", type=positive_int, help="feature dimensions")
    parser.add_argument(
        "--seeds", nargs="+", type=non_negative_int, help="seeds (runs of one seed are paired)"
    )
    parser.add_argument(
        "--known-classes",
        nargs="+",
        type=class_list,
        help=KNOWN_CLASSES_HELP.replace("these classes", "each of these splits of the classes"),
    )
    add_recipe_arguments(parser, sweep=True)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="LOSS.OPTION=V1,V2",
        help="sweep a loss option for one loss only, e.g. --set standalone.weight_inter=0.01,0.1,1 "
        "(a flag such as --weight-inter sweeps it for every loss of --losses that takes it; "
        "--set wins for its loss); repeatable",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list the planned runs (and how many) and train nothing",
    )
    add_yes_flag(parser)
    parser.add_argument(
        "--results",
        type=user_path,
        help="the ledger folder: runs.csv, epochs.csv, table.md (default: the preset's)",
    )
    parser.add_argument(
        "--imgs",
        type=user_path,
        help="where the pictures go (default: imgs/ for the main ledger "
        "results/, RESULTS/imgs otherwise)",
    )
    parser.add_argument(
        "--readme",
        type=user_path,
        help="the README whose marked sections are rewritten (default: "
        "README.md for the main ledger, none otherwise)",
    )
    parser.add_argument(
        "--no-report", action="store_true", help="do not rebuild the report at the end"
    )
    parser.add_argument(
        "--reuse-stale",
        action="store_true",
        help="count runs recorded by other code (another code fingerprint: a loss, the trainer, "
        "the model, the data or the metrics changed since) as done, instead of retraining "
        "them; the report marks them stale",
    )
    parser.add_argument(
        "--retrain-stale",
        action="store_true",
        help="train again, by the code as it is now, every run of the ledger (--results) recorded "
        "by other code, instead of the preset's grid (a tuning study's reproductions: with "
        "`tune --refresh`); the old rows stay, superseded",
    )
    parser.add_argument(
        "--max-minutes",
        type=positive_float,
        help="time budget: no run is started that its estimate says cannot finish in time; when the "
        "budget ends, running runs stop after their current epoch (checkpointed) and the grid "
        "exits 0; the same command resumes them. SIGTERM does the same",
    )
    parser.add_argument(
        "--fill-budget",
        action="store_true",
        help="with --max-minutes: start runs even when their estimate says they cannot finish in "
        "time; they stop after an epoch, checkpointed, and the same command resumes them (time "
        "that recurs: GPU slots, walltime allocations)",
    )
    parser.add_argument(
        "--runs-per-gpu",
        type=positive_int,
        default=None,
        help="runs sharing one GPU, the same default for every backend: 4 on a GPU of 40 GB or more, "
        "2 below that, 1 on the CPU (local: processes side by side; ray: each task takes 1/N "
        "of a GPU; slurm without SLURM: N local jobs per visible GPU)",
    )
    add_backend_arguments(parser)
    # a recipe field some preset sets has no default of its own here: parse_args makes the chosen preset's value
    # its default, so a flag given wins and the preset's value stands otherwise
    parser.set_defaults(**{key: None for key in PRESET_KEYS if key not in AXES})
    return parser


def grid_spec(args) -> GridSpec:
    """The grid the parsed flags make: its axes, recipe and sweep (SweepError names what cannot be swept)."""
    recipe, sweep = sweep_values(args, args.losses)
    return GridSpec(
        datasets=args.datasets,
        losses=args.losses,
        feat_dims=args.feat_dims,
        seeds=args.seeds,
        known_classes=args.known_classes,
        recipe=recipe,
        sweep=sweep,
    )


def parse_args(argv=None):
    """The flags, with the preset's values where not given (``grid_spec`` makes the grid of them); every
    refusal the flags alone decide, in one line, before torch is loaded."""
    parser = build_parser()
    # the chosen preset's values are the defaults a flag given overrides
    preset = parser.parse_known_args(argv)[0].preset
    parser.set_defaults(**{key: preset_value(preset, key) for key in PRESET_KEYS})
    args = parser.parse_args(argv)
    try:
        spec = grid_spec(args)
    except SweepError as e:
        parser.error(str(e))
    if problem := recipe_problem(spec.recipe, spec.sweep, args.losses):
        parser.error(problem)
    for dataset in args.datasets:
        for known in args.known_classes or [""]:
            if problem := split_problem(
                dataset, spec.recipe.get("train_size"), spec.recipe.get("test_size"), known
            ):
                parser.error(problem)
    warn_single_class_batches(spec.recipe["batch_size"], args.losses)
    return args


def confirm(seconds: float | None, how: str, device, runs: int, yes: bool) -> str | None:
    """Print the estimate; past an hour on a CPU ask on a terminal, or refuse off one without ``--yes``
    (``cli/confirm.long_work``). The refusal's line, or None to go on."""
    from experiments.cli.confirm import long_work
    from experiments.text import plural

    what, less = f"{plural(runs, 'run')} to train", "fewer runs: --dry-run lists them"
    return long_work("grid", what, seconds, how, device.type == "cpu", yes, less)


def budget_line(seconds: float, max_minutes: float) -> str:
    """What ``--max-minutes`` does to a grid the estimate says takes ``seconds``: all of it fits, or the runs
    stop being started when the estimate says they cannot finish (the same command resumes the rest)."""
    if seconds <= 60 * max_minutes:
        return f"grid: the estimate fits in --max-minutes {max_minutes:g}"
    return (
        f"grid: the estimate is over --max-minutes {max_minutes:g}: runs that their estimate says cannot finish "
        "in time are not started (--fill-budget starts them), and the same command resumes the rest later"
    )


def run_device_label(label: str, threads: int) -> str:
    """The device label a run records when it trains on ``threads`` CPU threads (each run of a grid has its
    share of the cores): ``cpu (2 threads, AVX2, ...)`` -> ``cpu (1 thread, AVX2, ...)``; a GPU's unchanged.
    The estimate reads the ledger's runs of that label."""
    from experiments.text import plural

    return re.sub(r"^cpu \(\d+ threads?, ", f"cpu ({plural(threads, 'thread')}, ", label)


def main(argv=None) -> int:
    args = parse_args(argv)
    with loading():  # torch, pandas and the rest, once the flags are good
        from experiments import report
        from experiments.cli.recipe import (
            backend_from_args,
            chosen_device,
            run_problem,
            run_settings,
        )
        from experiments.datasets.sources import is_default_root, run_cannot_ready
        from experiments.datasets.specs import DataError, file_problems, get_spec
        from experiments.engine.data import load_images
        from experiments.engine.device import device_name
        from experiments.engine.io import unwritable
        from experiments.ledger.rows import read_rows
        from experiments.runners.backends import default_runs_per_device
        from experiments.runners.plan import (
            grid_estimate,
            ready_datasets,
            recorded_runs,
            stale_configs,
        )
        from experiments.runners.sweep import described, plan
        from experiments.runners.training import run_grid
        from experiments.text import plural

    results = Path(args.results)
    outputs = report.Outputs.for_ledger(results, args.imgs, args.readme)
    # the folders the checks make are removed again if nothing is written into them (a refusal)
    with removed_if_empty([args.out, results, outputs.imgs]):
        checks = (
            ()
            if args.dry_run
            else (
                unwritable(args.out),
                unwritable(results),
                None if args.no_report else outputs.problem(),
            )
        )
        for problem in checks:  # a dry run writes nothing, so it asks nothing of the folders
            if problem is not None:
                print(f"error: {problem}; nothing was trained", file=sys.stderr)
                return 2
        device = chosen_device(args.device)
        rows = read_rows(results / "runs.csv")
        spec = grid_spec(args)
        configs = stale_configs(rows) if args.retrain_stale else plan(spec)
        if args.retrain_stale and not configs:
            print(
                f"grid: no run of {results / 'runs.csv'} was recorded by other code; nothing to retrain"
            )
            return 0
        for cfg in configs:
            if (problem := run_problem(cfg)) is not None:
                print(f"error: {problem}; nothing was trained", file=sys.stderr)
                return 2
        done, _ = recorded_runs(rows, args.reuse_stale)
        datasets = sorted({c.dataset for c in configs}, key=list(SPECS).index)
        fetches = is_default_root(args.data_root)
        problems = {name: file_problems(get_spec(name), args.data_root) for name in datasets}
        skipped = {
            name
            for name, found in problems.items()
            if run_cannot_ready(name, args.data_root, found)
        }
        todo = [c for c in configs if c.run_id not in done and c.dataset not in skipped]
        runs_at_once = args.runs_per_gpu or default_runs_per_device(device)
        threads = args.cpus_per_run or max(1, torch_threads() // runs_at_once)
        seconds, how = grid_estimate(
            todo,
            rows,
            Path(args.out),
            run_device_label(device_name(device), threads),
            threads,
            runs_at_once,
        )
        if args.dry_run:
            for cfg in configs:
                print(f"{cfg.run_id}  {', '.join(described(cfg)) or 'reference recipe'}")
            print(
                f"grid: {plural(len(configs), 'run')} planned (dry run: nothing trained, fetched or written)"
            )
            for name, found in problems.items():
                if found:
                    print(
                        f"grid: {name} is not ready in {args.data_root} ({found[0]}"
                        + (f" and {len(found) - 1} more" if len(found) > 1 else "")
                        + "): a real run "
                        + (
                            "fetches it"
                            if name not in skipped
                            else f"skips it (a run never writes a root of your own: ./suite data fetch {name} "
                            f"--data-root {args.data_root} fills it)"
                            if all(p.endswith(": missing") for p in found)
                            else f"skips it (a bad file is never replaced unasked: ./suite data fetch {name} "
                            f"--repair{'' if fetches else f' --data-root {args.data_root}'} replaces it)"
                        )
                    )
            if todo:
                confirm(seconds, how, device, len(todo), yes=True)
                if args.max_minutes and seconds is not None:
                    print(budget_line(seconds, args.max_minutes))
            elif skipped:
                print("grid: nothing here that a real run could train (the lines above say why)")
            else:
                print("grid: every planned run is recorded already: nothing to train")
            return 0
        if todo and (refused := confirm(seconds, how, device, len(todo), args.yes)) is not None:
            print(f"error: {refused}; nothing was trained", file=sys.stderr)
            return 2
        usable = ready_datasets(datasets, args.data_root)
        try:
            for name in usable if spec.recipe["ood_images"] else []:
                load_images(spec.recipe["ood_images"], SPECS[name])
        except DataError as e:
            print(f"error: --ood-images {e}; nothing was trained", file=sys.stderr)
            return 2
        if not usable:
            print(
                "error: no dataset can be used (the lines above say why and how to fix it); nothing was trained",
                file=sys.stderr,
            )
            return 1
        configs = [c for c in configs if c.dataset in usable]
        settings = run_settings(args, results)
        outcome = run_grid(
            configs,
            settings,
            backend_from_args(args, device),
            device,
            args.max_minutes,
            args.fill_budget,
        )
        if outcome.interrupted:
            return 130
        if not args.no_report:
            try:
                built = report.build(outputs, args.out)
            except KeyboardInterrupt:
                again = f"./suite report --results {results.resolve()} --runs {Path(args.out).resolve()}"
                again += f" --imgs {Path(args.imgs).resolve()}" if args.imgs else ""
                print(
                    f"interrupted (Ctrl-C) while building the report: the runs are recorded in "
                    f"{results.resolve()}; {again} builds it",
                    file=sys.stderr,
                )
                return 130
            if built is not None:
                from experiments.report.terminal import terminal_table

                print(terminal_table(report.read_ledger(results / "runs.csv")))
                print(
                    f"report: {outputs.results / 'table.md'} (every column)" + built.readme_line()
                )
        if outcome.failed:
            print(
                f"error: {len(outcome.failed)} of {plural(outcome.planned, 'run')} failed "
                f"({', '.join(outcome.failed)}): the lines above say why and what to do; the same command "
                "then trains them again",
                file=sys.stderr,
            )
            return 1
        return 0


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(command(main))
