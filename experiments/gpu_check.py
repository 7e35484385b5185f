"""Check the CUDA path and measure it within a total time budget, with one summary.

    python -m experiments.gpu_check                              # ./suite gpu-check; 5 minutes in all
    python -m experiments.gpu_check --out $OUT/gpu-check --max-minutes 8

Three steps, each in its own process with its share of ``--max-minutes``
(time a step leaves unused passes to the next):

1. the graph-pool probe (``experiments/probes/graph_pool.py``): the caching
   allocator's rule that the CUDA-graph step relies on, on real CUDA;
2. the tests marked ``gpu`` (CUDA-graph step against the eager step in fp32
   and bf16, a whole run graphed against eager with the graph recaptured
   after lr drops);
3. the bench on one dataset (eager and graph, fp32 and bf16, packed runs).

Every exit code is checked; a step that runs out of its share ends in one
line saying so. Everything is written into ``--out`` (logs, the tests' JUnit
report, the bench's CSV): on a GPU machine whose files come back from one
folder, point ``--out`` inside it. The summary gives PASS/FAIL per check and
the figures (img/s, s/epoch, peak MiB per mode and precision). Exits 1 when
a check fails. Without CUDA it says so in one line and exits 0. Needs no
network: a dataset that is not present is replaced by the synthetic set.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from experiments import REPO
from experiments.cli.entry import command, loading
from experiments.cli.types import HelpFormatter, Parser, positive_float, positive_int, user_path
from experiments.datasets.sources import run_limited
from experiments.datasets.specs import SPECS, default_data_root, file_problems, get_spec

SHARES = {"probe": 0.1, "tests": 0.4, "bench": 0.5}  # of --max-minutes


def test_outcomes(junit_xml: Path) -> list[tuple[str, str]]:
    """``(test, passed|failed|skipped)`` from a pytest JUnit XML report."""
    outcomes = []
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        status = (
            "failed"
            if kinds & {"failure", "error"}
            else "skipped"
            if "skipped" in kinds
            else "passed"
        )
        outcomes.append((case.get("name"), status))
    return outcomes


def run_step(name: str, cmd: list[str], seconds: float, log: Path) -> tuple[bool, str]:
    """Run one step's process into ``log`` within ``seconds``; ``(passed, one line)``."""
    with open(log, "w") as out:
        done = run_limited(cmd, seconds, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    if done is None:
        return (
            False,
            f"{name}: stopped when its share of the budget ({seconds:.0f} s) ran out; "
            f"raise --max-minutes (log: {log})",
        )
    rc = done.returncode
    if rc != 0:
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
        return False, f"{name}: exit code {rc}{': ' + tail[0][:160] if tail else ''} (log: {log})"
    return True, f"{name}: exit code 0"


def summary(
    steps: dict[str, tuple[bool, str]],
    outcomes: list[tuple[str, str]],
    bench_rows: list[dict],
    device: str,
    notes: list[str] = (),
) -> tuple[str, bool]:
    """The printed summary and whether every check passed (a skipped GPU test is a failure on a GPU)."""
    lines = [f"gpu-check on {device}"]
    ok = all(passed for passed, _ in steps.values())
    lines += [f"  {'PASS' if passed else 'FAIL':7} {line}" for passed, line in steps.values()]
    lines += [f"          {note}" for note in notes]
    ok = ok and bool(outcomes) and all(status == "passed" for _, status in outcomes)
    lines += [
        f"  {'PASS' if status == 'passed' else status.upper():7} {name}"
        for name, status in outcomes
    ]
    if not outcomes:
        lines.append("  FAILED  no test ran")
    lines.append(
        f"  {'dataset':14} {'loss':11} {'mode':24} {'prec':5} {'img/s':>9} {'s/epoch':>8} {'peak MiB':>8}"
    )
    for r in bench_rows:
        lines.append(
            f"  {r['dataset']:14} {r['loss']:11} {r['mode']:24} {r['precision']:5} "
            f"{r['train_images_per_s'] or '—':>9} {r['s_per_epoch'] or '—':>8} {r['peak_gpu_mem_mb'] or '—':>8}"
        )
        ok = ok and r["finite"] == "True"
    if not bench_rows:
        ok = False
        lines.append("  FAILED  the bench recorded no figure")
    lines.append(f"gpu-check: {'PASS (all checks passed)' if ok else 'FAIL (see above)'}")
    return "\n".join(lines), ok


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m experiments.gpu_check", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--dataset",
        choices=list(SPECS),
        default="fashion-mnist",
        help="the bench's dataset (the synthetic set when it is not present; nothing is fetched)",
    )
    parser.add_argument(
        "--steps", type=positive_int, default=200, help="timed steps per bench case"
    )
    parser.add_argument(
        "--max-minutes",
        type=positive_float,
        default=5.0,
        help="the whole check's budget, split between probe, tests and bench "
        f"({', '.join(f'{int(100 * v)}%%' for v in SHARES.values())})",
    )
    parser.add_argument(
        "--out",
        type=user_path,
        default=Path(tempfile.gettempdir()) / "suite-gpu-check",
        help="the folder for every file the check writes (logs, junit.xml, bench.csv)",
    )
    parser.add_argument(
        "--data-root", type=user_path, default=default_data_root(), help="where the datasets live"
    )
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    with loading():  # torch, once the flags are good
        import torch
    if not torch.cuda.is_available():
        print(
            f"gpu-check: no CUDA device here (torch {torch.__version__} sees none); nothing to check"
        )
        return 0
    out = args.out.resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(
            f"error: {out}: cannot write there ({e.strerror}); give another --out", file=sys.stderr
        )
        return 2
    root = args.data_root.resolve()
    dataset = args.dataset if not file_problems(get_spec(args.dataset), root) else "synthetic"
    py = sys.executable
    commands = {
        "probe": [py, "-m", "experiments.probes.graph_pool"],
        "tests": [
            py,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "gpu",
            f"--junitxml={out / 'junit.xml'}",
            str(REPO / "tests"),
        ],
        "bench": [
            py,
            "-m",
            "experiments.bench",
            "--device",
            "cuda",
            "--datasets",
            dataset,
            "--steps",
            str(args.steps),
            "--precisions",
            "fp32",
            "bf16",
            "--packed",
            "4",
            "--data-root",
            str(root),
            "--offline",
            "--out",
            str(out / "bench.csv"),
        ],
    }
    steps, left = {}, 60 * args.max_minutes
    for i, (name, cmd) in enumerate(commands.items()):
        share = left * SHARES[name] / sum(list(SHARES.values())[i:])
        t0 = time.monotonic()
        print(f"gpu-check: {name} ({share:.0f} s at most) ...", flush=True)
        steps[name] = run_step(name, cmd, share, out / f"{name}.log")
        left -= time.monotonic() - t0
    junit, bench_csv = out / "junit.xml", out / "bench.csv"
    outcomes = test_outcomes(junit) if junit.exists() else []
    rows = list(csv.DictReader(open(bench_csv, newline=""))) if bench_csv.exists() else []
    notes = [
        line
        for line in (out / "probe.log").read_text(errors="replace").splitlines()
        if line.startswith("graph-pool probe")
    ]
    text, ok = summary(steps, outcomes, rows, torch.cuda.get_device_name(), notes)
    print(text)
    (out / "summary.txt").write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(command(main))
