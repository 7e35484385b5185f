"""Run the grid: datasets x feat_dims x losses x seeds, then rebuild the report.

    python -m experiments.grid --preset quick        # a CPU, minutes
    python -m experiments.grid --preset paper        # the reference grid, 100 epochs
    python -m experiments.grid --preset paper --datasets mnist --seeds 0 1 2

Each run has a stable id (the hash of its config). Finished (or diverged)
runs recorded in results/runs.csv are skipped; a run interrupted mid-way
resumes from its last epoch; a run that fails is recorded as failed and
retried next time. Kill it at any moment and start it again: nothing is lost
or done twice.
"""
from __future__ import annotations

import argparse
import csv
import multiprocessing
import signal
import sys
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from tqdm.auto import tqdm

from experiments import report
from experiments.cli_types import positive_int
from experiments.data import DeviceData, available
from experiments.datasets import SPECS
from experiments.ledger import failed_row, read_rows, record, row_from_result
from experiments.provenance import resolve_device
from experiments.train import add_recipe_arguments, config_from_args, load_data, run_one
from losses import LOSSES

PRESETS = {
    "paper": dict(datasets=["mnist", "fashion-mnist", "cifar-10"], feat_dims=[2, 128],
                  losses=["xent", "cent", "standalone"], seeds=[0], epochs=100, train_size=None, test_size=None),
    "quick": dict(datasets=["mnist", "fashion-mnist"], feat_dims=[2, 128], losses=["xent", "cent", "standalone"],
                  seeds=[0], epochs=3, train_size=2048, test_size=1000),
}
PRESET_KEYS = ("datasets", "feat_dims", "losses", "seeds", "epochs", "train_size", "test_size")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m experiments.grid", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="quick")
    parser.add_argument("--datasets", nargs="+", choices=list(SPECS))
    parser.add_argument("--losses", nargs="+", choices=list(LOSSES))
    parser.add_argument("--feat-dims", nargs="+", type=positive_int)
    parser.add_argument("--seeds", nargs="+", type=int)
    add_recipe_arguments(parser)
    parser.add_argument("--results", type=Path, default=Path("results"), help="where runs.csv and table.md go")
    parser.add_argument("--imgs", type=Path, default=Path("imgs"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--no-report", action="store_true", help="do not rebuild the report at the end")
    parser.add_argument("--runs-per-gpu", type=positive_int, default=None,
                        help="runs trained side by side in separate processes (default: 4 on a GPU of 40 GB "
                             "or more, 2 below that, 1 on the CPU)")
    parser.set_defaults(epochs=None, train_size=None, test_size=None)
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    for key in PRESET_KEYS:
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    return args


def planned_configs(args) -> list:
    return [config_from_args(args, dataset, loss, feat_dim, seed)
            for dataset in args.datasets for feat_dim in args.feat_dims
            for loss in args.losses for seed in args.seeds]


def default_runs_per_device(device: torch.device) -> int:
    """Small models leave a large GPU idle between kernels; a few runs side by side fill it."""
    if device.type != "cuda":
        return 1
    return 4 if torch.cuda.get_device_properties(device).total_memory >= 40 * 2 ** 30 else 2


_worker_data: dict[tuple, DeviceData] = {}


def _die_with_parent() -> None:
    """Worker initialiser: on Linux, a killed grid takes its workers with it."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def train_cached(cfg, args, device) -> dict:
    """Train one config, reusing the dataset already on the device when it fits."""
    key = (cfg.dataset, cfg.train_size, cfg.test_size, cfg.protocol)
    if key not in _worker_data:
        _worker_data.clear()
        _worker_data[key] = load_data(cfg, args.data_root, device)
    result = run_one(cfg, args, _worker_data[key], device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def _worker(cfg, args, threads: int) -> dict:
    torch.set_num_threads(threads)
    return train_cached(cfg, args, resolve_device(args.device))


def record_outcome(args, cfg, result: dict | None, error: BaseException | None) -> None:
    if error is not None:
        print(f"run {cfg.run_id} failed: {type(error).__name__}: {error}", file=sys.stderr)
        record(args.results, failed_row(cfg.to_dict(), cfg.run_id, f"{type(error).__name__}: {error}"), [])
        return
    epoch_rows = []
    if result["epochs_done"]:  # a run that diverged in its first epoch wrote no metrics.csv
        with open(args.out / cfg.run_id / "metrics.csv", newline="") as f:
            epoch_rows = list(csv.DictReader(f))
    record(args.results, row_from_result(result), epoch_rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    datasets = []
    for name in args.datasets:
        if available(name, args.data_root):
            datasets.append(name)
        else:
            print(f"skipping {name}: its files are missing from {args.data_root} "
                  f"(python -m experiments.data fetch {name})")
    args.datasets = datasets
    done = {r["run_id"] for r in read_rows(args.results / "runs.csv") if r["status"] in ("finished", "diverged")}
    configs = planned_configs(args)
    todo = [c for c in configs if c.run_id not in done]
    print(f"grid: {len(configs)} runs, {len(configs) - len(todo)} already recorded, {len(todo)} to train")
    device = resolve_device(args.device)
    parallel = min(args.runs_per_gpu or default_runs_per_device(device), max(1, len(todo)))
    bar = tqdm(total=len(todo), desc="grid", unit="run", disable=args.no_progress, dynamic_ncols=True)
    if parallel == 1:
        for cfg in todo:
            bar.set_postfix_str(cfg.run_id)
            try:
                result, error = train_cached(cfg, args, device), None
            except Exception as e:  # recorded, and the grid goes on
                traceback.print_exc()
                result, error = None, e
            record_outcome(args, cfg, result, error)
            bar.update()
    else:
        print(f"grid: {parallel} runs side by side")
        args.no_progress = True  # per-epoch bars of parallel workers would interleave
        threads = max(1, torch.get_num_threads() // parallel)
        with ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_die_with_parent) as pool:
            futures = {pool.submit(_worker, cfg, args, threads): cfg for cfg in todo}
            for future in as_completed(futures):
                cfg = futures[future]
                record_outcome(args, cfg, None if future.exception() else future.result(), future.exception())
                bar.set_postfix_str(cfg.run_id)
                bar.update()
    bar.close()
    if not args.no_report:
        report.main(["--results", str(args.results), "--runs", str(args.out), "--imgs", str(args.imgs),
                     "--readme", str(args.readme)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
