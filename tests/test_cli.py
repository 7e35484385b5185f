"""The command line rejects bad input with a clear message, and runs a tiny job."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import data, train
from experiments.ledger.rows import read_rows
from tests.conftest import sigint_default

REPO = Path(__file__).resolve().parent.parent


def run_cli(main, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "imagenet"], "argument --dataset: invalid choice: 'imagenet'"),
        (["--loss", "arc-face"], "argument --loss: invalid choice: 'arc-face'"),
        (["--epochs", "0"], "argument --epochs: '0' must be a positive whole number"),
        (["--lr", "fast"], "argument --lr: 'fast' is not a number"),
        (["--lr", "-1"], "argument --lr: '-1' must be a positive finite number"),
        (["--feat-dim", "2.5"], "argument --feat-dim: '2.5' is not a whole number"),
        (
            ["--loss", "standalone", "--weight-cent", "2"],
            "--weight-cent does not apply to --loss standalone",
        ),
        (["--seed", "-1"], "argument --seed: '-1' must be a whole number, 0 or more"),
        (["--precision", "auto"], "argument --precision: invalid choice: 'auto'"),
    ],
)
def test_train_rejects_bad_arguments(argv, message, capsys):
    code, err = run_cli(train.main, argv, capsys)
    assert code == 2 and message in err


def test_data_rejects_unknown_dataset(capsys):
    code, err = run_cli(data.main, ["fetch", "imagenet"], capsys)
    assert code == 2 and "invalid choice" in err


@pytest.mark.slow
def test_a_tiny_run_from_the_command_line(tmp_path, capsys):
    code = train.main(
        [
            "--dataset",
            "synthetic",
            "--loss",
            "cent",
            "--feat-dim",
            "4",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--train-size",
            "256",
            "--test-size",
            "100",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads(out[out.index("{\n") : out.rindex("}") + 1])
    assert summary["status"] == "finished" and summary["epochs_done"] == 1
    assert (tmp_path / summary["run_id"] / "result.json").exists()
    # without progress bars, each epoch still gets its line
    [line] = [x for x in out.splitlines() if " epoch " in x]
    assert line.startswith(f"[{summary['run_id']}] epoch   1 lr=0.01 loss=") and "test_acc=" in line
    # its own picture: the PCA of its final 4-D features
    assert f"pictures: {tmp_path / summary['run_id'] / 'pictures'}" in out
    assert (tmp_path / summary["run_id"] / "pictures" / "test.png").stat().st_size > 1000


@pytest.mark.slow
def test_a_two_dimensional_run_writes_its_gifs(tmp_path, capsys):
    assert (
        train.main(
            [
                "--dataset",
                "synthetic",
                "--loss",
                "xent",
                "--epochs",
                "2",
                "--train-size",
                "256",
                "--test-size",
                "100",
                "--batch-size",
                "64",
                "--out",
                str(tmp_path),
                "--no-progress",
            ]
        )
        == 0
    )
    [pictures] = [p for p in tmp_path.glob("*/pictures")]
    assert sorted(p.name for p in pictures.iterdir()) == ["test.gif", "train.gif"]


@pytest.mark.slow
def test_the_grid_defaults_to_the_reference_recipe_and_records_the_images_used(tmp_path):
    from experiments import grid

    args = grid.parse_args([])
    assert (args.preset, args.epochs, args.train_size, args.test_size) == ("paper", 100, None, None)
    argv = [
        "--datasets",
        "synthetic",
        "--losses",
        "xent",
        "--feat-dims",
        "2",
        "--epochs",
        "1",
        "--test-size",
        "100",
        "--batch-size",
        "256",
        "--no-progress",
        "--no-report",
        "--out",
        str(tmp_path / "runs"),
        "--results",
        str(tmp_path / "results"),
    ]
    # more images than the split holds would be recorded as a size the run never had: refused
    with pytest.raises(SystemExit) as refused:  # with the flags, before torch loads
        grid.main(argv + ["--train-size", "2048"])
    assert refused.value.code == 2 and not (tmp_path / "results" / "runs.csv").exists()
    assert grid.main(argv + ["--train-size", "2000"]) == 0
    [row] = read_rows(tmp_path / "results" / "runs.csv")
    assert (row["train_size"], row["train_images"], row["test_images"]) == ("2000", "2000", "100")


def test_the_readme_points_to_no_file_outside_the_repository():
    text = (REPO / "README.md").read_text()
    assert "../" not in text
    assert (REPO / "docs" / "reference.md").is_file() and "docs/reference.md" in text


TINY = [
    "--dataset",
    "synthetic",
    "--feat-dim",
    "2",
    "--batch-size",
    "64",
    "--train-size",
    "256",
    "--test-size",
    "100",
    "--no-progress",
]


def test_batches_of_one_sample_warn_that_the_inter_term_is_zero(capsys):
    train.parse_args(["--loss", "standalone", "--batch-size", "1"])
    assert (
        capsys.readouterr().err.count("term over pairs of classes of standalone is always 0") == 1
    )
    train.parse_args(["--loss", "cent", "--batch-size", "1"])
    assert capsys.readouterr().err == ""
    from experiments import grid

    grid.parse_args(["--losses", "xent", "standalone", "standalone-margin", "--batch-size", "1"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "standalone, standalone-margin" in err


@pytest.mark.parametrize("module", ["train", "grid", "report", "data"])
def test_help_describes_every_option_and_shows_defaults(module):
    import importlib

    parser = importlib.import_module(f"experiments.{module}").build_parser()
    for action in parser._actions:
        assert action.help, f"{action.option_strings or action.dest} has no description"
    text = " ".join(parser.format_help().split())  # unwrapped
    if module in ("train", "grid"):
        assert "synthetic: a generated 10-class toy set" in text
        assert "(default: 0.01)" in text and "(default: fp32)" in text
    if module == "train":
        assert (
            "supcon need batches holding several classes" in text
        )  # the pair losses of the library too
    if module == "grid":
        assert (
            "(default: paper)" in text and "the README whose marked sections are rewritten" in text
        )


@pytest.mark.slow
def test_ctrl_c_stops_a_run_with_one_line_and_the_same_command_resumes(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    argv = [
        sys.executable,
        "-m",
        "experiments.train",
        *TINY,
        "--epochs",
        "200",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("*/checkpoint.pt")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    [line] = err.strip().splitlines()
    assert re.fullmatch(
        r"run \S+ interrupted after epoch \d+ \(kept in its checkpoint\); the same command resumes it",
        line,
    ), line
    epoch = int(re.search(r"after epoch (\d+)", line)[1])
    [run_dir] = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]  # not .claims
    import torch

    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["epoch"] == epoch >= 1


def test_ctrl_c_while_a_command_loads_or_works_is_one_line_and_other_errors_are_shown_whole():
    from experiments.cli.entry import STARTING, STOPPED

    # a real SIGINT that arrives while a command's main loads its modules (torch's import: seconds on a CPU)
    start = (
        "import os, signal, sys\nfrom experiments.cli.entry import command, loading\n"
        "def main():\n    with loading():\n        os.kill(os.getpid(), signal.SIGINT)\n        import torch\n"
        "    print('not reached')\nsys.exit(command(main))"
    )
    done = subprocess.run(
        [sys.executable, "-c", start],
        cwd=REPO,
        capture_output=True,
        text=True,
        preexec_fn=sigint_default,
    )
    assert done.returncode == -2 and done.stdout == ""  # ended by SIGINT: 130 in a shell
    assert done.stderr.strip() == STARTING and "Traceback" not in done.stderr
    # a Ctrl-C once the command works, where it reports none itself (a report being drawn): one line too (it
    # was Python's traceback)
    later = (
        "import os, signal, sys\nfrom experiments.cli.entry import command, loading\n"
        "def main():\n    with loading():\n        pass\n    os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.exit(command(main))"
    )
    done = subprocess.run(
        [sys.executable, "-c", later],
        cwd=REPO,
        capture_output=True,
        text=True,
        preexec_fn=sigint_default,
    )
    assert done.returncode == -2 and done.stderr.strip() == STOPPED
    # an exception that is no Ctrl-C is shown whole, as Python shows it
    done = subprocess.run(
        [sys.executable, "-c", "from experiments.cli.entry import command\ncommand(lambda: 1 / 0)"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert "Traceback" in done.stderr and done.stderr.strip().endswith(
        "ZeroDivisionError: division by zero"
    )
    assert STARTING not in done.stderr


def test_ctrl_c_while_the_suite_wrapper_checks_its_python_is_one_line():
    # the wrapper's first step (experiments/check_env.py, a script): a Ctrl-C while it reads the installed versions
    stop = (
        "import importlib.metadata as m, runpy\ndef stop(name): raise KeyboardInterrupt\nm.version = stop\n"
        "runpy.run_path('experiments/check_env.py', run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", stop],
        cwd=REPO,
        capture_output=True,
        text=True,
        preexec_fn=sigint_default,
    )
    assert (
        done.returncode == -2 and "Traceback" not in done.stderr
    )  # ended by SIGINT: the wrapper stops too
    assert done.stderr.startswith(
        "interrupted (Ctrl-C) while the command was starting (checking its Python)"
    )


def test_an_option_is_taken_only_by_its_whole_name(capsys):
    from experiments import grid

    with pytest.raises(SystemExit):  # argparse would take it as --runs-per-gpu 2
        grid.parse_args(["--runs", "2", "--dry-run"])
    assert "unrecognized arguments: --runs 2" in capsys.readouterr().err


def test_the_suite_wrapper_prints_its_usage_and_rejects_unknown_commands():
    import subprocess

    usage = subprocess.run(["bash", str(REPO / "suite")], capture_output=True, text=True)
    assert usage.returncode == 2 and "./suite grid" in usage.stdout and "set -e" not in usage.stdout
    unknown = subprocess.run(["bash", str(REPO / "suite"), "fly"], capture_output=True, text=True)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    assert "'fly'" in unknown.stderr and "./suite --help" in unknown.stderr  # the value, the fix
    report = subprocess.run(
        ["bash", str(REPO / "suite"), "report", "--help"], capture_output=True, text=True
    )
    assert (
        report.returncode == 0 and "python -m experiments.report" in report.stdout
    )  # a package's __main__


@pytest.mark.slow
def test_a_users_own_ood_images_are_scored_and_bad_ones_refused(tmp_path, capsys):
    import numpy as np

    images = np.random.default_rng(0).integers(0, 256, (50, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "mine.npy", images)
    argv = TINY + ["--loss", "standalone", "--epochs", "1", "--out", str(tmp_path / "runs")]
    assert train.main(argv + ["--ood-images", str(tmp_path / "mine.npy")]) == 0
    [run_dir] = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["ood_dataset"] == "mine.npy" and 0 <= result["final_ood_center_auroc"] <= 1
    np.save(tmp_path / "rgb.npy", np.zeros((5, 32, 32, 3), dtype=np.uint8))
    capsys.readouterr()
    assert train.main(argv + ["--ood-images", str(tmp_path / "rgb.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "synthetic needs uint8 images of 1 x 16 x 16" in err


def test_data_and_venv_are_ignored_also_as_symbolic_links(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    shutil.copy(REPO / ".gitignore", clone / ".gitignore")  # the working tree's, committed or not
    (clone / ".venv").symlink_to(tmp_path)
    (clone / "data").symlink_to(tmp_path)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--", ".venv", "data"],
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout == ""


@pytest.mark.parametrize(
    "text, value", [("0", 0.0), ("0.00", 0.0), ("0e0", 0.0), ("-0", 0.0), ("5e-4", 5e-4)]
)
def test_a_non_negative_float_takes_zero_in_any_spelling(text, value):
    """`--weight-decay 0.00` and `0e0` were refused while `0` was taken; `-0` gave another run id."""
    import math

    from experiments.cli.types import non_negative_float

    got = non_negative_float(text)
    assert got == value and math.copysign(1, got) == 1


@pytest.mark.parametrize("text", ["-1", "inf", "nan", "x"])
def test_a_non_negative_float_refuses_naming_the_value_and_that_zero_is_allowed(text):
    import argparse

    from experiments.cli.types import non_negative_float

    with pytest.raises(argparse.ArgumentTypeError) as e:
        non_negative_float(text)
    assert repr(text) in str(e.value)
    if text == "-1":  # it said "a positive finite number" of a field that takes 0
        assert "0 or more" in str(e.value)


@pytest.mark.parametrize(
    "command, argv",
    [
        ("grid", ["--preset", "quick", "--dry-run"]),
        ("tune", ["--study", "cuda-less", "--results", "r"]),
        ("bench", ["--out", "b"]),
        ("train", ["--dataset", "synthetic", "--out", "o"]),
    ],
)
def test_cuda_asked_for_without_cuda_is_one_line_not_a_traceback(
    command, argv, monkeypatch, capsys, tmp_path
):
    import importlib

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(f"experiments.{command}")
    with pytest.raises(SystemExit) as stopped:  # it was a ValueError's traceback from grid and tune
        module.main(argv + ["--device", "cuda"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: device 'cuda' asked for, but CUDA is not available; use --device cpu; nothing was run"
    )


def test_a_relative_path_is_read_from_where_the_suite_was_run_and_defaults_stay_in_the_checkout(
    tmp_path, monkeypatch
):
    import os

    from experiments import grid

    # ./suite runs its commands from the checkout: the path given was looked up there (it found no ledger)
    done = subprocess.run(
        ["bash", str(REPO / "suite"), "report", "--results", "res"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "SUITE_CALLER_DIR"},
        capture_output=True,
        text=True,
    )
    assert f"no runs recorded in {tmp_path / 'res' / 'runs.csv'}" in done.stdout + done.stderr
    assert done.stderr.startswith(
        f"suite: running in the checkout {REPO.resolve()}: the relative paths"
    )
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("SUITE_CALLER_DIR", str(tmp_path))
    args = grid.parse_args(["--results", "res", "--out", "/abs/runs", "--dry-run"])
    assert args.results == tmp_path / "res" and args.out == Path("/abs/runs")
    assert grid.parse_args(["--dry-run"]).out == Path("runs")  # a default: the checkout's
    monkeypatch.setenv("SUITE_CALLER_DIR", str(REPO))  # run from the checkout: as given
    assert grid.parse_args(["--results", "res", "--dry-run"]).results == Path("res")


@pytest.mark.slow  # two pytest collections in subprocesses
def test_the_fast_tier_flag_is_read_wherever_it_stands():
    def collected(*argv):
        done = subprocess.run(
            ["bash", str(REPO / "suite"), "test", *argv, "--co", "-q", "tests/test_losses_pml.py"],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, (
            done.stderr
        )  # it was "unrecognized arguments: --fast" when not first
        return sum(
            int(n) for n in re.findall(r"^tests/test_losses_pml\.py: (\d+)$", done.stdout, re.M)
        )

    first, later, every = (
        collected("--fast"),
        collected("-p", "no:cacheprovider", "--fast"),
        collected(),
    )
    assert first == later < every


def test_a_finished_run_trained_again_says_it_is_done_not_that_its_epochs_will_train(
    tmp_path, capsys
):
    argv = "--dataset synthetic --loss xent --feat-dim 2 --epochs 1 --train-size 128 --test-size 64"
    argv = argv.split() + ["--batch-size", "64", "--no-progress", "--out", str(tmp_path)]
    assert train.main(argv) == 0
    assert "1 of 1 epochs to train" in capsys.readouterr().out
    assert train.main(argv) == 0
    out = capsys.readouterr().out  # it said "1 of 1 epochs to train, about ..." and trained nothing
    assert "is done already" in out and "epochs to train" not in out


def test_train_refuses_data_it_cannot_ready_before_it_announces_its_epochs(tmp_path, capsys):
    argv = "--dataset mnist --loss xent --epochs 1 --train-size 256 --test-size 128".split()
    own = tmp_path / "own"
    own.mkdir()
    assert train.main(argv + ["--data-root", str(own), "--out", str(tmp_path / "o")]) == 2
    said = capsys.readouterr()  # it announced "1 of 1 epochs to train, about ..." first
    assert "epochs to train" not in said.out
    assert said.err.startswith(f"error: mnist: {own}/MNIST/raw/train-images-idx3-ubyte: missing")
    assert f"./suite data fetch mnist --data-root {own}" in said.err
