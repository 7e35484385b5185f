"""The research loop never loses work or trains twice: a live runner keeps its claim, a runner whose claim was
taken records nothing, a sweep sweeps only what a run reads, and times keep their zone."""

import json
import os
import time

import pytest

from experiments import grid
from experiments.cli.recipe import run_settings
from experiments.ledger import claims
from experiments.ledger.claims import Claim
from experiments.ledger.rows import mark_superseded, now, read_rows, recorded
from experiments.runners import backends
from experiments.runners.sweep import plan

ONE = [
    "--datasets",
    "synthetic",
    "--losses",
    "xent",
    "--feat-dims",
    "2",
    "--seeds",
    "0",
    "--epochs",
    "3",
    "--train-size",
    "256",
    "--test-size",
    "100",
    "--batch-size",
    "64",
    "--no-progress",
    "--no-report",
]


def test_a_live_holder_on_this_host_keeps_its_claim_however_long_it_was_paused(tmp_path):
    paused, other = Claim(tmp_path, "run-a"), Claim(tmp_path, "run-a")
    assert paused.take()
    old = (
        time.time() - claims.STALE_S - 1
    )  # not refreshed for over 5 minutes: Ctrl-Z, a suspended job
    os.utime(paused.path, (old, old))
    assert not other.take() and other.holder["pid"] == os.getpid()
    assert paused.held()
    paused.release()
    # on another host, age decides
    paused.path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "theirs"}))
    os.utime(paused.path, (old, old))
    assert other.take() and other.held()
    other.release()


def test_a_runner_whose_claim_was_taken_stops_before_its_next_epoch_and_records_nothing(
    tmp_path, monkeypatch
):
    args = grid.parse_args(
        ONE + ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    )
    [cfg] = plan(grid.grid_spec(args))
    asked = []

    def held(
        self,
    ):  # the claim is taken over (by a runner on another host) once the first epoch is done
        asked.append(1)
        if len(asked) == 1:
            self.path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "theirs"}))
        return Claim.held.__wrapped__(self)

    held.__wrapped__ = Claim.held
    monkeypatch.setattr(Claim, "held", held)
    stop = backends.Stop(tmp_path / "no-stop", None)
    outcome = backends.train_run(cfg, run_settings(args, args.results), None, stop, None)
    assert outcome.skipped is not None and "claim was taken over after epoch 1" in outcome.skipped
    assert read_rows(tmp_path / "results" / "runs.csv") == []
    metrics = (tmp_path / "runs" / cfg.run_id / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 2  # header and epoch 1: it stopped before the next epoch
    assert (
        json.loads((tmp_path / "runs" / ".claims" / f"{cfg.run_id}.json").read_text())["token"]
        == "theirs"
    )


def test_a_sweep_only_sweeps_what_a_run_reads(tmp_path, capsys):
    dirs = ["--dry-run", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "o")]
    lrs, alphas = ["--center-lr", "0.1", "0.5"], ["--center-alpha", "0.2", "0.5"]
    with pytest.raises(
        SystemExit
    ):  # xent reads neither: no axis at all, and said so (it planned 4 runs once)
        grid.main(ONE[:-2] + lrs + alphas + dirs)
    assert "--center-lr is read by no run here" in capsys.readouterr().err
    separate = ONE[:-2] + ["--losses", "xent", "cent", "--center-rule", "separate"]
    assert grid.main(separate + lrs + dirs) == 0
    out = capsys.readouterr().out
    assert (
        "grid: 3 runs planned" in out and out.count("center_lr=0.1") == 1
    )  # xent once, cent twice
    with pytest.raises(SystemExit):  # the alpha is read under wen only
        grid.main(separate + lrs + alphas + dirs)
    assert "--center-alpha is read by no run here" in capsys.readouterr().err


def test_rows_are_ordered_by_when_they_were_recorded_whatever_the_zone():
    a = {"run_id": "r", "code_fingerprint": "new", "recorded_at": "2026-11-29T10:00:00+00:00"}
    b = {
        "run_id": "r",
        "code_fingerprint": "old",
        "recorded_at": "2026-11-29T11:00:00+05:00",
    }  # 06:00 UTC
    runs = mark_superseded([a, b])
    assert a["superseded_by"] == "" and b["superseded_by"] == "new"
    assert (
        recorded({"recorded_at": "2026-11-29T11:00:00"}).tzinfo is not None
    )  # older rows: local time
    assert now().endswith("+00:00") and len(runs) == 2  # rows are recorded in UTC, with the offset


@pytest.mark.slow
def test_a_paused_runner_and_a_second_grid_train_each_run_once(tmp_path):
    """Two grids on one folder while the first holds a run: the second skips it, however old the claim."""
    dirs = ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    args = grid.parse_args(ONE + dirs)
    [cfg] = plan(grid.grid_spec(args))
    holder = Claim(tmp_path / "runs", cfg.run_id)
    assert holder.take()
    old = time.time() - 3600
    os.utime(holder.path, (old, old))  # this process holds it, paused for an hour
    assert grid.main(ONE + dirs) == 0
    assert read_rows(tmp_path / "results" / "runs.csv") == []
    holder.release()
    assert grid.main(ONE + dirs) == 0 and len(read_rows(tmp_path / "results" / "runs.csv")) == 1


