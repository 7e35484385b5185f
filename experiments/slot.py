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
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from experiments import check_env

PART_MB = 15.0  # each bundle file at most this many MiB (a machine that hands back files of 16 MiB at most)
PACK_MB = 60.0
UNFINISHED_MB = 14.0  # unfinished runs carried each way at most (the datasets take about 40 MiB of a pack)
PAPER = dict(datasets=["mnist", "fashion-mnist"], feat_dims=[2, 128], losses=["xent", "cent", "standalone"],
             seeds=[0, 1, 2, 3, 4])
PYTHON_TAG, PLATFORMS = "3.12", ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
MARKER = "PACKED.json"


def build_parser() -> argparse.ArgumentParser:
    from experiments.cli.types import HelpFormatter, Parser, non_negative_int, positive_float, positive_int
    parser = Parser(prog="python -m experiments.slot", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--pack", type=Path, metavar="DIR",
                        help="here, before a slot: put the datasets, the current bundle and the wheels the GPU "
                             "machine lacks into DIR (.carry/ in the checkout is git-ignored and travels with it), "
                             "and say its size")
    parser.add_argument("--minutes", type=positive_float, help="the slot: wall time in all, from this command's start")
    parser.add_argument("--out", type=Path, help="the slot: where the bundle, the summary and the log go (the folder "
                                                 "whose files come back)")
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
    parser.add_argument("--check-steps", type=positive_int, help="steps of the self-check per mode on CUDA (default: 300)")
    parser.add_argument("--results", type=Path, default=Path("results"), help="the ledger folder")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the run directories")
    parser.add_argument("--data-root", type=Path, help="where the datasets live (default: the suite's, SUITE_DATA)")
    parser.add_argument("--max-mb", type=positive_float, default=PACK_MB, help="--pack: the largest folder allowed")
    return parser


def datasets_option(args) -> list[str]:
    """``--datasets ...`` when not the paper's: the slot trains only what was packed."""
    return ["--datasets", *args.datasets] if args.datasets != PAPER["datasets"] else []


def ledger_options(args) -> list[str]:
    """``--results`` and ``--runs`` when not the main ledger's: the printed commands for the returned files
    must bring them into the ledger this slot trained for, not into the README's."""
    return [part for flag, value, default in (("--results", args.results, "results"), ("--runs", args.runs, "runs"))
            if value != Path(default) for part in (flag, shlex.quote(str(value)))]


