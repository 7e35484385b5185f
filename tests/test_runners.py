"""Any number of runners on one ledger: rows recorded under a lock, each run trained by one runner."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from experiments.ledger import claims
from experiments.ledger.claims import Claim
from experiments.ledger.rows import read_rows

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_two_processes_recording_at_once_lose_no_row(tmp_path):
    writer = textwrap.dedent("""
        import sys
        from experiments.engine.config import RunConfig
        from experiments.ledger.rows import failed_row, record
        for seed in range(int(sys.argv[2]), int(sys.argv[2]) + 60):
            cfg = RunConfig(dataset="synthetic", loss="xent", seed=seed)
            record(sys.argv[1], failed_row(cfg.to_dict(), cfg.run_id, "x", "cpu"), [{"epoch": 1}])
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", writer, str(tmp_path), str(start)], cwd=REPO)
        for start in (0, 1000)
    ]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    rows = read_rows(tmp_path / "runs.csv")
    assert len(rows) == 120 and len({r["run_id"] for r in rows}) == 120
    assert len(read_rows(tmp_path / "epochs.csv")) == 120


def test_a_claim_is_refused_while_its_holder_lives_and_taken_over_when_it_is_gone(tmp_path):
    first, second = Claim(tmp_path, "run-a"), Claim(tmp_path, "run-a")
    assert first.take()
    assert not second.take() and second.describe_holder() == f"{socket.gethostname()}:{os.getpid()}"
    first.release()
    assert not first.path.exists() and second.take()
    second.release()
    # a holder whose process is gone on this host
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    first.path.write_text(
        json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "token": "old"})
    )
    assert second.take()
    second.release()
    # a holder on another host that stopped refreshing its claim 5 minutes ago
    first.path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "old"}))
    assert not second.take()
    old = time.time() - claims.STALE_S - 1
    os.utime(first.path, (old, old))
    assert second.take()
    second.release()


def test_a_claim_is_refreshed_while_held_and_never_after_a_takeover(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "REFRESH_S", 0.05)
    claim = Claim(tmp_path, "run-b")
    assert claim.take()
    old = time.time() - 100
    os.utime(claim.path, (old, old))
    deadline = (
        time.time() + 30
    )  # refreshed every 0.05 s: polled, so that a busy machine only waits longer
    while time.time() - claim.path.stat().st_mtime > 5 and time.time() < deadline:
        time.sleep(0.05)
    assert time.time() - claim.path.stat().st_mtime < 5  # refreshed
    claim.path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "theirs"}))
    os.utime(claim.path, (old, old))
    claim._refresher.join(timeout=30)  # it reads the file, sees the takeover and ends
    assert not claim._refresher.is_alive()
    assert time.time() - claim.path.stat().st_mtime > 50  # not ours any more: left alone
    claim.release()
    assert claim.path.exists()  # and not deleted either


@pytest.mark.slow
def test_two_grids_on_one_folder_train_each_run_once_and_record_every_row(tmp_path):
    args = [
        sys.executable,
        "-m",
        "experiments.grid",
        "--datasets",
        "synthetic",
        "--losses",
        "xent",
        "standalone",
        "--feat-dims",
        "2",
        "--seeds",
        "0",
        "1",
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
        "--runs-per-gpu",
        "1",
        "--cpus-per-run",
        "1",
        "--out",
        str(tmp_path / "runs"),
        "--results",
        str(tmp_path / "results"),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    rows = read_rows(tmp_path / "results" / "runs.csv")
    assert len(rows) == 4 and len({r["run_id"] for r in rows}) == 4
    assert all(r["status"] == "finished" for r in rows)
    for r in rows:  # one TensorBoard event file per run: trained once
        assert len(list((tmp_path / "runs" / r["run_id"] / "tensorboard").glob("events.*"))) == 1, (
            r["run_id"]
        )
    assert not list((tmp_path / "runs" / ".claims").glob("*.json"))  # every claim given back
