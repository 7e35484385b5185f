"""The grid runner: a mini grid, outputs that follow the ledger, a killed grid, a budget, SIGTERM."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import pandas as pd
import pytest

from experiments import grid, report
from experiments.ledger.rows import read_rows
from experiments.report import figures
from experiments.report.rows import centers_of
from experiments.runners.presets import PRESETS
from tests.conftest import sigint_default

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
    "1",
    "--train-size",
    "128",
    "--test-size",
    "50",
    "--batch-size",
    "32",
    "--no-progress",
]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def grid_dirs(tmp_path, readme=True):
    dirs = ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    if readme:
        shutil.copy(REPO / "README.md", tmp_path / "README.md")
        dirs += ["--imgs", str(tmp_path / "imgs"), "--readme", str(tmp_path / "README.md")]
    return dirs


@pytest.mark.slow
def test_mini_grid_writes_rows_table_gifs_and_readme(tmp_path):
    assert grid.main(MINI + ["--epochs", "2"] + grid_dirs(tmp_path)) == 0
    rows = read_rows(tmp_path / "results" / "runs.csv")
    assert sorted((r["loss"], r["seed"]) for r in rows) == [
        ("standalone", "0"),
        ("standalone", "1"),
        ("xent", "0"),
        ("xent", "1"),
    ]
    assert all(r["status"] == "finished" and r["code_version"] and r["device"] for r in rows)
    assert len(read_rows(tmp_path / "results" / "epochs.csv")) == 4 * 2
    table = (tmp_path / "results" / "table.md").read_text()
    assert (
        "| xent | synthetic | 2 | epochs=2, batch_size=32, train_size=128, test_size=50 |" in table
    )
    assert f"`{tmp_path / 'results' / 'runs.csv'}`" in table  # the ledger it was made from
    for loss in ("xent", "standalone"):
        for split in ("train", "test"):
            frames = iio.imread(
                tmp_path / "imgs" / f"{loss}-synthetic-feat=2" / f"{split}.gif", index=None
            )
            assert (
                frames.shape[0] == 4
            )  # one frame per epoch, and two within the first (4 steps: 1/4, 1/2)
    assert (
        "test: ![](../imgs/standalone-synthetic-feat=2/test.gif)" in table
    )  # every run's own pictures
    readme = (tmp_path / "README.md").read_text()
    assert (
        "![](imgs/composite/synthetic-feat=2.gif) ![](imgs/composite/synthetic-feat=2.png)"
        in readme
    )
    assert (
        len(iio.imread(tmp_path / "imgs" / "composite" / "synthetic-feat=2.gif", index=None)) == 4
    )
    # every picture the README shows exists
    images = re.findall(r"!\[\]\(([^)]+)\)", readme)
    assert len(images) >= 3 and all((tmp_path / p).is_file() for p in images), images
    # the compact frames the composite is drawn from are in the ledger folder
    assert sorted(p.name for p in (tmp_path / "results" / "frames").iterdir()) == sorted(
        f"{r['run_id']}.pt" for r in rows if r["seed"] == "0"
    )
    # a second report changes nothing
    before = {
        p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "runs" not in p.parts
    }
    report.main(
        [
            "--results",
            str(tmp_path / "results"),
            "--runs",
            str(tmp_path / "runs"),
            "--imgs",
            str(tmp_path / "imgs"),
            "--readme",
            str(tmp_path / "README.md"),
        ]
    )
    after = {
        p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "runs" not in p.parts
    }
    assert before == after


@pytest.mark.slow
def test_another_ledger_keeps_its_outputs_and_leaves_the_readme_alone(tmp_path, capsys):
    readme, imgs = (REPO / "README.md").read_bytes(), sorted((REPO / "imgs").rglob("*"))
    argv = MINI + [
        "--epochs",
        "1",
        "--seeds",
        "0",
        "--losses",
        "xent",
        "--out",
        str(tmp_path / "runs"),
        "--results",
        str(tmp_path / "mine"),
    ]
    assert grid.main(argv) == 0
    assert (REPO / "README.md").read_bytes() == readme and sorted(
        (REPO / "imgs").rglob("*")
    ) == imgs
    assert (tmp_path / "mine" / "imgs" / "xent-synthetic-feat=2" / "train.gif").exists()
    out = capsys.readouterr().out
    assert (
        re.search(r"^xent +synthetic +2 ", out, re.M) and "README untouched" in out
    )  # the table is printed at the end
    assert report.Outputs.for_ledger(Path("results")) == report.Outputs(
        Path("results"), Path("imgs"), Path("README.md")
    )


def test_the_quick_preset_trains_into_its_own_untracked_ledger():
    args = grid.parse_args(["--preset", "quick"])
    assert args.results == Path("results/quick") and args.epochs == 3
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/quick/runs.csv"], cwd=REPO)
    assert ignored.returncode == 0
    assert grid.parse_args(["--preset", "paper"]).results == Path("results")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_field_a_preset_sets_reaches_its_runs_and_a_flag_still_wins(name):
    """A preset's recipe was read only for epochs and the sizes: the family's protocol and the CPU study's lr
    patience were silently the reference's."""
    recipe = grid.grid_spec(grid.parse_args(["--preset", name])).recipe
    for key, value in PRESETS[name]["recipe"].items():
        assert recipe[key] == value, key
    assert (
        grid.grid_spec(grid.parse_args(["--preset", "family", "--protocol", "fair"])).recipe[
            "protocol"
        ]
        == "fair"
    )
    assert (
        grid.grid_spec(grid.parse_args(["--preset", "cpu-study", "--lr-patience", "3"])).recipe[
            "lr_patience"
        ]
        == 3
    )


