"""The first hour: refusals come before torch loads, long work is announced and asked for, messages are
true, the terminal output fits (issue 37)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import says as conftest_says

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ("train", "grid", "tune", "data", "bundle", "bench", "gpu_check", "slot", "report")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_and_a_refusal_load_no_torch(command):
    """What makes a refusal instant: the flags are parsed and refused before torch (seconds to import on a CPU
    machine) is loaded; the time itself is the bench's to measure, not a test's."""
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['x', {'--help'!r} if sys.argv[1] == 'help' else '--no-such-flag']\n"
        "try:\n"
        f"    runpy.run_module('experiments.{command}', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "print('torch' in sys.modules, code)\n"
    )
    for mode, expected in (("help", 0), ("refuse", 2)):
        done = subprocess.run(
            [sys.executable, "-c", probe, mode], cwd=REPO, capture_output=True, text=True
        )
        assert done.stdout.strip().splitlines()[-1] == f"False {expected}", (
            mode,
            done.stderr[-300:],
        )


@pytest.mark.parametrize(
    "selector, says",
    [
        ("loss=nothing", ["'loss=nothing'", "no loss 'nothing'", "standalone"]),
        ("colour=red", ["'colour=red' is not FIELD=VALUE", "weight_inter"]),
        ("model=vgg", ["no model 'vgg'", "lenet++"]),
        ("loss=xent,stale=maybe", ["stale is true", "or false"]),
        ("feat_dim=abc", ["'abc' is not a whole number"]),
        ("loss=xent,lr=-1", ["'lr=-1'", "positive"]),
    ],
)
def test_report_compare_refuses_a_bad_selector_before_loading_the_ledger(selector, says, tmp_path):
    """A selector at fault is refused in one line before pandas, torch or the ledger are read (the
    ledger here does not even exist: the selector is what the message is about)."""
    probe = (
        "import sys\n"
        "from experiments.report import command\n"
        "code = command.main(sys.argv[1:])\n"
        "print('torch' in sys.modules, 'pandas' in sys.modules, code)\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            "--results",
            str(tmp_path),
            "--compare",
            selector,
            "loss=xent",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "False False 2", done.stderr[-300:]
    assert done.stderr.count("\n") == 1 and all(s in done.stderr for s in says), done.stderr


def test_a_report_of_a_ledger_that_is_not_there_makes_no_folder(tmp_path, capsys):
    """`report --results missing/` said there were no runs but left missing/imgs/ behind."""
    from experiments.report import command

    missing = tmp_path / "missing"
    assert command.main(["--results", str(missing)]) == 1
    assert not missing.exists()
    conftest_says(capsys.readouterr().err, str(missing / "runs.csv"), "./suite grid")


def test_train_refuses_an_unknown_loss_in_one_line_naming_the_choices():
    done = subprocess.run(
        [sys.executable, "-m", "experiments.train", "--loss", "nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "nope" in done.stderr and "standalone" in done.stderr


@pytest.mark.slow
def test_a_grid_of_days_on_a_cpu_off_a_terminal_refuses_naming_its_estimate_and_yes(tmp_path):
    env = {**os.environ, "SUITE_DEVICE": "cpu"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.grid",
            "--lr",
            "0.1",
            "0.2",
            "--epochs",
            "100",
            "--out",
            str(tmp_path / "runs"),
            "--results",
            str(tmp_path / "results"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "--yes" in done.stderr and " h " in done.stderr  # hours, named
    assert "runs to train, about" in done.stdout
    assert not (tmp_path / "runs").exists() or not any(
        (tmp_path / "runs").iterdir()
    )  # nothing trained


def test_a_train_of_hours_on_a_cpu_off_a_terminal_refuses_naming_its_estimate_and_yes(tmp_path):
    """Before: the README's first train command (100 epochs of Fashion-MNIST, hours on a CPU) started at once,
    unannounced. The estimate is said, then the refusal; --yes would train (not run here)."""
    done = subprocess.run(
        [sys.executable, "-m", "experiments.train", "--dataset", "synthetic", "--epochs", "20000"]
        + ["--out", str(tmp_path / "runs")],
        cwd=REPO,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "SUITE_DEVICE": "cpu"},
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "--yes" in done.stderr and " h " in done.stderr and "nothing was trained" in done.stderr
    assert "20000 of 20000 epochs to train, about" in done.stdout
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_tune_of_hours_on_a_cpu_off_a_terminal_refuses_naming_its_estimate_and_yes(tmp_path):
    pytest.importorskip("optuna")
    base = [sys.executable, "-m", "experiments.tune", "--datasets", "synthetic", "--trials", "5000"]
    base += ["--train-size", "1000", "--val-size", "500"]
    base += ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    env = {**os.environ, "SUITE_DEVICE": "cpu"}
    done = subprocess.run(
        base, cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "--yes" in done.stderr and " h " in done.stderr and "nothing was run" in done.stderr
    assert "x 5000 trials, about" in done.stdout
    assert not (tmp_path / "results" / "tune").exists() or not any(
        (tmp_path / "results" / "tune").iterdir()
    )  # no study journal written


def test_the_estimate_of_an_unrecorded_kind_comes_from_a_threads_rate():
    from experiments.engine.config import RunConfig
    from experiments.runners.plan import grid_estimate, rate_seconds

    cfg = RunConfig(dataset="fashion-mnist", loss="xent", epochs=10, train_size=20000)
    longer = RunConfig(dataset="fashion-mnist", loss="xent", epochs=20, train_size=20000)
    assert rate_seconds(longer, 1) > rate_seconds(cfg, 1) > rate_seconds(cfg, 2)
    seconds, how = grid_estimate(
        [cfg, cfg], [], Path("nowhere"), "cpu (1 thread, AVX2, oneDNN avx2)", 1, 2
    )
    assert seconds == pytest.approx(rate_seconds(cfg, 1)) and "rate" in how  # two runs side by side
    assert (
        grid_estimate([cfg], [], Path("nowhere"), "NVIDIA H200", 1, 1)[0] is None
    )  # no rate for a GPU


def test_the_estimate_counts_no_epoch_of_a_checkpoint_made_by_other_code(tmp_path):
    """A run directory trained by other code is set aside and trained afresh (engine/records.py), so its
    epochs are still to train: the estimate said 0 s for such runs."""
    from experiments.engine.config import RunConfig
    from experiments.ledger.fingerprint import code_fingerprint
    from experiments.runners.plan import grid_estimate, rate_seconds

    cfg = RunConfig(dataset="fashion-mnist", loss="xent", epochs=4, train_size=6144)
    run_dir = tmp_path / cfg.run_id
    run_dir.mkdir()
    (run_dir / "metrics.csv").write_text("epoch,loss\n1,2.0\n2,1.0\n3,0.5\n4,0.4\n")
    label = "cpu (1 thread, AVX2, oneDNN avx2)"
    for trained_by, left in (("0123456789ab", 4), (code_fingerprint("xent", "resnet"), 0)):
        (run_dir / "config.json").write_text(json.dumps({"code_fingerprint": trained_by}))
        seconds, _ = grid_estimate([cfg], [], tmp_path, label, 1, 1)
        assert seconds == pytest.approx(rate_seconds(cfg, 1) * left / 4), trained_by


def test_a_ctrl_c_before_the_first_epoch_ends_says_nothing_was_kept():
    from experiments.engine.trainer import RunInterrupted

    assert "nothing was kept" in str(RunInterrupted("r", 0)) and "checkpoint" not in str(
        RunInterrupted("r", 0)
    )
    assert "after epoch 3 (kept in its checkpoint)" in str(RunInterrupted("r", 3))


def test_an_epoch_line_leaves_out_a_column_without_a_value(synthetic_data, tmp_path):
    from experiments.engine.config import RunConfig
    from experiments.engine.context import RunContext
    from experiments.engine.trainer import Trainer

    cfg = RunConfig(dataset="synthetic", loss="standalone", train_size=1024, test_size=500)
    trainer = Trainer(cfg, synthetic_data, tmp_path, RunContext(progress=False))
    line = trainer.format_row(
        {
            "epoch": 1,
            "lr": 0.01,
            "loss": 1.0,
            "test_acc_argmax": math.nan,
            "test_acc": 0.5,
            "seconds": 2.0,
        }
    )
    assert "test_acc=0.5" in line and "argmax" not in line and "nan" not in line


def test_the_cpu_label_counts_its_threads_in_words_and_names_onednns_instruction_set():
    from experiments.engine.device import device_name, onednn_isa

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        label = device_name(torch.device("cpu"))
        assert label.startswith("cpu (1 thread, ") and label.endswith(f", oneDNN {onednn_isa()})")
        torch.set_num_threads(2)
        assert device_name(torch.device("cpu")).startswith("cpu (2 threads, ")
    finally:
        torch.set_num_threads(before)


def test_onednns_cap_is_respected(monkeypatch):
    from experiments.engine import device

    monkeypatch.setattr(torch.cpu, "_is_avx512_supported", lambda: True, raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert device.onednn_isa() == "avx2"


def test_a_readme_without_the_tuned_markers_is_named_for_those(tmp_path):
    from experiments.report import Outputs

    readme = tmp_path / "README.md"
    readme.write_text(
        "<!-- results:start -->\n<!-- results:end -->\n<!-- figures:start -->\n<!-- figures:end -->\n"
    )
    problem = Outputs(tmp_path / "results", tmp_path / "imgs", readme).problem()
    assert "tuned:start" in problem and "results:start" not in problem


def test_the_closing_table_fits_the_terminal():
    from experiments.report.rows import read_ledger
    from experiments.report.terminal import terminal_table

    text = terminal_table(read_ledger(REPO / "results" / "runs.csv"), width=80)
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" in text
    assert text.splitlines()[0].startswith("loss")


def test_a_runs_own_gif_is_large_with_its_legend_beside_the_points(tmp_path):
    from experiments.plots import feature_gifs

    frames = []
    for epoch in (1, 2):
        path = tmp_path / f"epoch_{epoch:03d}.pt"
        torch.save(
            {
                "train_features": torch.randn(50, 2).half(),
                "train_labels": torch.arange(50) % 3,
                "test_features": torch.randn(40, 2).half() * epoch,
                "test_labels": torch.arange(40) % 3,
                "centers": torch.zeros(3, 2),
                "test_acc": 0.5,
                "epoch": epoch,
            },
            path,
        )
        frames.append(path)
    feature_gifs(frames, ["a", "b", "c"], tmp_path / "pictures", "t")
    import imageio.v3 as iio

    gif = iio.imread(tmp_path / "pictures" / "test.gif", index=None)
    assert gif.shape[2] >= 480 and gif.shape[1] >= 480
    assert not np.array_equal(gif[0], gif[1])


def test_a_readme_with_markers_out_of_order_is_refused_before_anything_is_written(tmp_path):
    """Before: a README with results:end above results:start passed the check and the report raised
    ValueError after its work."""
    from experiments.report import Outputs
    from experiments.report.markers import MARKERS

    readme = tmp_path / "README.md"
    pairs = list(MARKERS.values())
    text = "\n".join(m for pair in pairs for m in pair) + "\n"
    assert Outputs(tmp_path / "results", tmp_path / "imgs", readme).problem() is not None  # no file
    readme.write_text(text)
    assert Outputs(tmp_path / "results", tmp_path / "imgs", readme).problem() is None
    start, end = pairs[0]
    readme.write_text(text.replace(start, "@@").replace(end, start).replace("@@", end))
    problem = Outputs(tmp_path / "results", tmp_path / "imgs", readme).problem()
    assert problem is not None and start in problem and "start before the end" in problem
    readme.write_text(text + start + "\n")  # twice
    assert start in Outputs(tmp_path / "results", tmp_path / "imgs", readme).problem()


@pytest.mark.parametrize(
    "argv, env, says",
    [
        (["train", "--device", "tpu"], {}, ["'tpu' is not a device", "cuda:N"]),
        (["grid", "--device", "gpu0"], {}, ["'gpu0' is not a device"]),
        (["train"], {"SUITE_DEVICE": "gpu"}, ["SUITE_DEVICE='gpu' is not a device"]),
        (["train", "--known-classes", "3"], {}, ["'3' names 1 class", "at least 2"]),
        (["tune", "--study", "../x"], {}, ["'../x' is not a plain name"]),
        (["train", "--dataset", "synthetic", "--train-size", "20000"], {}, ["20000", "2,000"]),
        (["train", "--dataset", "mnist", "--known-classes", "0-9"], {}, ["proper subset", "0..9"]),
        (["grid", "--datasets", "mnist", "--known-classes", "0-12"], {}, ["0-12", "0..9"]),
    ],
)
def test_bad_values_are_refused_in_one_line_before_torch_loads(argv, env, says):
    """Before: --device tpu and SUITE_DEVICE=gpu ended in a RuntimeError traceback after torch loaded; one
    known class trained a one-class model; a study name ../x wrote its journal outside results/tune."""
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['x'] + sys.argv[2:]\n"
        "try:\n"
        "    runpy.run_module('experiments.' + sys.argv_command, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    print('torch' in sys.modules, e.code)\n"
    ).replace("sys.argv_command", repr(argv[0]))
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert done.stdout.strip().splitlines()[-1] == "False 2", done.stderr[-300:]
    assert done.stderr.count("\n") == 1 and all(s in done.stderr for s in says), done.stderr


@pytest.mark.parametrize("answer", [EOFError, KeyboardInterrupt])
def test_ctrl_c_or_ctrl_d_at_the_grids_question_is_a_no(answer, monkeypatch, capsys):
    from experiments import grid

    def no_answer(prompt):
        raise answer

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", no_answer)
    refused = grid.confirm(7200.0, "measured", torch.device("cpu"), 3, yes=False)
    assert refused == "not started (no answer)"
    assert "about 2 h" in capsys.readouterr().out


def test_the_grids_estimate_reads_the_label_each_run_records():
    from experiments.grid import run_device_label

    label = "cpu (2 threads, AVX512, oneDNN avx512_core_bf16)"
    assert run_device_label(label, 1) == "cpu (1 thread, AVX512, oneDNN avx512_core_bf16)"
    assert run_device_label(label, 4) == "cpu (4 threads, AVX512, oneDNN avx512_core_bf16)"
    assert run_device_label("NVIDIA H200", 1) == "NVIDIA H200"


def test_a_second_train_of_the_same_run_into_the_same_folder_is_refused_while_the_first_trains(
    tmp_path, capsys
):
    """Before: two `train` commands of one config into one --out both trained the whole run (the grid's
    runners already took a claim; train took none)."""
    from experiments import train
    from experiments.ledger.claims import Claim

    argv = ["--dataset", "synthetic", "--epochs", "1", "--train-size", "128", "--test-size", "50"]
    argv += ["--no-progress", "--out", str(tmp_path), "--device", "cpu"]
    run_id = train.run_config(train.parse_args(argv)).run_id
    first = Claim(tmp_path, run_id)  # a live trainer holds the run
    assert first.take()
    try:
        assert train.main(argv) == 2
    finally:
        first.release()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and run_id in err and "being trained by another process" in err
    assert not (tmp_path / run_id / "metrics.csv").exists()