def option_problem(args) -> str | None:
    """Why an option cannot work, in one line (asked once the Python has what the suite needs)."""
    from experiments.datasets.specs import SPECS
    from centersuite.losses import LOSSES
    for flag, given, known in (("--datasets", args.datasets, SPECS), ("--losses", getattr(args, "losses", []), LOSSES)):
        unknown = [v for v in given if v not in known]
        if unknown:
            return f"{flag} {' '.join(unknown)}: unknown; choose from {', '.join(known)}"
    return None


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
    """The carried folder: datasets (gzipped), the ledger and the unfinished runs, wheels; its marker says
    whether it is complete, so that a pack cut short is neither used nor mistaken for the user's files."""
    if (problem := option_problem(args)) is not None:
        print(f"error: {problem}; nothing was packed", file=sys.stderr)
        return 2
    from experiments import report
    from experiments.datasets.sources import pack as pack_dataset, prepare
    from experiments.datasets.specs import DataError, default_data_root, get_spec
    from experiments.runners.bundle import BundleError, export
    dest, root = args.pack, args.data_root or default_data_root()
    if dest.exists() and any(dest.iterdir()) and not (dest / MARKER).exists():
        print(f"error: {dest} holds files that --pack did not make; give an empty or new folder", file=sys.stderr)
        return 2
    dest.mkdir(parents=True, exist_ok=True)
    contents = {"complete": False, "datasets": [], "bundle": [], "wheels": [], "left_out": {}}
    (dest / MARKER).write_text(json.dumps(contents) + "\n")  # first: whatever happens next, the folder is ours
    for old in ("data", "wheels", "site"):
        shutil.rmtree(dest / old, ignore_errors=True)
    for old in dest.glob("grid*.tar"):
        old.unlink()
    try:
        for name in [d for d in args.datasets if d != "synthetic"]:
            prepare(name, root)
            pack_dataset(get_spec(name), root, dest / "data")
            contents["datasets"].append(name)
        outputs = report.Outputs.for_ledger(args.results)
        if (outputs.results / "runs.csv").exists():  # the compact frames stay: the checkout carries them
            counts = export(dest / "grid.tar", outputs.results, outputs.imgs, args.runs, max_mb=args.max_mb,
                            force=True, part_mb=PART_MB, pictures=False, leave_out=("frames",),
                            unfinished_mb=UNFINISHED_MB)
            contents["bundle"], contents["left_out"] = [p.name for p in counts["files"]], counts["left_out"]
        for requirement in carried_requirements():
            download_wheel(requirement, dest / "wheels")
    except (DataError, BundleError) as e:
        print(f"error: {e}; {dest} is incomplete, and a slot will not use it", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"error: {e}; the GPU machine has no network, so the wheel must travel; {dest} is incomplete",
              file=sys.stderr)
        return 2
    contents["wheels"] = sorted(p.name for p in (dest / "wheels").glob("*.whl"))
    size = folder_mb(dest)
    if size > args.max_mb:
        biggest = sorted((f for f in dest.rglob("*") if f.is_file()), key=lambda f: -f.stat().st_size)[:3]
        print(f"error: {dest} is {size:.1f} MiB, over --max-mb {args.max_mb:g} (largest: "
              + ", ".join(f"{f.name} {f.stat().st_size / 2 ** 20:.1f} MiB" for f in biggest)
              + f"); {dest} is incomplete, and a slot will not use it", file=sys.stderr)
        return 2
    contents["complete"] = True
    (dest / MARKER).write_text(json.dumps(contents, indent=2) + "\n")
    print(f"slot: packed {dest} ({size:.1f} MiB): datasets {', '.join(contents['datasets']) or 'none'}; bundle "
          f"{' '.join(contents['bundle']) or 'none (no ledger yet)'}; wheels {' '.join(contents['wheels']) or 'none needed'}"
          + "".join(f"; unfinished run {r} ({e} epochs) left out: over {UNFINISHED_MB:g} MiB, it trains again from "
                    "scratch" for r, e in contents["left_out"].items()))
    print(f"slot: next, on the GPU machine, from a checkout with {dest} copied to the same path: "
          f"python3 -m experiments.slot --minutes 9.5 --out $OUT" + (f" --carry {dest}" if dest != Path(".carry") else "")
          + "".join(f" {part}" for part in datasets_option(args)))
    return 0


# ---- the slot, there ------------------------------------------------------------------------------------
class Log:
    """Prints a line, with the seconds since the slot began, and appends it at once to the slot's log."""

    def __init__(self, t0: float, path: Path):
        self.t0, self.path = t0, path

    def __call__(self, line: str) -> None:
        line = f"[{time.time() - self.t0:6.1f}s] {line}"
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


