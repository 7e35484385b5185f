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
import sys
import traceback
from pathlib import Path

import torch
from tqdm.auto import tqdm

from experiments import report
from experiments.cli_types import positive_int
from experiments.data import DeviceData, available
from experiments.datasets import SPECS, get_spec
from experiments.ledger import failed_row, read_rows, record, row_from_result
from experiments.provenance import resolve_device
from experiments.train import add_recipe_arguments, config_from_args, run_one
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
    data_cache: dict[tuple, DeviceData] = {}
    bar = tqdm(todo, desc="grid", unit="run", disable=args.no_progress, dynamic_ncols=True)
    for cfg in bar:
        bar.set_postfix_str(cfg.run_id)
        key = (cfg.dataset, cfg.train_size, cfg.test_size)
        try:
            if key not in data_cache:
                data_cache.clear()
                data_cache[key] = DeviceData(get_spec(cfg.dataset), args.data_root, device, *key[1:])
            result = run_one(cfg, args, data_cache[key], device)
            with open(args.out / cfg.run_id / "metrics.csv", newline="") as f:
                epoch_rows = list(csv.DictReader(f)) if result["epochs_done"] else []
            record(args.results, row_from_result(result), epoch_rows)
        except Exception as e:  # recorded, and the grid goes on
            traceback.print_exc()
            record(args.results, failed_row(cfg.to_dict(), cfg.run_id, f"{type(e).__name__}: {e}"), [])
        if device.type == "cuda":
            torch.cuda.empty_cache()
    bar.close()
    if not args.no_report:
        report.main(["--results", str(args.results), "--runs", str(args.out), "--imgs", str(args.imgs),
                     "--readme", str(args.readme)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