@pytest.mark.parametrize(
    "make_bad, message",
    [
        (
            lambda t: (t / "file").write_text("x") and ["--results", str(t / "file" / "results")],
            "cannot write there",
        ),
        (lambda t: ["--readme", str(t / "NOPE.md")], "NOPE.md: no such README"),
    ],
)
def test_bad_output_locations_are_found_before_training(tmp_path, capsys, make_bad, message):
    argv = MINI + [
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "runs"),
        "--results",
        str(tmp_path / "results"),
    ]
    assert grid.main(argv + make_bad(tmp_path)) == 2
    err = capsys.readouterr().err
    assert message in err and "nothing was trained" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # the checks made it, and it was left behind


def test_a_grid_with_no_usable_dataset_says_why_and_fails(tmp_path, capsys):
    from tests.idx_files import write_tiny_mnist

    write_tiny_mnist(tmp_path / "data")  # present, but not the real files
    argv = [
        "--datasets",
        "fashion-mnist",
        "--data-root",
        str(tmp_path / "data"),
        "--no-progress",
        "--out",
        str(tmp_path / "runs"),
        "--results",
        str(tmp_path / "results"),
        "--yes",  # the paper preset's days on a CPU are not the point here
    ]
    assert grid.main(argv) == 1
    err = capsys.readouterr().err
    assert (
        "train-images-idx3-ubyte: 15696 bytes, expected 47040016 (truncated or wrong file)" in err
    )
    assert "missing" not in err and "no dataset can be used" in err


def test_negative_seeds_are_rejected(capsys):
    with pytest.raises(SystemExit) as e:
        grid.parse_args(["--seeds", "-1"])
    assert e.value.code == 2 and "'-1' must be a whole number, 0 or more" in capsys.readouterr().err


