"""Any combination of the documented options either trains and records a run (finished or diverged), or is
refused with exit 2 and one line, before training: never a traceback, never a run that cannot finish.

A bounded, seeded property test over the options' own definitions (hypothesis), on the synthetic set with
tiny sizes; the examples it once failed on are kept below as regular tests."""

import json
import re

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from centersuite.losses import CENTER_RULES, LOSSES, loss_options
from centersuite.models import MODELS
from experiments import train
from experiments.cli.recipe import LOSS_OPTIONS

TINY = [
    "--dataset",
    "synthetic",
    "--epochs",
    "1",
    "--no-progress",
    "--train-size",
    "120",
    "--test-size",
    "50",
]


def option_values(name: str):
    option = LOSS_OPTIONS[name]
    if option.is_switch:
        return st.just([])  # a switch takes no value
    low, high = option.search or (option.default, option.default)
    return st.sampled_from([[str(v)] for v in (0, low, option.default, high, 1e6)])


@st.composite
def command_lines(draw) -> list[str]:
    loss = draw(st.sampled_from(list(LOSSES)))
    argv = [
        "--loss",
        loss,
        "--model",
        draw(st.sampled_from(list(MODELS))),
        "--center-rule",
        draw(st.sampled_from(CENTER_RULES)),
        "--protocol",
        draw(st.sampled_from(["reference", "fair", "last"])),
        "--feat-dim",
        str(draw(st.sampled_from([1, 2, 3]))),
        "--batch-size",
        str(batch := draw(st.sampled_from([1, 7, 64, 5000]))),
        # 3000: more than the split holds; a batch of one sample takes 16 (a step of one image costs as much
        # as a step of many on the CPU)
        "--train-size",
        str(draw(st.sampled_from([16, 3000] if batch == 1 else [16, 120, 3000]))),
        "--test-size",
        str(draw(st.sampled_from([5, 100]))),
        "--eval-train-size",
        str(draw(st.sampled_from([0, 50]))),
        "--precise-bn",
        str(draw(st.sampled_from([0, 40]))),
        "--lr",
        draw(st.sampled_from(["1e-06", "0.01", "1e12"])),
    ]
    if draw(st.booleans()):
        argv += ["--known-classes", draw(st.sampled_from(["0-5", "9", "0-9", "5-9"]))]
    for name in loss_options(loss):
        if draw(st.booleans()):
            argv += [LOSS_OPTIONS[name].flag, *draw(option_values(name))]
    return argv


def run(argv, tmp_path, capsys) -> tuple[int, str]:
    try:
        code = train.main(TINY + argv + ["--out", str(tmp_path)])
    except SystemExit as e:  # refused while parsing
        code = e.code
    return code, capsys.readouterr().err


def holds(code: int, err: str, argv: list[str], tmp_path) -> None:
    """Refused in one line (exit 2), or trained and recorded as finished or diverged (exit 0 or 1)."""
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    if code == 2:
        assert len(lines) == 1 and re.match(
            r"(python -m experiments\.train: )?error: ", lines[0]
        ), (argv, err)
        return
    assert code in (0, 1), (argv, code, err)
    [result] = [json.loads(p.read_text()) for p in tmp_path.glob("*/result.json")]
    assert result["status"] in ("finished", "diverged"), (argv, result.get("error"))
    assert "Traceback" not in err, (argv, err)


@settings(
    max_examples=16,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
)  # a failing example is printed as drawn, not shrunk
@pytest.mark.slow
@seed(0)
@given(argv=command_lines())
def test_any_documented_options_train_and_record_or_are_refused_in_one_line(
    argv, tmp_path_factory, capsys
):
    tmp_path = tmp_path_factory.mktemp("run")
    holds(*run(argv, tmp_path, capsys), argv, tmp_path)


@pytest.mark.parametrize(
    "argv",
    [
        [
            "--loss",
            "cent",
            "--weight-cent",
            "0",
            "--center-rule",
            "separate",
        ],  # once a ZeroDivisionError
        [
            "--loss",
            "xent",
            "--known-classes",
            "5-9",
            "--test-size",
            "5",
        ],  # a test subset without class 9: IndexError
        [
            "--loss",
            "cent",
            "--lr",
            "1e12",
            "--feat-dim",
            "2",
        ],  # diverges before its first frame: plots of nothing
    ],
)
def test_the_examples_that_once_failed(argv, tmp_path, capsys):
    holds(*run(argv, tmp_path, capsys), argv, tmp_path)
