"""The grid on Ray (a local instance) and on SLURM (submitit's local executor) records what it records locally."""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import grid
from experiments.ledger.rows import read_rows

REPO = Path(__file__).resolve().parent.parent
MINI = [
    "--datasets",
    "synthetic",
    "--losses",
    "xent",
    "standalone",
    "--feat-dims",
    "2",
    "--seeds",
    "0",
    "--epochs",
    "2",
    "--train-size",
    "128",
    "--test-size",
    "50",
    "--batch-size",
    "32",
    "--no-progress",
    "--no-report",
    "--cpus-per-run",
    "2",
]


def needs(module):
    """Cluster packages come from requirements-cluster.txt, which CI installs: there a missing one fails."""
    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is missing in CI: .ci/run must install requirements-cluster.txt")
        pytest.skip(f"{module} is not installed (pip install -r requirements-cluster.txt)")


def rows_of(root):
    return {
        r["run_id"]: (r["status"], r["final_test_acc"], r["best_test_acc"], r["final_map_at_r"])
        for r in read_rows(root / "results" / "runs.csv")
    }


def dirs(root):
    return ["--out", str(root / "runs"), "--results", str(root / "results")]


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    assert grid.main(MINI + dirs(root)) == 0
    rows = rows_of(root)
    assert len(rows) == 2 and all(status == "finished" for status, *_ in rows.values())
    return rows


@pytest.mark.slow
@pytest.mark.xdist_group("backends")  # one worker: the local rows are trained once
def test_a_slurm_grid_records_the_same_rows_as_the_local_one(local_rows, tmp_path):
    needs("submitit")
    done = subprocess.run(
        [sys.executable, "-m", "experiments.grid", *MINI, "--backend", "slurm", *dirs(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        rows_of(tmp_path) == local_rows
    )  # run ids and accuracies, to the last bit (CPU-deterministic)


@pytest.mark.slow
@pytest.mark.xdist_group("backends")
def test_a_ray_grid_whose_driver_is_killed_and_started_again_records_the_local_rows_once_each(
    local_rows, tmp_path
):
    needs("ray")
    argv = [sys.executable, "-m", "experiments.grid", *MINI, "--backend", "ray", *dirs(tmp_path)]
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 300
    while time.time() < deadline and not read_rows(tmp_path / "results" / "runs.csv"):
        time.sleep(0.2)
    os.killpg(
        proc.pid, signal.SIGKILL
    )  # the driver and the Ray instance it started, the second run in flight
    proc.wait()
    first = read_rows(tmp_path / "results" / "runs.csv")
    # killed once a row is recorded: the other run was killed part-way or (runs side by side) had finished
    # too; whichever, the restart finds exactly those recorded and trains the rest
    assert len(first) in (1, 2)
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(first)} already recorded" in done.stdout
    assert (
        rows_of(tmp_path) == local_rows
    )  # run ids and accuracies, to the last bit (CPU-deterministic)
    rows, epochs = (
        read_rows(tmp_path / "results" / "runs.csv"),
        read_rows(tmp_path / "results" / "epochs.csv"),
    )
    assert len(rows) == 2 and sorted((e["run_id"], e["epoch"]) for e in epochs) == sorted(
        (r["run_id"], str(k)) for r in rows for k in range(1, 3)
    )
