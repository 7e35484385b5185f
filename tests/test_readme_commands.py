"""Every command line the README and docs/ show parses, and the grid's run with --dry-run (which fetches,
trains and writes nothing), so that a documented example can never be refused; report --compare runs as
documented."""

import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND = re.compile(r"^(?:\./suite|python3? -m experiments\.)")


def documented_commands() -> list[tuple[str, str]]:
    """``(file:line, command)`` for every command line in a fenced block or an inline code span."""
    found = []
    for path in DOCS:
        lines = path.read_text().splitlines()
        fenced, joined, start = False, "", 0
        for number, line in enumerate(lines, 1):
            if line.startswith("```"):
                fenced = not fenced
                continue
            if fenced:
                text = (joined + " " + line.strip()) if joined else line.strip()
                if text.endswith("\\"):
                    joined, start = text[:-1], start or number
                    continue
                joined = ""
                text = text.split(" #")[0].strip()
                if COMMAND.match(text):
                    found.append((f"{path.name}:{start or number}", text))
                start = 0
            else:
                found += [
                    (f"{path.name}:{number}", span)
                    for span in re.findall(r"`([^`]+)`", line)
                    if COMMAND.match(span)
                ]
    return found


def module_and_args(command: str) -> tuple[str, list[str]] | None:
    words = shlex.split(command)
    if words[0] == "./suite":
        if len(words) < 2 or words[1] in ("test", "--help", "-h") or not words[1].islower():
            return None  # the test runner, the wrapper's own help, or a placeholder (./suite NAME)
        return words[1].replace("-", "_"), words[2:]
    name = words[2].removeprefix("experiments.")
    return (
        None if not name.islower() else (name, words[3:])
    )  # python -m experiments.NAME: a placeholder


@pytest.mark.parametrize("where, command", documented_commands())
def test_every_documented_command_line_parses(where, command, tmp_path, monkeypatch, capsys):
    parsed = module_and_args(command)
    if parsed is None:
        return
    name, args = parsed
    module = importlib.import_module(f"experiments.{name}")
    if (
        name == "grid"
    ):  # planned and checked against the suite's rules, nothing fetched, trained or written
        assert module.main(args + ["--dry-run"]) == 0, (where, capsys.readouterr().err)
        return
    try:
        (module.parse_args if hasattr(module, "parse_args") else module.build_parser().parse_args)(
            args
        )
    except SystemExit as e:  # --help exits 0; a refusal exits 2
        if e.code != 0:
            pytest.fail(
                f"{where}: `{command}` is refused: {capsys.readouterr().err.strip()} (exit {e.code})"
            )


def test_the_documented_commands_are_found():
    commands = [c for _, c in documented_commands()]
    assert any(c.startswith("./suite report --compare") for c in commands)
    assert any(c.startswith("./suite grid --preset paper") for c in commands) and len(commands) > 20


@pytest.mark.slow
def test_report_compare_runs_as_a_command_and_prints_the_difference_interval_and_pairs(
    tmp_path, capsys
):
    from experiments.engine.io import atomic_write_csv
    from experiments.ledger.rows import RUN_COLUMNS
    from tests.test_report import ledger_row

    rows = []
    for seed, (xent, standalone) in enumerate(
        [(0.90, 0.93), (0.91, 0.92), (0.89, 0.93), (0.90, 0.94)]
    ):
        rows += [
            ledger_row("xent", seed=seed, final=xent),
            ledger_row("standalone", seed=seed, final=standalone),
        ]
    rows += [
        ledger_row("standalone", seed=4, final="", best="", status="diverged"),
        ledger_row("xent", seed=4),
    ]
    atomic_write_csv(tmp_path / "runs.csv", rows, RUN_COLUMNS)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.report",
            "--results",
            str(tmp_path),
            "--compare",
            "loss=standalone",
            "loss=xent",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "runs 4/5, 1 diverged" in out and "pairs: 4 (1 removed: 1 diverged)" in out
    # differences 3, 1, 4, 4 points: mean 3.00, t-interval 3.182 * sd 1.414 / 2 = 2.25
    assert "A is 3.00 ± 2.25 points above B over 4 seeds" in out, out
    # a good selector that matches no run of the ledger: refused in one line (the command's own function,
    # in this process); a selector at fault is refused before the ledger is read (tests/test_first_hour.py)
    from experiments.report import command

    capsys.readouterr()
    code = command.main(["--results", str(tmp_path), "--compare", "loss=cent", "loss=xent"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no runs match 'loss=cent'" in err


@pytest.mark.parametrize(
    "name",
    sorted(
        {parsed[0] for _, c in documented_commands() if (parsed := module_and_args(c)) is not None}
    ),
)
def test_every_documented_command_prints_its_help(name):
    help_text = importlib.import_module(f"experiments.{name}").build_parser().format_help()
    assert f"experiments.{name}" in help_text and "usage:" in help_text


def sized_examples() -> list[tuple[str, str]]:
    """The grid lines the docs say are meant to be tried on a CPU (their comment says "minutes on a CPU")."""
    found = []
    for path in DOCS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            command, _, comment = line.partition(" #")
            if command.startswith("./suite grid") and "minutes on a CPU" in comment:
                found.append((f"{path.name}:{number}", command.strip()))
    return found


@pytest.mark.parametrize("where, command", sized_examples())
def test_an_example_meant_to_be_tried_plans_under_an_hour_here(where, command, capsys):
    """The sweep line of docs/running.md once started 24 runs of 100 epochs on the full splits: days."""
    from experiments import grid

    assert grid.main(shlex.split(command)[2:] + ["--dry-run"]) == 0
    estimate = re.search(r"about (.+?) on this device", capsys.readouterr().out)
    assert estimate and " h" not in estimate.group(1) and "min" in estimate.group(1), (
        where,
        estimate,
    )


def test_the_running_page_has_an_example_sized_to_be_tried():
    assert any(where.startswith("running.md") for where, _ in sized_examples())
