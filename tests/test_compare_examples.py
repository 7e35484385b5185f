"""Every `report --compare` example that `report --help`, the README and docs/ show runs on a typical ledger and
prints a comparison; a selector can name `stale`, so that the refusal of two groups that differ in it can be
followed."""

import shlex

import pytest

from experiments.engine.io import atomic_write_csv
from experiments.ledger.rows import RUN_COLUMNS
from experiments.report import command, compare
from tests.test_readme_commands import documented_commands
from tests.test_report import ledger, ledger_row

PREFIXES = (
    ("./suite", "report"),
    ("python", "-m", "experiments.report"),
    ("python3", "-m", "experiments.report"),
)


def compare_args(line: str) -> list[str] | None:
    """The arguments of a `report --compare` command line (its comment left out), or None for another line."""
    if not line.startswith(tuple(" ".join(prefix) + " " for prefix in PREFIXES)):
        return None
    words = shlex.split(line, comments=True)
    for prefix in PREFIXES:
        if tuple(words[: len(prefix)]) == prefix and "--compare" in words:
            return words[len(prefix) :]
    return None


def help_examples() -> list[tuple[str, list[str]]]:
    text = command.build_parser().format_help()
    return [
        ("report --help", args)
        for line in text.splitlines()
        if (args := compare_args(line.strip())) is not None
    ]


def doc_examples() -> list[tuple[str, list[str]]]:
    return [
        (where, args)
        for where, line in documented_commands()
        if (args := compare_args(line)) is not None
    ]


def typical_ledger(tmp_path):
    """What a ledger holds after the paper grid and the README's fast runs: the three losses on both datasets
    at feat_dim 2 and 128 over seeds 0-2 by the current code, the 3-epoch protocol-fair runs at Fashion-MNIST
    feat_dim 128, and a group recorded by other code than the current (stale)."""
    rows = []
    for dataset in ("mnist", "fashion-mnist"):
        for feat_dim in (2, 128):
            for i, loss in enumerate(("xent", "cent", "standalone")):
                rows += [
                    ledger_row(
                        loss,
                        seed=s,
                        dataset=dataset,
                        feat_dim=feat_dim,
                        best=0.95 + 0.005 * i + 0.001 * s,
                        final=0.94 + 0.005 * i + 0.003 * ((s + i * i) % 3),
                    )
                    for s in range(3)
                ]
    fair = dict(dataset="fashion-mnist", feat_dim=128, epochs=3, train_size=4096, test_size=2000)
    rows += [
        ledger_row(loss, protocol="fair", best=acc, final=acc, **fair)
        for loss, acc in (("xent", 0.63), ("cent", 0.70), ("standalone", 0.76))
    ]
    stale = [ledger_row("centers-only", seed=s) for s in range(3)]
    for row in stale:
        row.update(code_fingerprint="0ld0ld0ld0ld", code_version="0ld0ld0ld0ld")
    atomic_write_csv(tmp_path / "runs.csv", rows + stale, RUN_COLUMNS)
    return tmp_path


def test_the_help_and_the_docs_show_compare_examples():
    assert help_examples(), "report --help shows no --compare example"
    assert doc_examples(), "neither the README nor docs/ shows a --compare example"


@pytest.mark.parametrize(
    "where, args", help_examples() + doc_examples(), ids=lambda v: v if isinstance(v, str) else None
)
def test_every_compare_example_runs_and_prints_a_comparison(where, args, tmp_path, capsys):
    results = typical_ledger(tmp_path)
    code = command.main(args + ["--results", str(results)])
    out, err = capsys.readouterr()
    assert code == 0 and err == "", f"{where}: {shlex.join(args)} -> exit {code}: {err}"
    assert out.startswith("A: ") and "\nB: " in out and "\npairs: " in out, out
    assert "test accuracy of the " in out and ", paired by seed:" in out, out


@pytest.mark.parametrize(
    "where, args", help_examples() + doc_examples(), ids=lambda v: v if isinstance(v, str) else None
)
def test_every_compare_example_runs_on_the_shipped_ledger(where, args, capsys):
    """The help's example once matched only a stale group of the committed ledger: it ran on the fixture alone."""
    assert command.main(args) == 0, f"{where}: {capsys.readouterr().err}"
    out = capsys.readouterr().out
    assert "paired by seed:" in out, out
    if "protocol=fair" in shlex.join(
        args
    ):  # its test figure is the epoch its validation split selected
        assert "test accuracy of the epoch its validation split selected" in out, out


def test_a_selector_names_stale_so_that_the_refusal_can_be_followed(tmp_path):
    rows = [ledger_row("xent", seed=s, final=0.90 + 0.01 * s) for s in range(3)]
    old = [ledger_row("standalone", seed=s, final=f) for s, f in enumerate((0.92, 0.94, 0.93))]
    for row in old:  # recorded by other code than the current
        row.update(code_fingerprint="0ld0ld0ld0ld")
    df = ledger(tmp_path, rows + old)
    with pytest.raises(
        compare.CompareError,
        match=r"(?s)stale.*stale=true.*stale=false",
    ):
        compare.compare(df, "loss=standalone,dataset=mnist", "loss=xent,dataset=mnist")
    text = compare.compare(
        df, "loss=standalone,dataset=mnist,stale=true", "loss=xent,dataset=mnist,stale=false"
    )
    assert text.startswith("A: standalone on mnist, feat_dim 2 [stale: code changed since")
    assert "\nB: xent on mnist, feat_dim 2 [reference recipe], seeds [0, 1, 2]" in text
    assert compare.parse_selector("loss=xent,stale=False") == {"loss": "xent", "stale": "false"}
    with pytest.raises(compare.CompareError, match="no runs match"):
        compare.compare(df, "loss=standalone,stale=false", "loss=xent")
    with pytest.raises(compare.CompareError, match="stale is true .* or false"):
        compare.parse_selector("loss=xent,stale=maybe")
