"""The grid runner and the report: a mini grid, a killed grid, the statistics."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import pytest

from experiments import grid, report
from experiments.ledger import read_rows
from experiments.stats import mean_ci, t_quantile_975

REPO = Path(__file__).resolve().parent.parent
MINI = ["--datasets", "synthetic", "--losses", "xent", "standalone", "--feat-dims", "2", "--seeds", "0", "1",
        "--train-size", "256", "--test-size", "100", "--batch-size", "64", "--no-progress"]


def grid_dirs(tmp_path):
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    return ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--imgs",
            str(tmp_path / "imgs"), "--readme", str(tmp_path / "README.md")]


def test_mini_grid_writes_rows_table_gifs_and_readme(tmp_path):
    assert grid.main(MINI + ["--epochs", "3"] + grid_dirs(tmp_path)) == 0
    rows = read_rows(tmp_path / "results" / "runs.csv")
    assert sorted((r["loss"], r["seed"]) for r in rows) == [("standalone", "0"), ("standalone", "1"),
                                                            ("xent", "0"), ("xent", "1")]
    assert all(r["status"] == "finished" and r["code_version"] and r["device"] for r in rows)
    assert len(read_rows(tmp_path / "results" / "epochs.csv")) == 4 * 3
    table = (tmp_path / "results" / "table.md").read_text()
    assert "| xent | synthetic | 2 |" in table and "| standalone | synthetic | 2 |" in table
    for loss in ("xent", "standalone"):
        for split in ("train", "val"):
            frames = iio.imread(tmp_path / "imgs" / f"{loss}-synthetic-feat=2" / f"{split}.gif", index=None)
            assert frames.shape[0] == 3  # one frame per epoch
    readme = (tmp_path / "README.md").read_text()
    assert "imgs/standalone-synthetic-feat=2/val.gif" in readme and table.strip() in readme
    # a second report changes nothing
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "runs" not in p.parts}
    report.main(["--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"),
                 "--imgs", str(tmp_path / "imgs"), "--readme", str(tmp_path / "README.md")])
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "runs" not in p.parts}
    assert before == after


def test_a_killed_grid_loses_nothing_and_repeats_nothing(tmp_path):
    argv = [sys.executable, "-m", "experiments.grid", *MINI, "--epochs", "4", *grid_dirs(tmp_path), "--no-report"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs_csv = tmp_path / "results" / "runs.csv"
    deadline = time.time() + 240
    while time.time() < deadline and len(read_rows(runs_csv)) < 1:
        time.sleep(0.2)
    time.sleep(1.0)  # now in the middle of the second run
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = read_rows(runs_csv)
    assert 1 <= len(first) < 4, "the grid should have been killed part-way"
    finished_mtimes = {r["run_id"]: (tmp_path / "runs" / r["run_id"] / "result.json").stat().st_mtime_ns
                       for r in first}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"{len(first)} already recorded" in done.stdout
    rows = read_rows(runs_csv)
    assert len(rows) == 4 and len({r["run_id"] for r in rows}) == 4
    for run_id, mtime in finished_mtimes.items():
        assert (tmp_path / "runs" / run_id / "result.json").stat().st_mtime_ns == mtime  # not retrained
    epochs = read_rows(tmp_path / "results" / "epochs.csv")
    assert sorted((e["run_id"], e["epoch"]) for e in epochs) == sorted(
        (r["run_id"], str(k)) for r in rows for k in range(1, 5))


def test_a_run_diverging_in_its_first_epoch_is_recorded_and_the_grid_goes_on(tmp_path):
    argv = ["--datasets", "synthetic", "--losses", "xent", "--feat-dims", "2", "--seeds", "0", "--epochs", "2",
            "--train-size", "256", "--test-size", "100", "--batch-size", "64", "--lr", "1e12", "--no-progress"]
    assert grid.main(argv + grid_dirs(tmp_path)) == 0
    [row] = read_rows(tmp_path / "results" / "runs.csv")
    assert (row["status"], row["diverged_epoch"], row["epochs_done"]) == ("diverged", "1", "0")
    assert read_rows(tmp_path / "results" / "epochs.csv") == []
    assert "1 diverged" in (tmp_path / "results" / "table.md").read_text()


def test_t_interval_by_hand():
    assert t_quantile_975(2) == 4.303
    assert t_quantile_975(60) == pytest.approx(2.0003, abs=1e-3)
    mean, half = mean_ci([0.90, 0.92, 0.94])
    assert mean == pytest.approx(0.92) and half == pytest.approx(4.303 * 0.02 / 3 ** 0.5)
    assert mean_ci([0.5]) == (0.5, None)


def hand_row(run_id, seed, best, final, status="finished", loss="cent"):
    return {"run_id": run_id, "group_id": f"{loss}-g", "status": status, "dataset": "fashion-mnist",
            "loss": loss, "feat_dim": "2", "seed": str(seed), "loss_options": '{"weight_cent": 1.0}',
            "epochs": "100", "batch_size": "128", "lr": "0.01", "train_size": "", "test_size": "",
            "best_test_acc": str(best), "final_test_acc": str(final), "device": "NVIDIA H100"}


def test_report_table_on_hand_made_rows():
    subset = {**hand_row("f", 0, 0.5, 0.5, loss="standalone"), "group_id": "sub", "train_size": "2048"}
    rows = [hand_row("a", 0, 0.90, 0.89), hand_row("b", 1, 0.92, 0.91), hand_row("c", 2, 0.94, 0.93),
            hand_row("d", 3, "", "", status="diverged"), hand_row("e", 0, 0.915, 0.91, loss="xent"), subset]
    table = report.table_markdown(rows)
    half = 4.303 * 0.02 / 3 ** 0.5
    assert (f"| cent | fashion-mnist | 2 | reference | 0.9200 ± {half:.4f} | 0.9100 ± {half:.4f} | 0.913 | +0.0070 | "
            "3 (+1 diverged) |") in table
    assert "| xent | fashion-mnist | 2 | reference | 0.9150 | 0.9100 | 0.913 | +0.0020 | 1 |" in table
    assert "| standalone | fashion-mnist | 2 | reference | 0.5000 | 0.5000 | 0.921 |  | 1 |" in table  # no diff
    assert table.index("| xent |") < table.index("| cent |")
    assert table.startswith("**6 runs recorded, 5 finished, 4 of them on the reference recipe.**")


def test_learning_curves_keep_every_group_apart_even_beyond_ten(tmp_path):
    rows, epochs = [], []
    for k in range(12):  # twelve groups in one panel: by center rule, lr, or only by batch size (the last two)
        row = {**hand_row(f"r{k}", 0, 0.9, 0.9), "group_id": f"g{k}", "protocol": "reference",
               "center_rule": "separate" if k == 1 else "joint", "lr": str(0.01 * min(k + 1, 11) if k > 1 else 0.01),
               "batch_size": str(64 if k == 11 else 128)}
        rows.append(row)
        epochs += [{"run_id": f"r{k}", "epoch": str(e), "test_acc": str(0.1 * e + 0.01 * k)} for e in (1, 2)]
    assert report.curve_label(rows[0], "test") != report.curve_label(rows[1], "test")
    [(key, panel)] = report.curve_panels(rows, epochs).items()
    assert key == ("fashion-mnist", "2") and len(panel) == 12
    assert panel["cent separate [weight_cent=1] (100 ep, full, reference test)"][1] == pytest.approx([0.11, 0.21])
    [path] = report.learning_curves(rows, epochs, tmp_path)
    assert path == tmp_path / "curves" / "fashion-mnist-feat=2.png"
    assert iio.imread(path).shape[1] > 500


def test_the_center_rule_is_shown_only_where_the_loss_has_learnable_centers():
    def row(loss, options):
        return {"loss": loss, "feat_dim": "128", "loss_options": options, "center_rule": "separate"}
    assert report.centers_of(row("xent", "{}")) == "—"
    assert report.centers_of(row("cent", '{"weight_cent": 1.0}')) == "separate"
    assert report.centers_of(row("center-radius", '{"fixed_centers": false}')) == "separate"
    assert report.centers_of(row("center-radius", '{"fixed_centers": true}')) == "—"