def wait_for(predicate, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline and not predicate():
        time.sleep(0.1)
    assert predicate(), "timed out"


@pytest.mark.slow
def test_a_killed_grid_loses_nothing_and_repeats_nothing(tmp_path):
    argv = [
        sys.executable,
        "-m",
        "experiments.grid",
        *MINI,
        "--epochs",
        "3",
        *grid_dirs(tmp_path),
        "--no-report",
    ]
    proc = subprocess.Popen(
        argv, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    runs_csv = tmp_path / "results" / "runs.csv"
    # killed once the first run is recorded and the second has finished an epoch: in the middle of it
    wait_for(
        lambda: (
            len(read_rows(runs_csv)) >= 1
            and len(list((tmp_path / "runs").glob("*/metrics.csv"))) >= 2
        )
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = read_rows(runs_csv)
    assert 1 <= len(first) < 4, "the grid should have been killed part-way"
    finished_mtimes = {
        r["run_id"]: (tmp_path / "runs" / r["run_id"] / "result.json").stat().st_mtime_ns
        for r in first
    }
    done = subprocess.run(argv, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"{len(first)} already recorded" in done.stdout
    rows = read_rows(runs_csv)
    assert len(rows) == 4 and len({r["run_id"] for r in rows}) == 4
    for run_id, mtime in finished_mtimes.items():
        assert (
            tmp_path / "runs" / run_id / "result.json"
        ).stat().st_mtime_ns == mtime  # not retrained
    epochs = read_rows(tmp_path / "results" / "epochs.csv")
    assert sorted((e["run_id"], e["epoch"]) for e in epochs) == sorted(
        (r["run_id"], str(k)) for r in rows for k in range(1, 4)
    )
    again = subprocess.run(
        argv + ["--dry-run"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600
    )  # no estimate of nothing ("about 0 s on this device ()")
    assert (
        again.stdout.splitlines()[-1]
        == "grid: every planned run is recorded already: nothing to train"
    )


ONE = [
    "--datasets",
    "synthetic",
    "--losses",
    "standalone",
    "--feat-dims",
    "2",
    "--seeds",
    "0",
    "--epochs",
    "6",
    "--train-size",
    "128",
    "--test-size",
    "50",
    "--batch-size",
    "32",
    "--no-progress",
    "--no-report",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The row of ONE trained without a stop, in a process of its own as the stopped runs are (a fresh
    process: no state another test left in this one)."""
    root = tmp_path_factory.mktemp("whole")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.grid",
            *ONE,
            "--out",
            str(root / "runs"),
            "--results",
            str(root / "results"),
        ],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    [row] = read_rows(root / "results" / "runs.csv")
    return row


@pytest.mark.slow
@pytest.mark.xdist_group("stopped-grid")  # one worker: the uninterrupted row is trained once
@pytest.mark.parametrize("how", ["SIGTERM", "budget"])
def test_a_stopped_grid_checkpoints_and_resumes_to_the_uninterrupted_result(
    tmp_path, how, uninterrupted
):
    one = ONE
    stopped_dirs = ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    argv = [sys.executable, "-m", "experiments.grid", *one, *stopped_dirs]
    if how == "budget":  # 1.2 s: the run starts at once (no estimate yet) and is stopped part-way
        done = subprocess.run(
            argv + ["--max-minutes", "0.02"],
            cwd=REPO,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=600,
        )
    else:
        proc = subprocess.Popen(
            argv, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        wait_for(lambda: any((tmp_path / "runs").glob("*/metrics.csv")))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=600)
        done = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    assert done.returncode == 0, done.stderr
    assert "with 1 runs left" in done.stdout
    [run_dir] = [
        p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")
    ]  # not .claims
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "result.json").exists()
    assert read_rows(tmp_path / "results" / "runs.csv") == []
    resumed = subprocess.run(argv, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0 and "resuming after epoch" in resumed.stdout + resumed.stderr
    [stopped_row] = read_rows(tmp_path / "results" / "runs.csv")
    whole_row = uninterrupted
    assert stopped_row["final_test_acc"] == whole_row["final_test_acc"]
    assert stopped_row["final_map_at_r"] == whole_row["final_map_at_r"]


@pytest.mark.slow
def test_ctrl_c_stops_the_grid_with_one_line(tmp_path):
    argv = [
        sys.executable,
        "-m",
        "experiments.grid",
        *MINI,
        "--epochs",
        "50",
        *grid_dirs(tmp_path, readme=False),
        "--no-report",
    ]
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
    )
    wait_for(lambda: any((tmp_path / "runs").glob("*/checkpoint.pt")))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1].startswith("interrupted: 0 runs recorded, 4 left")
    assert "Traceback" not in err


def test_a_run_diverging_in_its_first_epoch_is_recorded_and_the_grid_goes_on(tmp_path):
    argv = [
        "--datasets",
        "synthetic",
        "--losses",
        "xent",
        "--feat-dims",
        "2",
        "--seeds",
        "0",
        "--epochs",
        "2",
        "--train-size",
        "256",
        "--test-size",
        "100",
        "--batch-size",
        "64",
        "--lr",
        "1e12",
        "--no-progress",
    ]
    assert grid.main(argv + grid_dirs(tmp_path)) == 0
    [row] = read_rows(tmp_path / "results" / "runs.csv")
    assert (row["status"], row["diverged_epoch"], row["epochs_done"]) == ("diverged", "1", "0")
    assert row["device"].startswith("cpu (")
    assert read_rows(tmp_path / "results" / "epochs.csv") == []
    [line] = [
        x
        for x in (tmp_path / "results" / "table.md").read_text().splitlines()
        if "| xent | synthetic |" in x
    ]
    assert (
        "| 0/1, 1 diverged | cpu (" in line
    )  # the device of a group with no finished run is still shown


def test_learning_curves_keep_every_group_apart_even_beyond_ten(tmp_path):
    from tests.test_report import ledger, ledger_row

    rows = [ledger_row("cent", lr=0.01 * (k + 1)) for k in range(11)]
    rows.append(ledger_row("cent", batch_size=64))
    df = ledger(tmp_path, rows)
    epochs = pd.DataFrame(
        [
            {"run_id": r["run_id"], "epoch": e, "test_acc": 0.1 * e + 0.01 * k}
            for k, r in enumerate(rows)
            for e in (1, 2)
        ]
    )
    [(key, panel)] = figures.curve_panels(df, epochs).items()
    assert key == ("mnist", 2, "test") and len(panel) == 12
    assert panel["cent [lr=0.02]"][1][1] == pytest.approx([0.11, 0.21])
    paths = figures.learning_curves(df, epochs, tmp_path)  # 12 lines: two pictures of 6
    assert paths == [tmp_path / "curves" / f"mnist-feat=2-test-{k}.png" for k in (1, 2)]
    assert all(iio.imread(path).shape[1] > 500 for path in paths)


def test_the_center_rule_is_shown_only_where_the_loss_has_learnable_centers():
    def row(loss, options):
        return {"loss": loss, "feat_dim": "128", "loss_options": options, "center_rule": "separate"}

    assert centers_of(row("xent", "{}")) == "—"
    assert centers_of(row("cent", '{"weight_cent": 1.0}')) == "separate"
    assert centers_of(row("center-radius", '{"fixed_centers": false}')) == "separate"
    assert centers_of(row("center-radius", '{"fixed_centers": true}')) == "—"


def test_every_refusal_leaves_no_folder_its_checks_made(tmp_path, capsys, monkeypatch):
    """A refusal left the folders the output checks had made: nested ones (only the last level was
    recorded), and all of them after a refusal that came later (a run of hours off a terminal)."""
    (tmp_path / "afile").write_text("x")
    nested = ["--results", str(tmp_path / "a" / "b" / "c"), "--out", str(tmp_path / "afile" / "r")]
    assert grid.main(MINI + ["--epochs", "1"] + nested) == 2
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    late = ["--results", str(tmp_path / "res"), "--out", str(tmp_path / "x" / "runs")]
    assert grid.main(MINI + ["--epochs", "100000"] + late) == 2  # days on a CPU, no --yes
    err = capsys.readouterr().err
    assert err.count("nothing was trained") == 2, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_grid_that_writes_keeps_its_folders(tmp_path):
    from experiments.cli.folders import removed_if_empty

    with removed_if_empty([tmp_path / "a" / "b", tmp_path / "c" / "d"]):
        (tmp_path / "a" / "b").mkdir(parents=True)
        (tmp_path / "a" / "b" / "row.csv").write_text("x")
        (tmp_path / "c" / "d" / "e").mkdir(parents=True)
    assert (tmp_path / "a" / "b" / "row.csv").exists() and not (tmp_path / "c").exists()
