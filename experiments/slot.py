"""One GPU slot, one command: check, train the paper grid, export, within the slot's minutes.

    ./suite slot --pack .carry                              # here, before a slot: data, bundle, wheels (< 60 MB)
    python3 -m experiments.slot --minutes 13 --out $OUT     # there, on the GPU machine: the slot's one command

GPU time often comes in short slots (a shared or rented GPU, a cluster's
walltime) on a machine with no network, where a second command may cost a
second start. Within ``--minutes`` of wall time in all, in one process tree,
the slot command:

1. installs the carried wheels (``CARRY/wheels``) and names, in one line, what
   this Python lacks before anything starts;
2. makes the datasets present from the carried folder (``data fetch --from``,
   offline) and imports the carried bundle (``CARRY/grid*.tar``);
3. runs the self-check (``experiments/self_check.py``; about one minute): the
   graph-pool probe and a few hundred CUDA-graph steps of a real run against
   eager ones. Its verdict decides the steps: when it fails the grid trains
   with eager steps (``--no-graph``) and says so; without CUDA the CUDA parts
   are skipped with one line;
4. trains the paper grid (MNIST and Fashion-MNIST, both feat_dims, the three
   losses, fp32, 100 epochs) for the seeds still to do, every cell of one seed
   before the next, runs packed on the GPU, with every minute left but the
   export's; runs cut by the budget stop after an epoch, checkpointed;
5. exports the bundle into ``--out`` in parts of at most 15 MiB (``grid.tar``,
   ``grid.2.tar``, ...: the ledger, the compact frames the pictures are drawn
   from, and the unfinished runs);
6. prints and writes into ``--out`` one summary (``summary.txt``,
   ``summary.json``): the self-check's verdict, cells finished per seed,
   epochs done of the unfinished runs, the img/s and s/epoch measured, and the
   exact commands for the next slot.

Back here, ``./suite bundle import OUT/grid*.tar`` merges the rows and rebuilds
the README, and ``./suite slot --pack .carry`` packs for the next slot. The
options below ``--seeds`` change the grid (tests, smaller slots): a run that
departs from the paper recipe is no cell of the paper table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from experiments import check_env

PART_MB = 15.0  # each bundle file at most this many MiB (a machine that hands back files of 16 MiB at most)
PACK_MB = 60.0
PAPER = dict(datasets=["mnist", "fashion-mnist"], feat_dims=[2, 128], losses=["xent", "cent", "standalone"],
             seeds=[0, 1, 2, 3, 4])
PYTHON_TAG, PLATFORMS = "3.12", ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
MARKER = "PACKED.json"


def build_parser() -> argparse.ArgumentParser:
    from experiments.cli_types import HelpFormatter, non_negative_int, positive_float, positive_int
    parser = argparse.ArgumentParser(prog="python -m experiments.slot", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--pack", type=Path, metavar="DIR",
                        help="here, before a slot: put the datasets, the current bundle and the wheels the GPU "
                             "machine lacks into DIR (git-ignored .carry/ travels beside the checkout), and say its size")
    parser.add_argument("--minutes", type=positive_float, help="the slot: wall time in all, from this command's start")
    parser.add_argument("--out", type=Path, help="the slot: where the bundle and the summary go (the folder whose "
                                                 "files come back)")
    parser.add_argument("--carry", type=Path, default=Path(".carry"), help="the slot: the folder made by --pack")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    parser.add_argument("--runs-per-gpu", type=positive_int, help="runs side by side on the GPU (default: the grid's)")
    parser.add_argument("--seeds", nargs="+", type=non_negative_int, default=PAPER["seeds"],
                        help="the seeds to train, in order (the grid skips the cells already recorded)")
    parser.add_argument("--datasets", nargs="+", default=PAPER["datasets"], help="the grid's datasets")
    parser.add_argument("--feat-dims", nargs="+", type=positive_int, default=PAPER["feat_dims"], help="feature dims")
    parser.add_argument("--losses", nargs="+", default=PAPER["losses"], help="the grid's losses")
    parser.add_argument("--epochs", type=positive_int, help="epochs per run (default: the recipe's 100)")
    parser.add_argument("--train-size", type=positive_int, help="a training subset (default: the whole split)")
    parser.add_argument("--test-size", type=positive_int, help="a test subset (default: the whole split)")
    parser.add_argument("--check-steps", type=positive_int,
                        help="steps of the self-check per mode (default: 300 on CUDA, 10 on the CPU)")
    parser.add_argument("--results", type=Path, default=Path("results"), help="the ledger folder")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the run directories")
    parser.add_argument("--data-root", type=Path, help="where the datasets live (default: the suite's, SUITE_DATA)")
    parser.add_argument("--max-mb", type=positive_float, default=PACK_MB, help="--pack: the largest folder allowed")
    return parser


# ---- before the slot, here ------------------------------------------------------------------------------
def carried_requirements() -> list[str]:
    """The requirements of supported.txt marked ``; carried``: the GPU machine's Python lacks them."""
    out = []
    for line in check_env.SUPPORTED.read_text().splitlines():
        line, _, marker = line.split("#")[0].partition(";")
        if line.strip() and marker.strip() == "carried":
            out.append(line.strip())
    return out


