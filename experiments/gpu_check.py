"""Check the CUDA path and measure it, in a few minutes, with one summary.

    python -m experiments.gpu_check                    # ./suite gpu-check
    python -m experiments.gpu_check --dataset mnist --steps 200

Runs the tests that need a GPU (CUDA-graph step against the eager step in
fp32 and bf16, a whole run graphed against eager with the graph recaptured
after an lr drop, packed runs recording what sequential runs record), then
the bench on one dataset (eager and graph, fp32 and bf16, and packed runs),
and prints pass/fail per check, images/s, seconds per epoch and peak memory.
Exits 1 when a check fails. Without CUDA it says so in one line and exits 0.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from experiments.cli_types import HelpFormatter, positive_int
from experiments.datasets import SPECS

GPU_TESTS = ["tests/test_speed.py"]  # its CUDA tests, and the CPU ones beside them (seconds)
REPO = Path(__file__).resolve().parent.parent


def test_outcomes(junit_xml: Path) -> list[tuple[str, str]]:
    """``(test, passed|failed|skipped)`` from a pytest JUnit XML report."""
    outcomes = []
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        status = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        outcomes.append((case.get("name"), status))
    return outcomes


def summary(outcomes: list[tuple[str, str]], bench_rows: list[dict], device: str) -> tuple[str, bool]:
    """The printed summary and whether every check passed (a skipped GPU test is a failure on a GPU)."""
    lines = [f"gpu-check on {device}"]
    ok = bool(outcomes) and all(status == "passed" for _, status in outcomes)
    lines += [f"  {'PASS' if status == 'passed' else status.upper():7} {name}" for name, status in outcomes]
    if not outcomes:
        lines.append("  FAILED  no test ran")
    lines.append(f"  {'dataset':14} {'loss':11} {'mode':20} {'prec':5} {'img/s':>9} {'s/epoch':>8} {'peak MB':>8}")
    for r in bench_rows:
        lines.append(f"  {r['dataset']:14} {r['loss']:11} {r['mode']:20} {r['precision']:5} "
                     f"{r['train_images_per_s'] or '—':>9} {r['s_per_epoch'] or '—':>8} {r['peak_gpu_mem_mb'] or '—':>8}")
        ok = ok and r["finite"] == "True"
    lines.append(f"gpu-check: {'all checks passed' if ok else 'FAILED (see above)'}")
    return "\n".join(lines), ok


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.gpu_check", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--dataset", choices=list(SPECS), default="fashion-mnist",
                        help="the bench's dataset (the synthetic set when it is not present)")
    parser.add_argument("--steps", type=positive_int, default=200, help="timed steps per bench case")
    parser.add_argument("--out", type=Path, default=Path("results/bench.csv"), help="the bench's CSV")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device here (torch {torch.__version__} sees none); nothing to check")
        return 0
    from experiments.data import available
    from experiments.datasets import default_data_root
    dataset = args.dataset if available(args.dataset, default_data_root()) else "synthetic"
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                        *GPU_TESTS], cwd=REPO, timeout=300)
        outcomes = test_outcomes(junit) if junit.exists() else []
    subprocess.run([sys.executable, "-m", "experiments.bench", "--datasets", dataset, "--steps", str(args.steps),
                    "--precisions", "fp32", "bf16", "--packed", "4", "--out", str(args.out)], cwd=REPO, timeout=600)
    with open(args.out, newline="") as f:
        rows = list(csv.DictReader(f))
    text, ok = summary(outcomes, rows, torch.cuda.get_device_name())
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