class Tee:
    """Everything written to this process's stdout and stderr (file descriptors 1 and 2, so the grid's worker
    processes too) goes to the console and is appended to ``path``."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2), sys.stdout, sys.stderr)
        read, write = os.pipe()
        os.dup2(write, 1)
        os.dup2(write, 2)
        os.close(write)
        self.pump = threading.Thread(target=self._pump, args=(read,), daemon=True)
        self.pump.start()
        sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)
        return self

    def _pump(self, read: int) -> None:
        with open(read, "rb", buffering=0) as source, open(self.path, "ab") as log:
            while chunk := source.read(1 << 16):
                os.write(self.saved[0], chunk)
                log.write(chunk)
                log.flush()

    def __exit__(self, *exc):
        sys.stdout.flush()
        sys.stdout, sys.stderr = self.saved[2], self.saved[3]
        os.dup2(self.saved[0], 1)  # the pipe's last writer closes: the pump reads its end and stops
        os.dup2(self.saved[1], 2)
        self.pump.join(timeout=10)
        os.close(self.saved[0])
        os.close(self.saved[1])


class Terminated(Exception):
    """SIGTERM outside the grid (the grid turns it into a stop after the current epoch)."""


def on_sigterm(*_):
    raise Terminated()


def install_wheels(carry: Path, log: Log, problems: list[str]) -> None:
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
        problems.append(f"wheels: install failed ({lines[-1] if lines else done.returncode})")
        log(problems[-1] + "; going on without them")
        return
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    import importlib
    importlib.invalidate_caches()
    log(f"wheels: installed {len(wheels)} into {site}")


def carried(carry: Path, log: Log, problems: list[str]) -> bool:
    """Whether ``carry`` is a complete folder made by --pack; every other case is named in a problem."""
    marker = carry / MARKER
    if not marker.exists():
        problems.append(f"carry: {carry.resolve()} is not a folder made by `./suite slot --pack` (no {MARKER}): "
                        "no bundle imported, and the datasets must already be in the data root")
    elif "complete" not in (made := json.loads(marker.read_text())):
        problems.append(f"carry: {carry.resolve()} was made by an older --pack: not used; pack it again")
    elif not made["complete"]:
        problems.append(f"carry: {carry.resolve()} is an incomplete pack (its --pack failed): not used")
    else:
        return True
    log(problems[-1])
    return False


def self_check(args, device, seconds: float, log: Log) -> dict:
    """The graph-pool probe and the self-check within ``seconds`` together, each in its own process on CUDA."""
    from experiments import REPO
    from experiments.datasets.sources import run_limited
    root = args.data_root
    result = {"verdict": "skipped", "reason": ""}
    if device.type != "cuda":
        result["reason"] = "no CUDA device: the graph-pool probe and the graphed steps are skipped"
        log(f"self-check: SKIPPED: {result['reason']}")
        return result
    if seconds < 5:
        result["reason"] = f"only {max(seconds, 0):.0f} s of the budget for it"
        log(f"self-check: SKIPPED: {result['reason']}")
        return result
    limit = min(40.0, seconds / 3)
    done = run_limited([sys.executable, "-m", "experiments.probes.graph_pool"], limit, cwd=REPO)
    lines = [] if done is None else [line for line in done.stdout.splitlines() if line.startswith("graph-pool")]
    result["probe"] = "pass" if done is not None and done.returncode == 0 else "fail"
    log(f"self-check: graph-pool probe {result['probe'].upper()}"
        + (f": no answer within {limit:.0f} s" if done is None else "".join(f"; {line}" for line in lines[-1:])))
    seconds -= limit
    steps = args.check_steps or 300
    limit = min(75.0, seconds)  # in its own process, killed at its limit (a broken CUDA context stays there)
    cmd = [sys.executable, "-m", "experiments.probes.self_check", "--dataset", args.datasets[0], "--steps",
           str(steps), "--device", str(device)] + (["--data-root", str(root)] if root else [])
    done = run_limited(cmd, limit, cwd=REPO)
    if done is None:
        result.update(verdict="fail", reason=f"no answer within its {limit:.0f} s")
    else:
        last = [line for line in done.stdout.splitlines() if line.startswith("{")][-1:]
        if last:
            result.update(json.loads(last[0]))
        else:
            tail = [line for line in done.stderr.splitlines() if line.strip()][-1:]
            result.update(verdict="fail", reason=f"exit code {done.returncode}: {tail[0][:200] if tail else ''}")
    if result.get("probe") == "fail" and result["verdict"] == "pass":
        result.update(verdict="fail", reason="the graph-pool probe failed; " + result["reason"])
    log(f"self-check: {result['verdict'].upper()} on {result.get('dataset', args.datasets[0])}: {result['reason']}")
    return result


def departures(args) -> list[str]:
    """The options that make this grid other than the paper's (its runs are no cells of the paper table)."""
    out = [f"{flag} {' '.join(map(str, value))}" for flag, key in (("--datasets", "datasets"),
           ("--feat-dims", "feat_dims"), ("--losses", "losses")) if (value := getattr(args, key)) != PAPER[key]]
    return out + [f"{flag} {value}" for flag, value in (("--epochs", args.epochs), ("--train-size", args.train_size),
                                                        ("--test-size", args.test_size)) if value is not None]