def download_wheel(requirement: str, dest: Path) -> None:
    """A wheel for the GPU machine's Python (CPython 3.12, x86-64 Linux), without its dependencies."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           PYTHON_TAG, "--implementation", "cp", *(f"--platform={p}" for p in PLATFORMS), "-d", str(dest),
           requirement]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(f"pip download {requirement} failed: {lines[-1] if lines else done.returncode}")


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 2 ** 20


def pack(args) -> int:
    from experiments import bundle, report
    from experiments.data import pack as pack_dataset, prepare
    from experiments.datasets import DataError, default_data_root, get_spec
    dest, root = args.pack, args.data_root or default_data_root()
    if dest.exists() and any(dest.iterdir()) and not (dest / MARKER).exists():
        print(f"error: {dest} holds files that --pack did not make; give an empty or new folder", file=sys.stderr)
        return 2
    for old in ("data", "wheels"):
        shutil.rmtree(dest / old, ignore_errors=True)
    for old in dest.glob("grid*.tar") if dest.exists() else []:
        old.unlink()
    dest.mkdir(parents=True, exist_ok=True)
    contents = {"datasets": [], "bundle": [], "wheels": []}
    try:
        for name in [d for d in args.datasets if d != "synthetic"]:
            prepare(name, root)
            pack_dataset(get_spec(name), root, dest / "data")
            contents["datasets"].append(name)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    outputs = report.Outputs.for_ledger(args.results)
    if (outputs.results / "runs.csv").exists():
        try:
            counts = bundle.export(dest / "grid.tar", outputs.results, outputs.imgs, args.runs, max_mb=args.max_mb,
                                   force=True, part_mb=PART_MB, pictures=False)
        except bundle.BundleError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        contents["bundle"] = [p.name for p in counts["files"]]
    for requirement in carried_requirements():
        try:
            download_wheel(requirement, dest / "wheels")
        except RuntimeError as e:
            print(f"error: {e}; the GPU machine has no network, so its wheel must travel", file=sys.stderr)
            return 2
    contents["wheels"] = sorted(p.name for p in (dest / "wheels").glob("*.whl"))
    (dest / MARKER).write_text(json.dumps(contents, indent=2) + "\n")
    size = folder_mb(dest)
    print(f"slot: packed {dest} ({size:.1f} MiB): datasets {', '.join(contents['datasets']) or 'none'}; bundle "
          f"{' '.join(contents['bundle']) or 'none (no ledger yet)'}; wheels {' '.join(contents['wheels']) or 'none needed'}")
    if size > args.max_mb:
        biggest = sorted((f for f in dest.rglob("*") if f.is_file()), key=lambda f: -f.stat().st_size)[:3]
        print(f"error: {dest} is {size:.1f} MiB, over --max-mb {args.max_mb:g} (largest: "
              + ", ".join(f"{f.name} {f.stat().st_size / 2 ** 20:.1f} MiB" for f in biggest) + ")", file=sys.stderr)
        return 2
    print(f"slot: next, on the GPU machine, with {dest} beside the checkout: "
          f"python3 -m experiments.slot --minutes 13 --out $OUT" + (f" --carry {dest}" if dest != Path(".carry") else ""))
    return 0


# ---- the slot, there ------------------------------------------------------------------------------------
class Log:
    """Prints a line, with the seconds since the slot began, and keeps it for the slot's log (in --out)."""

    def __init__(self, t0: float):
        self.t0, self.lines = t0, []

    def __call__(self, line: str) -> None:
        line = f"[{time.time() - self.t0:6.1f}s] {line}"
        print(line, flush=True)
        self.lines.append(line)


