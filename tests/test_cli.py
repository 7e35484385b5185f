"""The command line rejects bad input with a clear message, and runs a tiny job."""
import json

import pytest

from experiments import data, train


def run_cli(main, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "imagenet"], "argument --dataset: invalid choice: 'imagenet'"),
    (["--loss", "arcface"], "argument --loss: invalid choice: 'arcface'"),
    (["--epochs", "0"], "argument --epochs: '0' must be a positive whole number"),
    (["--lr", "fast"], "argument --lr: 'fast' is not a number"),
    (["--lr", "-1"], "argument --lr: '-1' must be a positive finite number"),
    (["--feat-dim", "2.5"], "argument --feat-dim: '2.5' is not a whole number"),
    (["--loss", "standalone", "--weight-cent", "2"], "--weight-cent does not apply to --loss standalone"),
])
def test_train_rejects_bad_arguments(argv, message, capsys):
    code, err = run_cli(train.main, argv, capsys)
    assert code == 2 and message in err


def test_data_rejects_unknown_dataset(capsys):
    code, err = run_cli(data.main, ["fetch", "imagenet"], capsys)
    assert code == 2 and "invalid choice" in err


def test_a_tiny_run_from_the_command_line(tmp_path, capsys):
    code = train.main(["--dataset", "synthetic", "--loss", "cent", "--feat-dim", "4", "--epochs", "1",
                       "--batch-size", "64", "--train-size", "256", "--test-size", "100", "--out", str(tmp_path),
                       "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads(out[: out.rindex("}") + 1])
    assert summary["status"] == "finished" and summary["epochs_done"] == 1
    assert (tmp_path / summary["run_id"] / "result.json").exists()