def grid_argv(args, seconds: float, graph: bool) -> list[str]:
    argv = ["--preset", "paper", "--datasets", *args.datasets, "--feat-dims", *map(str, args.feat_dims),
            "--losses", *args.losses, "--seeds", *map(str, args.seeds), "--results", str(args.results),
            "--out", str(args.runs), "--device", args.device, "--max-minutes", f"{max(seconds, 1) / 60:.4f}",
            "--fill-budget", "--no-report", "--no-progress", "--offline"]
    for flag, value in (("--epochs", args.epochs), ("--train-size", args.train_size), ("--test-size", args.test_size),
                        ("--runs-per-gpu", args.runs_per_gpu), ("--data-root", args.data_root)):
        if value is not None:
            argv += [flag, str(value)]
    return argv + ([] if graph else ["--no-graph"])


def epoch_estimate(planned, results: Path, device: str, check: dict) -> float:
    """Seconds of the slowest planned kind of epoch on this device: the ledger's rows of this device (wall
    time over epochs), else the self-check's steps per second (training only, so doubled for evaluation)."""
    from experiments.datasets.specs import get_spec
    from experiments.ledger.rows import read_rows
    kinds = {(c.dataset, str(c.feat_dim), str(c.train_size or "")) for c in planned}
    rates = {}
    for r in read_rows(Path(results) / "runs.csv"):
        kind = (r["dataset"], r["feat_dim"], r.get("train_size") or "")
        if kind in kinds and r.get("device") == device and r.get("wall_s") and int(r.get("epochs_done") or 0) > 0:
            rates.setdefault(kind, []).append(float(r["wall_s"]) / int(r["epochs_done"]))
    known = [max(v) for v in rates.values()]
    if known:
        return max(known)
    rate = check.get("graph_img_s") or check.get("eager_img_s")
    if not rate:
        return 0.0
    images = max((c.train_size or get_spec(c.dataset).train_size) for c in planned)
    return 2 * images / rate


def measured(configs, before: dict, runs: Path) -> dict:
    """s/epoch and training img/s (an epoch's images over its seconds, evaluation included) of the epochs the
    run folder gained during the slot (by any runner on it), medians over them."""
    import csv
    from experiments.datasets.specs import get_spec
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
    """Per seed: cells recorded (finished or diverged by the code as it is now) of the planned ones; the epochs
    done of every planned run that is unfinished in the run folder."""
    from experiments.ledger.fingerprint import code_fingerprint
    from experiments.ledger.rows import epochs_on_disk, is_done
    from experiments.runners.bundle import unfinished_runs
    out = {"per_seed": {}, "unfinished": {}}
    epochs = {c.run_id: c.epochs for c in configs}
    for cfg in configs:
        seed = out["per_seed"].setdefault(str(cfg.seed), {"done": 0, "planned": 0})
        seed["planned"] += 1
        seed["done"] += is_done(results, cfg.run_id, code_fingerprint(cfg.loss, cfg.model))
    for run_id in unfinished_runs(runs):
        if run_id in epochs:
            out["unfinished"][run_id] = f"{epochs_on_disk(runs / run_id)}/{epochs[run_id]}"
    return out


