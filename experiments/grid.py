"""Run the grid: datasets x feat_dims x losses x seeds, then rebuild the report.

    python -m experiments.grid --preset quick        # a first run on a CPU, minutes; its own ledger
    python -m experiments.grid --preset paper        # the reference grid, 100 epochs, into results/
    python -m experiments.grid --preset paper --datasets mnist --seeds 0 1 2 --max-minutes 25

Each run has a stable id (the hash of its config). Finished (or diverged)
runs recorded in the ledger are skipped; a run interrupted mid-way resumes
from its last epoch; a run that fails is recorded as failed and retried next
time. Kill it at any moment and start it again: nothing is lost or done twice.

Outputs follow the ledger (--results): the main ledger results/ rebuilds
imgs/ and the README; any other ledger gets its table and pictures under
itself and leaves the README alone. The quick preset's ledger is
results/quick/ (not tracked by git).
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from tqdm.auto import tqdm

from experiments.report.cells import plural
from experiments import report
from experiments.cli.recipe import (DATASET_HELP, KNOWN_CLASSES_HELP, add_backend_arguments, add_recipe_arguments,
                                    apply_model_recipe, backend_from_args, center_rule_problem, config_from_args,
                                    run_problem, run_settings, unread_center_flags, warn_single_class_batches)
from experiments.cli.types import HelpFormatter, Parser, class_list, non_negative_int, positive_float, positive_int
from experiments.datasets.specs import SPECS, DataError, file_problems, get_spec
from experiments.engine.data import load_images
from experiments.engine.device import device_name, resolve_device
from experiments.engine.io import unwritable
from experiments.ledger.rows import read_rows
from experiments.runners.backends import record_outcome
from experiments.runners.plan import Budget, estimate_seconds, ready_datasets, recorded_runs, stale_configs
from experiments.runners.presets import PRESET_KEYS, PRESETS
from experiments.runners.sweep import SweepError, check_flags, described, parse_set, sweep_points
from centersuite.losses import LOSSES

def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m experiments.grid", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--preset", choices=list(PRESETS), default="paper",
                        help="paper: the reference grid (3 datasets, 100 epochs, full splits), into results/; quick: "
                             "2 datasets x {2, 128} x 3 losses, 3 epochs on 2048/1000 images, into results/quick/ "
                             "(a first run on a CPU); demo: the three losses at feat_dim 2 on MNIST and Fashion-MNIST, "
                             "5 epochs on 16,000/2,000 images, into results/ (the README's 2-D feature gifs when no "
                             "full-recipe runs exist; about 35 minutes on 2 CPU cores); openset: the three losses on MNIST and CIFAR-10 with 6 known classes in 3 "
                             "splits (the open-set recognition protocol), into results/. Every option below overrides "
                             "the preset")
    parser.add_argument("--datasets", nargs="+", choices=list(SPECS), help=DATASET_HELP)
    parser.add_argument("--losses", nargs="+", choices=list(LOSSES), help="losses to train")
    parser.add_argument("--feat-dims", nargs="+", type=positive_int, help="feature dimensions")
    parser.add_argument("--seeds", nargs="+", type=non_negative_int, help="seeds (runs of one seed are paired)")
    parser.add_argument("--known-classes", nargs="+", type=class_list,
                        help=KNOWN_CLASSES_HELP.replace("these classes", "each of these splits of the classes"))
    add_recipe_arguments(parser, sweep=True)
    parser.add_argument("--set", action="append", default=[], metavar="LOSS.OPTION=V1,V2",
                        help="sweep a loss option for one loss only, e.g. --set standalone.weight_inter=0.01,0.1,1 "
                             "(a flag such as --weight-inter sweeps it for every loss of --losses that takes it; "
                             "--set wins for its loss); repeatable")
    parser.add_argument("--dry-run", action="store_true", help="list the planned runs (and how many) and train nothing")
    parser.add_argument("--results", type=Path, help="the ledger folder: runs.csv, epochs.csv, table.md "
                                                     "(default: the preset's)")
    parser.add_argument("--imgs", type=Path, help="where the pictures go (default: imgs/ for the main ledger "
                                                  "results/, RESULTS/imgs otherwise)")
    parser.add_argument("--readme", type=Path, help="the README whose marked sections are rewritten (default: "
                                                    "README.md for the main ledger, none otherwise)")
    parser.add_argument("--no-report", action="store_true", help="do not rebuild the report at the end")
    parser.add_argument("--reuse-stale", action="store_true",
                        help="count runs recorded by other code (another code fingerprint: a loss, the trainer, "
                             "the model, the data or the metrics changed since) as done, instead of retraining "
                             "them; the report marks them stale")
    parser.add_argument("--retrain-stale", action="store_true",
                        help="train again, by the code as it is now, every run of the ledger (--results) recorded "
                             "by other code, instead of the preset's grid (a tuning study's reproductions: with "
                             "`tune --refresh`); the old rows stay, superseded")
    parser.add_argument("--max-minutes", type=positive_float,
                        help="time budget: no run is started that its estimate says cannot finish in time; when the "
                             "budget ends, running runs stop after their current epoch (checkpointed) and the grid "
                             "exits 0; the same command resumes them. SIGTERM does the same")
    parser.add_argument("--fill-budget", action="store_true",
                        help="with --max-minutes: start runs even when their estimate says they cannot finish in "
                             "time; they stop after an epoch, checkpointed, and the same command resumes them (time "
                             "that recurs: GPU slots, walltime allocations)")
    parser.add_argument("--runs-per-gpu", type=positive_int, default=None,
                        help="runs sharing one GPU, the same default for every backend: 4 on a GPU of 40 GB or more, "
                             "2 below that, 1 on the CPU (local: processes side by side; ray: each task takes 1/N "
                             "of a GPU; slurm without SLURM: N local jobs per visible GPU)")
    add_backend_arguments(parser)
    parser.set_defaults(epochs=None, train_size=None, test_size=None, eval_train_size=None)
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    for key in PRESET_KEYS:
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    apply_model_recipe(args, sweep=True)
    try:
        args.scoped = [parse_set(text) for text in args.set]
        check_flags(args, args.losses, args.scoped)
    except SweepError as e:
        parser.error(str(e))
    if problem := center_rule_problem(args.center_rule, args.losses) or unread_center_flags(args, args.losses):
        parser.error(problem)
    warn_single_class_batches(args.batch_size, args.losses)
    return args


def planned_configs(args) -> list:
    """seeds x datasets x known classes x feat_dims x losses x swept values: every cell of the first seed
    before any cell of the next, so a grid cut short holds whole tables rather than many seeds of a few cells."""
    configs = [config_from_args(argparse.Namespace(**{**vars(args), **point}), dataset, loss, feat_dim, seed, known)
               for seed in args.seeds for dataset in args.datasets for known in args.known_classes
               for feat_dim in args.feat_dims for loss in args.losses for point in sweep_points(args, loss, args.scoped)]
    return list({c.run_id: c for c in configs}.values())  # one run per id: an axis a run ignores makes no copy


def main(argv=None, report_to: dict | None = None) -> int:
    """The command; ``report_to``, when given, receives how the grid ended: ``terminated`` (SIGTERM),
    ``runs_left`` (not recorded: stopped or not started) and ``failed`` (the run ids recorded as failed)."""
    args = parse_args(argv)
    ended = report_to if report_to is not None else {}
    outputs = report.Outputs.for_ledger(args.results, args.imgs, args.readme)
    made = [p for p in (args.out, args.results, outputs.imgs) if not Path(p).exists()]  # put back if nothing trains
    checks = () if args.dry_run else (unwritable(args.out), unwritable(args.results),
                                      None if args.no_report else outputs.problem())
    for problem in checks:  # a dry run writes nothing, so it asks nothing of the folders
        if problem is not None:
            print(f"error: {problem}; nothing was trained", file=sys.stderr)
            return 2
    device = resolve_device(args.device)
    to_retrain = stale_configs(read_rows(args.results / "runs.csv")) if args.retrain_stale else []
    if args.retrain_stale:
        args.datasets = sorted({c.dataset for c in to_retrain}, key=list(SPECS).index)
    if not args.dry_run:  # a dry run fetches nothing
        args.datasets = ready_datasets(args.datasets, args.data_root)
        try:
            for name in args.datasets if args.ood_images else []:
                load_images(args.ood_images, SPECS[name])
        except DataError as e:
            print(f"error: --ood-images {e}; nothing was trained", file=sys.stderr)
            return 2
    if args.retrain_stale and not to_retrain:
        print(f"grid: no run of {args.results / 'runs.csv'} was recorded by other code; nothing to retrain")
        return 0
    if not args.datasets:
        print("error: no dataset can be used (the lines above say why and how to fix it); nothing was trained",
              file=sys.stderr)
        for folder in sorted(made, key=lambda p: -len(Path(p).parts)):  # the folders the checks made, if empty
            if Path(folder).is_dir() and not any(Path(folder).iterdir()):
                Path(folder).rmdir()
        return 1
    configs = [c for c in to_retrain if c.dataset in args.datasets] if args.retrain_stale else planned_configs(args)
    for cfg in configs:
        if (problem := run_problem(cfg)) is not None:
            print(f"error: {problem}; nothing was trained", file=sys.stderr)
            return 2
    if args.dry_run:
        for cfg in configs:
            print(f"{cfg.run_id}  {', '.join(described(cfg)) or 'reference recipe'}")
        missing = [d for d in args.datasets if file_problems(get_spec(d), args.data_root)]
        print(f"grid: {plural(len(configs), 'run')} planned (dry run: nothing trained, fetched or written)"
              + (f"; not in {args.data_root} yet: {', '.join(missing)} (a real run fetches what it can)"
                 if missing else ""))
        return 0
    done, stale = recorded_runs(read_rows(args.results / "runs.csv"), args.reuse_stale)
    todo = [c for c in configs if c.run_id not in done]
    retrain = sum(c.run_id in stale for c in todo)
    print(f"grid: {len(configs)} runs, {len(configs) - len(todo)} already recorded, {len(todo)} to train "
          + (f"({retrain} of them recorded by other code: retrained from scratch, --reuse-stale keeps them) "
             if retrain else "") + f"(ledger {args.results})")
    budget = Budget(args.max_minutes, args.out)
    previous_sigterm = signal.signal(signal.SIGTERM, budget.on_sigterm)
    backend = backend_from_args(args, device)
    settings = run_settings(args, args.results)
    here = device_name(device)

    def estimate(cfg) -> float | None:  # the ledger is re-read: runs finished meanwhile inform the estimate
        if args.fill_budget:
            return None
        return estimate_seconds(cfg, args.out / cfg.run_id, read_rows(args.results / "runs.csv"), here)

    left, elsewhere = len(todo), 0
    ended.update(terminated=False, runs_left=left, failed=[])
    bar = tqdm(total=len(todo), desc="grid", unit="run", disable=args.no_progress, dynamic_ncols=True)
    try:
        for outcome in backend.run(todo, settings, budget.stop, estimate):
            if outcome.skipped is not None:
                print(f"run {outcome.cfg.run_id}: {outcome.skipped}")
                elsewhere += 1
                left -= 1
            elif outcome.stopped is None:
                if not outcome.recorded:  # a worker that died, or a job the cluster lost
                    record_outcome(settings, outcome, here)
                left -= 1
                if outcome.error is not None or (outcome.result or {}).get("status") == "failed":
                    ended["failed"].append(outcome.cfg.run_id)
            ended["runs_left"] = left
            bar.set_postfix_str(outcome.cfg.run_id)
            bar.update()
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: {len(todo) - left} runs recorded, {left} left (each keeps its last finished epoch); "
              "the same command resumes them", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        budget.close()
        ended["terminated"] = budget.terminated
    bar.close()
    if elsewhere:
        print(f"grid: {plural(elsewhere, 'run')} held or recorded by another runner on this folder (not trained "
              "here)")
    if left:
        why = "SIGTERM" if budget.terminated else "time budget"
        print(f"grid: stopped by the {why} with {left} runs left (checkpointed or not started); the same command "
              "resumes them")
    if not args.no_report:
        table = report.build(outputs, args.out)
        if table is not None:
            print(table)
            print(f"report: {outputs.results / 'table.md'}" + report.readme_line(outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