def install_wheels(carry: Path, log: Log) -> None:
    """Install the carried wheels into CARRY/site (no network, no dependencies) and put it on the path of this
    process and of every process it starts."""
    wheels = sorted((carry / "wheels").glob("*.whl"))
    if not wheels:
        return
    site = (carry / "site").resolve()
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                           "--upgrade", "--target", str(site), *map(str, wheels)], capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        log(f"wheels: install failed ({lines[-1] if lines else done.returncode}); going on without them")
        return
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    import importlib
    importlib.invalidate_caches()
    log(f"wheels: installed {len(wheels)} into {site}")


def left_s(deadline: float) -> float:
    return deadline - time.time()


def self_check(args, device, log: Log) -> dict:
    """The graph-pool probe and the self-check, each in its own process within its share of about a minute."""
    from experiments.data import run_limited
    from experiments.provenance import REPO
    root = args.data_root
    result = {"verdict": "skipped", "reason": ""}
    if device.type == "cuda":
        done = run_limited([sys.executable, "-m", "experiments.graph_pool_probe"], 40, cwd=REPO)
        lines = [] if done is None else [line for line in done.stdout.splitlines() if line.startswith("graph-pool")]
        result["probe"] = "pass" if done is not None and done.returncode == 0 else "fail"
        log(f"self-check: graph-pool probe {result['probe'].upper()}"
            + (": no answer within 40 s" if done is None else "".join(f"; {line}" for line in lines[-1:])))
    steps = args.check_steps or (300 if device.type == "cuda" else 10)
    if device.type != "cuda":  # nothing here can leave a broken CUDA context behind: no process of its own
        from experiments.datasets import default_data_root
        from experiments.self_check import check
        result.update(check(args.datasets[0], root or default_data_root(), device, steps))
        log(f"self-check: {result['verdict'].upper()}: {result['reason']}")
        return result
    cmd = [sys.executable, "-m", "experiments.self_check", "--dataset", args.datasets[0], "--steps", str(steps),
           "--device", str(device)] + (["--data-root", str(root)] if root else [])
    done = run_limited(cmd, 75, cwd=REPO)
    if done is None:
        result.update(verdict="fail", reason="no answer within 75 s")
    else:
        last = [line for line in done.stdout.splitlines() if line.startswith("{")][-1:]
        if last:
            result.update(json.loads(last[0]))
        else:
            tail = [line for line in done.stderr.splitlines() if line.strip()][-1:]
            result.update(verdict="fail", reason=f"exit code {done.returncode}: {tail[0][:200] if tail else ''}")
    if result.get("probe") == "fail" and result["verdict"] == "pass":
        result.update(verdict="fail", reason="the graph-pool probe failed; " + result["reason"])
    log(f"self-check: {result['verdict'].upper()}: {result['reason']}")
    return result


def grid_argv(args, seconds: float, graph: bool) -> list[str]:
    argv = ["--preset", "paper", "--datasets", *args.datasets, "--feat-dims", *map(str, args.feat_dims),
            "--losses", *args.losses, "--seeds", *map(str, args.seeds), "--results", str(args.results),
            "--out", str(args.runs), "--device", args.device, "--max-minutes", f"{seconds / 60:.4f}", "--fill-budget", "--no-report",
            "--no-progress", "--offline"]
    for flag, value in (("--epochs", args.epochs), ("--train-size", args.train_size), ("--test-size", args.test_size),
                        ("--runs-per-gpu", args.runs_per_gpu), ("--data-root", args.data_root)):
        if value is not None:
            argv += [flag, str(value)]
    return argv + ([] if graph else ["--no-graph"])