def summary_text(s: dict) -> str:
    check, speed = s["self_check"], s.get("measured") or {}
    rates = ", ".join(f"{mode} {check[f'{mode}_img_s']:,.0f} img/s" for mode in ("graph", "eager")
                      if check.get(f"{mode}_img_s"))
    lines = [f"slot on {s['device']}: {s['minutes']:g} min budget, {s['used_s'] / 60:.1f} min used, exit code "
             f"{s['exit_code']}",
             f"  self-check: {check['verdict'].upper()}: {check['reason']}" + (f" ({rates})" if rates else ""),
             f"  grid: {s['steps']}, " + (f"exit code {s['grid_exit']}" if s["grid_exit"] is not None else "not run")
             + (f"; departs from the paper grid in {', '.join(s['departs'])}" if s["departs"] else "")]
    lines += [f"  problem: {p}" for p in s["problems"]]
    if s.get("cells"):
        lines += ["  cells recorded: " + "; ".join(f"seed {seed} {c['done']}/{c['planned']}"
                                                  for seed, c in s["cells"]["per_seed"].items()),
                  "  unfinished (epochs done): " + (", ".join(f"{r} {e}" for r, e in s["cells"]["unfinished"].items())
                                                    or "none")]
    lines += [f"  left out of the bundle (trains again from scratch): {r} ({e} epochs)"
              for r, e in s.get("left_out", {}).items()]
    if speed:
        lines.append("  measured: " + (f"{speed['s_per_epoch']:.2f} s/epoch, {speed['img_s_per_run']:,.0f} img/s per run "
                                       f"(training, epoch incl. evaluation; medians of {speed['epochs_trained']} "
                                       "epochs in the run folder)" if speed["epochs_trained"] else "no epoch trained"))
    lines.append(f"  bundle: {' '.join(s['bundle']) or 'none'}")
    lines += [f"  next: {line}" for line in s["next"]]
    return "\n".join(lines)


def next_commands(args, argv: list[str], bundle_files: list[str], all_done: bool, refused: bool) -> list[str]:
    """What to run here with the returned files (into the ledger this slot trained for), then in the next slot:
    the same command, ``--out $OUT``."""
    if refused:
        return ["fix what the problem line names, then run the same command again"]
    names = " ".join(Path(p).name for p in bundle_files)
    ledger = "".join(f" {part}" for part in ledger_options(args))
    lines = [f"here, with the returned files: ./suite bundle import {names}{ledger}" if names else
             "here: nothing to import (no bundle was written)"]
    if all_done:
        return lines + ["every planned cell is recorded: commit results/, imgs/ and README.md"]
    again, skip = [], False
    for arg in argv:
        if skip:
            again.append("$OUT")
            skip = False
        elif arg == "--out":
            again.append(arg)
            skip = True
        elif arg.startswith("--out="):
            again.append("--out=$OUT")
        else:
            again.append(shlex.quote(arg))
    return lines + [f"here: ./suite slot --pack {shlex.quote(str(args.carry))}"
                    + "".join(f" {part}" for part in datasets_option(args)) + ledger,
                    "in the next slot: python3 -m experiments.slot " + " ".join(again)]


def run_slot(args, argv: list[str], t0: float) -> int:
    """The slot, from ``t0`` (epoch seconds: when the command started) to at most ``--minutes`` after it."""
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "slot.log").write_text("")
    except OSError as e:
        print(f"error: --out {args.out}: cannot write there ({e.strerror or type(e).__name__}); give another "
              "folder; nothing was run", file=sys.stderr)
        return 2
    deadline = t0 + 60 * args.minutes
    log = Log(t0, args.out / "slot.log")
    problems: list[str] = []
    summary = {"device": "not resolved", "minutes": args.minutes, "self_check": {"verdict": "not run", "reason": ""},
               "steps": "none", "grid_exit": None, "departs": departures(args), "problems": problems, "bundle": [],
               "next": [], "exit_code": 0}
    previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        summary["exit_code"] = slot_steps(args, deadline, log, problems, summary)
    except KeyboardInterrupt:
        problems.append("interrupted (Ctrl-C) outside the grid; what was trained is exported")
        summary["exit_code"] = 130
    except Terminated:
        problems.append("SIGTERM outside the grid; what was trained is exported")
        summary["exit_code"] = 143
    finally:  # the export and the summary are not interrupted: a second signal waits until they are written
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
        if summary["exit_code"] not in (2,) and summary.get("ready"):
            export(args, log, problems, summary)
        summary.pop("ready", None)
        cells_state = summary.get("cells", {}).get("per_seed", {})
        all_done = bool(cells_state) and all(c["done"] == c["planned"] for c in cells_state.values())
        summary["next"] = next_commands(args, argv, summary["bundle"], all_done, summary["exit_code"] == 2)
        if problems and summary["exit_code"] == 0:
            summary["exit_code"] = 1
        summary["used_s"] = round(time.time() - t0, 1)
        text = summary_text(summary)
        print(text, flush=True)
        (args.out / "summary.txt").write_text(text + "\n")
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        signal.signal(signal.SIGTERM, previous_sigterm)
        signal.signal(signal.SIGINT, previous_sigint)
    return summary["exit_code"]