def test_a_dry_run_says_what_max_minutes_does_to_the_grid(tmp_path, capsys):
    dirs = ["--dry-run", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "o")]
    assert grid.main(ONE + dirs + ["--max-minutes", "600"]) == 0
    assert "grid: the estimate fits in --max-minutes 600" in capsys.readouterr().out
    assert grid.main(ONE + dirs + ["--max-minutes", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "the estimate is over --max-minutes 0.001" in out and "resumes the rest" in out
    assert grid.main(ONE + dirs) == 0  # without the flag, no budget line
    assert "--max-minutes" not in capsys.readouterr().out


def test_an_unreadable_checkpoint_is_named_with_its_fix_and_the_grid_exits_non_zero(
    tmp_path, capsys
):
    from experiments import train

    dirs = ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    [cfg] = plan(grid.grid_spec(grid.parse_args(ONE + dirs)))
    run_dir = tmp_path / "runs" / cfg.run_id
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.pt").write_bytes(b"PK\x03\x04 cut short")  # a copy cut short
    assert grid.main(ONE + dirs) == 1  # it was 0: a grid whose every run failed succeeded
    err = capsys.readouterr().err
    assert f"the checkpoint {run_dir / 'checkpoint.pt'} cannot be read" in err
    assert f"delete the folder {run_dir}" in err and "1 of 1 run failed" in err
    [row] = read_rows(tmp_path / "results" / "runs.csv")
    assert row["status"] == "failed" and "cannot be read" in row["error"]
    argv = (
        "--dataset synthetic --loss xent --feat-dim 2 --epochs 3 --train-size 256 --test-size 100"
    )
    argv = argv.split() + ["--batch-size", "64", "--no-progress", "--out", str(tmp_path / "runs")]
    assert train.run_config(train.parse_args(argv)).run_id == cfg.run_id
    assert train.main(argv) == 2  # it was a traceback
    said = capsys.readouterr()
    assert f"run {cfg.run_id}: the checkpoint" in said.err and "epochs to train" not in said.out
    import torch

    torch.save(
        {"epoch": 1}, run_dir / "checkpoint.pt"
    )  # loads, but no run's checkpoint: a KeyError
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert "is no checkpoint of this suite's runs (it lacks best_state, center_rule," in err
    assert f"delete the folder {run_dir}" in err


def test_a_dry_run_says_which_dataset_is_not_ready_and_what_a_real_run_does_with_it(
    tmp_path, monkeypatch, capsys
):
    argv = ONE[:1] + ["mnist"] + ONE[2:] + ["--dry-run", "--out", str(tmp_path / "o")]
    own = tmp_path / "own"
    assert grid.main(argv + ["--data-root", str(own)]) == 0
    out = (
        capsys.readouterr().out
    )  # it said "not in ... yet: mnist (a real run fetches what it can)"
    assert (
        f"grid: mnist is not ready in {own} ({own}/MNIST/raw/train-images-idx3-ubyte: missing"
        in out
    )
    assert (
        f"a real run skips it (a run never writes a root of your own: ./suite data fetch mnist --data-root {own} fills it)"
        in out
    )
    assert "to train" not in out  # it counted and estimated the runs a real run skips
    assert out.strip().endswith(
        "grid: nothing here that a real run could train (the lines above say why)"
    )
    monkeypatch.setenv("SUITE_DATA", str(tmp_path / "default"))  # the default root: fetched into
    assert grid.main(argv) == 0
    out = capsys.readouterr().out
    assert "mnist-d2-s0" in out and "a real run fetches it" in out and "grid: 1 run to train" in out
    raw = tmp_path / "default" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\0" * 1000)  # cut short: never replaced unasked
    assert grid.main(argv) == 0
    out = capsys.readouterr().out
    assert (
        "a real run skips it (a bad file is never replaced unasked: ./suite data fetch mnist" in out
    )
    assert "to train" not in out


def test_a_ctrl_c_while_the_grid_builds_its_report_keeps_the_runs_and_says_how_to_build_it(
    tmp_path, monkeypatch, capsys
):
    from experiments import report

    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "build", interrupted)
    argv = [a for a in ONE if a != "--no-report"]
    argv[argv.index("--epochs") + 1] = "1"
    results = tmp_path / "r"
    dirs = ["--results", str(results), "--out", str(tmp_path / "o"), "--imgs", str(tmp_path / "i")]
    assert grid.main(argv + dirs) == 130  # it was a traceback from the report's pandas
    runs, imgs = (tmp_path / "o").resolve(), (tmp_path / "i").resolve()
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"interrupted (Ctrl-C) while building the report: the runs are recorded in {results.resolve()}; "
        f"./suite report --results {results.resolve()} --runs {runs} --imgs {imgs} builds it"
    )
    assert [r["status"] for r in read_rows(results / "runs.csv")] == ["finished"]