def measured(configs, before: dict, runs: Path) -> dict:
    """s/epoch and training img/s (an epoch's images over its seconds, evaluation included) of the epochs
    trained in this slot, medians over them."""
    import csv
    from experiments.datasets import get_spec
    per_epoch, rates = [], []
    for cfg in configs:
        try:
            with open(runs / cfg.run_id / "metrics.csv", newline="") as f:
                rows = list(csv.DictReader(f))[before.get(cfg.run_id, 0):]
        except OSError:
            continue
        images = cfg.train_size or get_spec(cfg.dataset).train_size
        for row in rows:
            per_epoch.append(float(row["seconds"]))
            rates.append(images // cfg.batch_size * cfg.batch_size / float(row["seconds"]))
    median = lambda xs: sorted(xs)[len(xs) // 2] if xs else None  # noqa: E731
    return {"epochs_trained": len(per_epoch), "s_per_epoch": median(per_epoch), "img_s_per_run": median(rates)}


def cells(configs, results: Path, runs: Path) -> dict:
    """Per seed: cells recorded (finished or diverged by the code as it is now) of the planned ones, and the
    epochs done of each unfinished run."""
    from experiments.fingerprint import code_fingerprint
    from experiments.ledger import epochs_on_disk, is_done
    out = {"per_seed": {}, "unfinished": {}}
    for cfg in configs:
        seed = out["per_seed"].setdefault(str(cfg.seed), {"done": 0, "planned": 0})
        seed["planned"] += 1
        if is_done(results, cfg.run_id, code_fingerprint(cfg.loss, cfg.model)):
            seed["done"] += 1
        elif epochs_on_disk(runs / cfg.run_id):
            out["unfinished"][cfg.run_id] = f"{epochs_on_disk(runs / cfg.run_id)}/{cfg.epochs}"
    return out


def summary_text(s: dict) -> str:
    check = s["self_check"]
    speed = s["measured"]
    lines = [f"slot on {s['device']}: {s['minutes']:g} min budget, {s['used_s'] / 60:.1f} min used",
             f"  self-check: {check['verdict'].upper()}: {check['reason']}"
             + (f" (graph {check['graph_img_s']:,.0f} img/s, eager {check['eager_img_s']:,.0f} img/s)"
                if check.get("graph_img_s") else f" (eager {check['eager_img_s']:,.0f} img/s)"
                if check.get("eager_img_s") else ""),
             f"  grid: {s['steps']}, exit code {s['grid_exit']}",
             "  cells recorded: " + "; ".join(f"seed {seed} {c['done']}/{c['planned']}"
                                               for seed, c in s["cells"]["per_seed"].items()),
             "  unfinished (epochs done): " + (", ".join(f"{r} {e}" for r, e in s["cells"]["unfinished"].items())
                                               or "none"),
             "  measured: " + (f"{speed['s_per_epoch']:.2f} s/epoch, {speed['img_s_per_run']:,.0f} img/s per run "
                               f"(training, epoch incl. evaluation; medians of {speed['epochs_trained']} epochs)"
                               if speed["epochs_trained"] else "no epoch trained"),
             f"  bundle: {' '.join(s['bundle']) or 'none'}"]
    lines += [f"  next: {line}" for line in s["next"]]
    return "\n".join(lines)


def next_commands(args, bundle_files: list[str], all_done: bool) -> list[str]:
    names = " ".join(Path(p).name for p in bundle_files)
    lines = [f"here, with the returned files: ./suite bundle import {names}" if names else
             "here: nothing to import (no bundle was written)"]
    if all_done:
        lines.append("every planned cell is recorded: commit results/, imgs/ and README.md")
    else:
        lines += ["here: ./suite slot --pack .carry",
                  f"in the next slot: python3 -m experiments.slot --minutes {args.minutes:g} --out $OUT"]
    return lines


def run_slot(args, t0: float) -> int:
    """The slot, from ``t0`` (epoch seconds: when the command started) to at most ``--minutes`` after it."""
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = t0 + 60 * args.minutes
    log = Log(t0)
    install_wheels(args.carry, log)
    missing = check_env.problems(tests=False)
    if missing:
        print(f"error: {sys.executable} lacks what the suite needs: {'; '.join(missing)}; carry the wheels "
              "(`./suite slot --pack`) or use another Python; nothing was run", file=sys.stderr)
        return 2
    os.environ["SUITE_OFFLINE"] = "1"  # a slot's machine has no network: a missing file fails at once
    import torch
    from experiments import bundle, grid, report
    from experiments.data import Source, ensure, from_debian_dir
    from experiments.datasets import DataError, default_data_root
    from experiments.ledger import epochs_on_disk, read_rows, start_ledger
    from experiments.provenance import device_name, resolve_device
    from experiments.report.composites import keep_frames
    device = resolve_device(args.device)
    root = args.data_root or default_data_root()
    outputs = report.Outputs.for_ledger(args.results)
    log(f"slot: {args.minutes:g} min on {device_name(device)} (torch {torch.__version__}); writing into {args.out}")
    for name in [d for d in args.datasets if d != "synthetic"]:
        folder = args.carry / "data" / name
        sources = [Source(f"files in {folder}", lambda spec, r, _s, d=folder: from_debian_dir(spec, r, 0, d))]
        try:
            ensure(name, root, sources=sources, log=lambda *_: None)
            log(f"data: {name} verified in {root}")
        except DataError as e:
            log(f"data: {e}")
    parts = sorted(args.carry.glob("grid*.tar"), key=lambda p: (len(p.name), p.name))
    if parts:
        try:
            counts = bundle.import_bundle(parts, outputs.results, outputs.imgs, args.runs, log=log)
            log("bundle: imported " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        except bundle.BundleError as e:
            log(f"bundle: {e}; going on with the ledger of the checkout")
    check = self_check(args, device, log)
    graph = device.type == "cuda" and check["verdict"] == "pass"
    steps = ("CUDA-graph steps" if graph else "eager steps (--no-graph: the self-check failed)"
             if device.type == "cuda" else "eager steps (CPU)")
    reserve = min(60.0, max(10.0, 0.06 * 60 * args.minutes))  # the export and the summary
    planned = grid.planned_configs(grid.parse_args(grid_argv(args, 60, graph)))
    before = {c.run_id: epochs_on_disk(args.runs / c.run_id) for c in planned}
    seconds = left_s(deadline) - reserve
    grid_exit = None
    if seconds < 5:
        log(f"grid: only {seconds:.0f} s left for training; none started")
    else:
        log(f"grid: {seconds / 60:.1f} min with {steps}")
        try:
            grid_exit = grid.main(grid_argv(args, seconds, graph))
        except Exception as e:  # the slot still exports what was trained and says why the grid stopped
            log(f"grid: stopped by {type(e).__name__}: {e}")
            grid_exit = f"{type(e).__name__}"
    files: list[str] = []
    start_ledger(outputs.results)  # a slot whose runs all stopped unfinished still hands them back
    kept = 0
    if read_rows(outputs.results / "runs.csv"):
        kept = keep_frames(report.read_ledger(outputs.results / "runs.csv"), args.runs, outputs.results / "frames")
    try:
        counts = bundle.export(args.out / "grid.tar", outputs.results, outputs.imgs, args.runs,
                               max_mb=6 * PART_MB, force=True, part_mb=PART_MB, pictures=False)
        files = [str(p) for p in counts["files"]]
        log(f"bundle: {' '.join(files)} ({sum(Path(p).stat().st_size for p in files) / 2 ** 20:.1f} MiB; "
            f"frames of {kept} finished runs, {counts['runs']} files of unfinished runs)")
    except bundle.BundleError as e:
        log(f"bundle: {e}")
    state = cells(planned, outputs.results, args.runs)
    all_done = all(c["done"] == c["planned"] for c in state["per_seed"].values())
    summary = {"device": device_name(device), "minutes": args.minutes, "self_check": check, "steps": steps,
               "grid_exit": grid_exit, "cells": state, "measured": measured(planned, before, args.runs),
               "bundle": files, "next": next_commands(args, files, all_done)}
    summary["used_s"] = round(time.time() - t0, 1)
    text = summary_text(summary)
    print(text, flush=True)
    (args.out / "summary.txt").write_text(text + "\n")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "slot.log").write_text("\n".join(log.lines) + "\n")
    return 0


def main(argv=None) -> int:
    t0 = time.time()  # the slot's clock starts with the command
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.pack is not None:
        return pack(args)
    if args.minutes is None or args.out is None:
        parser.error("give --minutes and --out (the slot), or --pack DIR (before it)")
    return run_slot(args, t0)


if __name__ == "__main__":
    sys.exit(main())