def refuse(problem: str, log: Log, problems: list[str]) -> int:
    """A problem that stops the slot before anything runs: one line on stderr, in the log and the summary."""
    problems.append(problem)
    print(f"error: {problem}", file=sys.stderr)
    with open(log.path, "a") as f:
        f.write(f"error: {problem}\n")
    return 2


def slot_steps(args, deadline: float, log: Log, problems: list[str], summary: dict) -> int:
    """Wheels, the Python, the options, the data, the bundle, the self-check, the grid; the exit code."""
    use_carry = carried(args.carry, log, problems)
    if use_carry:
        install_wheels(args.carry, log, problems)
    missing = check_env.problems(tests=False)
    if missing:
        return refuse(f"{sys.executable} lacks what the suite needs: {'; '.join(missing)}; carry the wheels "
                      "(`./suite slot --pack`) or use another Python; nothing was run", log, problems)
    if (problem := option_problem(args)) is not None:
        return refuse(problem + "; nothing was run", log, problems)
    os.environ["SUITE_OFFLINE"] = "1"  # a slot's machine has no network: a missing file fails at once
    import torch
    from experiments import grid, report
    from experiments.datasets.sources import Source, ensure, from_debian_dir
    from experiments.datasets.specs import DataError, default_data_root
    from experiments.engine.device import device_name, resolve_device
    from experiments.ledger.rows import epochs_on_disk
    from experiments.runners.bundle import BundleError, import_bundle
    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as e:
        return refuse(f"--device {args.device}: {str(e).splitlines()[0]}; nothing was run", log, problems)
    summary["device"] = device_name(device)
    root = args.data_root or default_data_root()
    outputs = report.Outputs.for_ledger(args.results)
    log(f"slot: {args.minutes:g} min on {summary['device']} (torch {torch.__version__}); writing into {args.out}")
    summary["ready"] = True  # from here on, what is trained is exported
    usable = [d for d in args.datasets if d == "synthetic"]
    for name in [d for d in args.datasets if d != "synthetic"]:
        folder = args.carry / "data" / name
        sources = [Source(f"files in {folder}", lambda spec, r, _s, d=folder: from_debian_dir(spec, r, 0, d))]
        try:
            ensure(name, root, sources=sources if use_carry else [], log=lambda *_: None)
            log(f"data: {name} verified in {root}")
            usable.append(name)
        except DataError as e:
            problems.append(f"data: {e}")
            log(problems[-1])
    if not usable:
        problems.append("data: no dataset can be used (the lines above say why); nothing was trained")
        log(problems[-1])
        return 1
    args.datasets = usable
    parts = sorted(args.carry.glob("grid*.tar"), key=lambda p: (len(p.name), p.name)) if use_carry else []
    if parts:
        try:
            counts = import_bundle(parts, outputs.results, outputs.imgs, args.runs, log=log)
            log("bundle: imported " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        except BundleError as e:
            problems.append(f"bundle: {e}; the ledger of the checkout was used")
            log(problems[-1])
    check = summary["self_check"] = self_check(args, device, min(115.0, 0.25 * (deadline - time.time())), log)
    graph = device.type == "cuda" and check["verdict"] == "pass"
    summary["steps"] = ("CUDA-graph steps" if graph else "eager steps (--no-graph: the self-check did not pass)"
                        if device.type == "cuda" else "eager steps (CPU)")
    planned = grid.planned_configs(grid.parse_args(grid_argv(args, 60, graph)))
    before = {c.run_id: epochs_on_disk(args.runs / c.run_id) for c in planned}
    export_s = min(60.0, max(8.0, 0.05 * 60 * args.minutes))
    epoch_s = epoch_estimate(planned, args.results, summary["device"], check)
    seconds = deadline - time.time() - export_s - 1.2 * epoch_s  # the epoch in flight at the deadline finishes
    summary["cells"] = cells(planned, outputs.results, args.runs)
    if seconds < 5:
        line = (f"grid: no time left for training ({max(seconds, 0):.0f} s after the export's {export_s:.0f} s and "
                f"an epoch's {epoch_s:.0f} s); none started")
        if any(c["done"] < c["planned"] for c in summary["cells"]["per_seed"].values()):
            problems.append(line + "; give the slot more --minutes")  # cells left and none trained: no success
        log(line)
        return 0
    log(f"grid: {seconds / 60:.1f} min with {summary['steps']} (an epoch estimated at {epoch_s:.0f} s)")
    code, ended = 0, {}
    try:
        with Tee(args.out / "slot.log"):
            summary["grid_exit"] = grid.main(grid_argv(args, seconds, graph), report_to=ended)
    except Exception as e:  # the slot still exports what was trained and says why the grid stopped
        summary["grid_exit"], code = f"{type(e).__name__}", 1
        problems.append(f"grid: stopped by {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    if summary["grid_exit"] == 130:
        code = 130
        problems.append("interrupted (Ctrl-C) during training; the running runs kept their last epoch")
    elif ended.get("terminated"):
        code = 143
        problems.append("SIGTERM during training; the running runs stopped after their epoch, checkpointed")
    elif summary["grid_exit"] not in (0, None) and code == 0:
        problems.append(f"grid: exit code {summary['grid_exit']} (slot.log has its lines)")
    for run_id in ended.get("failed", []):
        problems.append(f"run {run_id} failed (its row and slot.log say why); the next slot trains it again")
    summary["measured"] = measured(planned, before, args.runs)
    summary["cells"] = cells(planned, outputs.results, args.runs)
    summary["planned"] = [c.run_id for c in planned]
    return code


def export(args, log: Log, problems: list[str], summary: dict) -> None:
    """The compact frames of the README's pictures, then the bundle into --out; never raises."""
    from experiments import report
    from experiments.ledger.rows import read_rows, start_ledger
    from experiments.report.composites import keep_frames
    from experiments.runners.bundle import BundleError, export as export_bundle
    outputs = report.Outputs.for_ledger(args.results)
    try:
        start_ledger(outputs.results)  # a slot whose runs all stopped unfinished still hands them back
        kept = 0
        if read_rows(outputs.results / "runs.csv"):
            kept = keep_frames(report.read_ledger(outputs.results / "runs.csv"), args.runs, outputs.results / "frames")
        counts = export_bundle(args.out / "grid.tar", outputs.results, outputs.imgs, args.runs, max_mb=4 * PART_MB,
                               force=True, part_mb=PART_MB, pictures=False, unfinished_mb=UNFINISHED_MB)
        summary["bundle"], summary["left_out"] = [str(p) for p in counts["files"]], counts["left_out"]
        log(f"bundle: {' '.join(summary['bundle'])} ({sum(p.stat().st_size for p in counts['files']) / 2 ** 20:.1f} "
            f"MiB; frames of {kept} runs for the README's pictures, {counts['runs']} files of unfinished runs)")
    except (BundleError, OSError) as e:
        problems.append(f"bundle: {e}")
        log(problems[-1])


def main(argv=None) -> int:
    t0 = time.time()  # the slot's clock starts with the command
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.pack is not None:
        try:
            return pack(args)
        except KeyboardInterrupt:
            print(f"interrupted: {args.pack} is incomplete, and a slot will not use it; pack again", file=sys.stderr)
            return 130
    if args.minutes is None or args.out is None:
        parser.error("give --minutes and --out (the slot), or --pack DIR (before it)")
    return run_slot(args, argv, t0)


if __name__ == "__main__":
    sys.exit(main())
