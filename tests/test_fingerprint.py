"""Results follow the code: fingerprints by syntax tree, stale runs retrained, old rows superseded."""

from pathlib import Path

import pytest

from centersuite.losses import LOSSES
from experiments import grid
from experiments.ledger import fingerprint
from experiments.ledger.fingerprint import code_fingerprint
from experiments.ledger.rows import merge, read_rows, record

REPO = Path(__file__).resolve().parent.parent
STANDALONE_FAMILY = {"standalone", "standalone-log", "standalone-margin"}


def test_comments_and_docstrings_do_not_count_and_code_does(tmp_path):
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text('"""Doc."""\ndef f(x):\n    """Twice."""\n    return x + 1  # one\n')
    b.write_text('"""Other words."""\n\n# a comment\ndef f(x):\n    return x + 1\n')
    c.write_text('"""Doc."""\ndef f(x):\n    """Twice."""\n    return x + 2  # one\n')
    assert fingerprint._statements(a) == fingerprint._statements(b) != fingerprint._statements(c)


def edited(monkeypatch, filename: str):
    """Make the fingerprint see ``filename`` as edited (a statement added to it)."""
    original = fingerprint._statements
    monkeypatch.setattr(
        fingerprint,
        "_statements",
        lambda path: original(path) + (("edit",) if path.name == filename else ()),
    )


def test_editing_the_standalone_module_changes_its_family_and_no_other_loss(monkeypatch):
    before = {loss: code_fingerprint(loss, "resnet") for loss in LOSSES}
    edited(monkeypatch, "standalone.py")
    after = {loss: code_fingerprint(loss, "resnet") for loss in LOSSES}
    assert {loss for loss in LOSSES if before[loss] != after[loss]} == STANDALONE_FAMILY
    monkeypatch.undo()
    edited(monkeypatch, "trainer.py")
    assert all(code_fingerprint(loss, "resnet") != before[loss] for loss in LOSSES)
    monkeypatch.undo()
    edited(monkeypatch, "lenet.py")  # another model's file: resnet runs stay fresh
    assert (
        code_fingerprint("xent", "resnet") == before["xent"] != code_fingerprint("xent", "lenet++")
    )


def test_a_loss_defined_outside_losses_counts_its_own_file():
    from tests.example_loss import HingeToCenter

    assert sorted(p.name for p in fingerprint.loss_files(HingeToCenter)) == [
        "__init__.py",
        "base.py",
        "distances.py",
        "example_loss.py",
    ]


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
    "--epochs",
    "1",
    "--train-size",
    "256",
    "--test-size",
    "100",
    "--batch-size",
    "64",
    "--no-progress",
    "--no-report",
    "--runs-per-gpu",
    "1",
]


@pytest.mark.slow
def test_an_edited_loss_makes_the_grid_retrain_its_runs_only(tmp_path, monkeypatch, capsys):
    dirs = ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    assert grid.main(MINI + dirs) == 0
    first = {r["loss"]: r for r in read_rows(tmp_path / "results" / "runs.csv")}
    edited(monkeypatch, "standalone.py")
    capsys.readouterr()
    assert grid.main(MINI + dirs + ["--reuse-stale"]) == 0  # kept: nothing trained
    assert "0 to train" in capsys.readouterr().out
    assert grid.main(MINI + dirs) == 0
    assert "1 to train (1 of them recorded by other code" in capsys.readouterr().out
    rows = read_rows(tmp_path / "results" / "runs.csv")
    assert len(rows) == 3
    old, new = sorted(
        (r for r in rows if r["loss"] == "standalone"), key=lambda r: r["superseded_by"] == ""
    )
    assert old["code_fingerprint"] == first["standalone"]["code_fingerprint"]
    assert (
        old["superseded_by"] == new["code_fingerprint"] != old["code_fingerprint"]
        and new["superseded_by"] == ""
    )
    xent = [r for r in rows if r["loss"] == "xent"]
    assert (
        len(xent) == 1 and xent[0]["recorded_at"] == first["xent"]["recorded_at"]
    )  # not retrained
    # the old run directory was kept aside, the new one trained from scratch
    run_id = new["run_id"]
    assert (
        tmp_path / "runs" / f"{run_id}.stale-{old['code_fingerprint']}" / "result.json"
    ).exists()
    epochs = read_rows(tmp_path / "results" / "epochs.csv")
    assert sorted(e["code_fingerprint"] for e in epochs if e["run_id"] == run_id) == sorted(
        [old["code_fingerprint"], new["code_fingerprint"]]
    )


@pytest.mark.slow
def test_an_interrupted_checkpoint_of_other_code_is_not_resumed(tmp_path, monkeypatch):
    import torch

    from experiments.engine.config import RunConfig
    from experiments.engine.context import RunContext
    from experiments.engine.data import load_data
    from experiments.engine.trainer import RunStopped, Trainer

    cfg = RunConfig(
        dataset="synthetic",
        loss="standalone",
        epochs=2,
        train_size=256,
        test_size=100,
        batch_size=64,
    )
    data = load_data(cfg, tmp_path, torch.device("cpu"))
    with pytest.raises(RunStopped):
        Trainer(
            cfg,
            data,
            tmp_path / cfg.run_id,
            RunContext(
                device=torch.device("cpu"),
                progress=False,
                fingerprint=code_fingerprint(cfg.loss, cfg.model),
            ),
        ).fit(lambda: True)
    edited(monkeypatch, "standalone.py")
    logs = []
    result = Trainer(
        cfg,
        data,
        tmp_path / cfg.run_id,
        RunContext(
            device=torch.device("cpu"),
            progress=False,
            log=logs.append,
            fingerprint=code_fingerprint(cfg.loss, cfg.model),
        ),
    ).fit()
    assert result["epochs_done"] == 2 and not any("resuming" in line for line in logs)
    assert any("trained by other code" in line for line in logs)


def row(run_id, fp, recorded_at, status="finished"):
    return {
        "run_id": run_id,
        "group_id": "g",
        "status": status,
        "code_fingerprint": fp,
        "recorded_at": recorded_at,
    }


def test_the_ledger_keys_rows_by_run_and_fingerprint(tmp_path):
    record(tmp_path, row("r1", "aaa", "2026-01-01T00:00:00"), [{"epoch": 1}])
    record(tmp_path, row("r1", "bbb", "2026-01-02T00:00:00"), [{"epoch": 1}])
    record(tmp_path, row("r1", "bbb", "2026-01-03T00:00:00"), [{"epoch": 1}])  # same code: replaced
    rows = read_rows(tmp_path / "runs.csv")
    assert [(r["code_fingerprint"], r["superseded_by"]) for r in rows] == [
        ("aaa", "bbb"),
        ("bbb", ""),
    ]
    assert len(read_rows(tmp_path / "epochs.csv")) == 2
    other = tmp_path / "other"
    record(other, row("r1", "ccc", "2026-01-04T00:00:00"), [{"epoch": 1}])
    assert merge(tmp_path, read_rows(other / "runs.csv"), read_rows(other / "epochs.csv")) == (1, 0)
    rows = read_rows(tmp_path / "runs.csv")
    assert [(r["code_fingerprint"], r["superseded_by"]) for r in rows] == [
        ("aaa", "ccc"),
        ("bbb", "ccc"),
        ("ccc", ""),
    ]
