"""A grid carried between checkouts in a bundle finishes with what an uninterrupted grid records."""

import dataclasses
import tarfile

import pytest
import torch

from experiments import bundle, grid
from experiments.cli.recipe import run_settings
from experiments.ledger.rows import read_rows
from experiments.runners import backends
from experiments.runners import bundle as runner_bundle
from experiments.runners.sweep import plan
from tests.conftest import says

ONE = [
    "--datasets",
    "synthetic",
    "--losses",
    "standalone",
    "--feat-dims",
    "2",
    "--epochs",
    "2",
    "--train-size",
    "128",
    "--test-size",
    "50",
    "--batch-size",
    "32",
    "--no-progress",
]


def checkout(root):
    return ["--out", str(root / "runs"), "--results", str(root / "results")]


def folders(root):
    return dict(results=root / "results", imgs=root / "results" / "imgs", runs=root / "runs")


def stop_after_first_epoch(monkeypatch):
    """The grid's budget, as if it ran out during the first epoch (deterministic, unlike a clock)."""
    monkeypatch.setattr(backends.Stop, "allows", lambda self, estimate_s: True)
    monkeypatch.setattr(backends.Stop, "__call__", lambda self: True)


@pytest.mark.slow
def test_a_grid_exported_mid_way_finishes_in_a_fresh_checkout(tmp_path, monkeypatch):
    a, b, whole = tmp_path / "a", tmp_path / "b", tmp_path / "whole"
    # checkout a: seed 0 stops after its first epoch (budget), seed 1 finishes
    with monkeypatch.context() as m:
        stop_after_first_epoch(m)
        assert grid.main(ONE + ["--seeds", "0"] + checkout(a)) == 0
    assert grid.main(ONE + ["--seeds", "1"] + checkout(a)) == 0
    assert [r["seed"] for r in read_rows(a / "results" / "runs.csv")] == ["1"]
    counts = runner_bundle.export(tmp_path / "grid.tar", **folders(a), max_mb=16)
    assert (
        counts["runs"] >= 3
    )  # config, metrics, checkpoint (+ frames) of the unfinished seed-0 run
    with tarfile.open(tmp_path / "grid.tar") as tar:
        names = tar.getnames()
    assert "results/runs.csv" in names and any(n.endswith("/checkpoint.pt") for n in names)
    assert not any(n.endswith("result.json") for n in names)
    # checkout b: import, then the same grid command finishes there
    assert runner_bundle.import_bundle(tmp_path / "grid.tar", **folders(b))["runs taken"] == 1
    assert grid.main(ONE + ["--seeds", "0", "1"] + checkout(b)) == 0
    # the uninterrupted run of seed 0 (seed 1's row in b is a's, carried by the bundle)
    assert grid.main(ONE + ["--seeds", "0"] + checkout(whole)) == 0
    rows = {r["run_id"]: r for r in read_rows(b / "results" / "runs.csv")}
    [expected] = read_rows(whole / "results" / "runs.csv")
    carried = {r["run_id"] for r in read_rows(a / "results" / "runs.csv")}
    assert len(read_rows(b / "results" / "runs.csv")) == 2
    assert rows.keys() == carried | {expected["run_id"]} and expected["run_id"] not in carried
    row = rows[expected["run_id"]]
    assert row["seed"] == "0" and (row["final_test_acc"], row["best_test_acc"]) == (
        expected["final_test_acc"],
        expected["best_test_acc"],
    )
    assert sorted(e["epoch"] for e in read_rows(b / "results" / "epochs.csv")) == [
        "1",
        "1",
        "2",
        "2",
    ]
    # importing the same bundle again doubles nothing and does not roll the finished run back
    runner_bundle.import_bundle(tmp_path / "grid.tar", **folders(b))
    assert len(read_rows(b / "results" / "runs.csv")) == 2
    [resumed] = [run_id for run_id, r in rows.items() if r["seed"] == "0"]
    assert (b / "runs" / resumed / "result.json").exists()
    assert (
        len((b / "runs" / resumed / "metrics.csv").read_text().splitlines()) == 3
    )  # header + 2 epochs


@pytest.mark.slow
def test_the_size_cap_and_an_existing_file_are_refused_with_the_reason(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        stop_after_first_epoch(m)
        assert grid.main(ONE + ["--seeds", "0"] + checkout(tmp_path)) == 0
    assert grid.main(ONE + ["--seeds", "1", "--epochs", "1"] + checkout(tmp_path)) == 0
    with pytest.raises(
        runner_bundle.BundleError, match=r"over the 0.01 MiB cap \(largest: .*checkpoint.pt"
    ):
        runner_bundle.export(tmp_path / "small.tar", **folders(tmp_path), max_mb=0.01)
    assert not (tmp_path / "small.tar").exists()
    (tmp_path / "taken.tar").write_text("mine")
    with pytest.raises(runner_bundle.BundleError) as refused:
        runner_bundle.export(tmp_path / "taken.tar", **folders(tmp_path), max_mb=16)
    says(str(refused.value), "taken.tar", "--force")
    assert (tmp_path / "taken.tar").read_text() == "mine"
    assert (tmp_path / "taken.tar").read_text() == "mine"
    (tmp_path / "broken.tar").write_bytes(b"not a tar")
    assert (
        bundle.main(
            ["import", str(tmp_path / "broken.tar"), "--results", str(tmp_path / "elsewhere")]
        )
        == 2
    )


def test_a_two_dimensional_run_keeps_its_frames_small(tmp_path):
    """Per-epoch frames are float16 on at most 5000 points per split: ~53 KB an epoch, ~5 MB for 100 epochs."""
    from experiments.datasets.specs import get_spec
    from experiments.engine.config import RunConfig
    from experiments.engine.context import RunContext
    from experiments.engine.data import DeviceData
    from experiments.engine.records import FRAME_POINTS
    from experiments.engine.trainer import Trainer

    cfg = RunConfig(
        dataset="synthetic",
        loss="standalone",
        epochs=1,
        batch_size=64,
        train_size=1024,
        test_size=500,
    )
    embeddings = (
        torch.randn(10000, 2),
        torch.randint(0, 10, (10000,)),
        torch.randn(6000, 2),
        None,
        torch.randint(0, 10, (6000,)),
    )
    data = DeviceData(get_spec("synthetic"), tmp_path, torch.device("cpu"), 1024, 500)
    trainer = Trainer(cfg, data, tmp_path, RunContext(device=torch.device("cpu"), progress=False))
    trainer.history = [{"epoch": 1}]
    frame = trainer.feature_frame(embeddings, 0.5, FRAME_POINTS)
    assert frame["train_features"].shape == (5000, 2) and frame["test_features"].shape == (5000, 2)
    assert frame["test_features"].dtype == torch.float16
    torch.save(frame, tmp_path / "frame.pt")
    assert (tmp_path / "frame.pt").stat().st_size * 100 < 5.5 * 2**20
    again = trainer.feature_frame(embeddings, 0.5, FRAME_POINTS)
    assert torch.equal(frame["test_labels"], again["test_labels"])  # the same points every epoch


@pytest.mark.slow
def test_the_worker_data_cache_tells_known_class_splits_apart(tmp_path):
    """A worker reuses the dataset on its device only for the same split: open-set runs differ by known classes."""
    args = grid.parse_args(ONE + ["--seeds", "0", "--epochs", "1"] + checkout(tmp_path))
    a, b = plan(dataclasses.replace(grid.grid_spec(args), known_classes=["0-5", ""]))
    assert (a.known_classes, b.known_classes) == ("0-5", "")
    stop = backends.Stop(tmp_path / "no-stop", None)
    settings = run_settings(args, args.results)
    assert (
        backends.train_run(a, settings, None, stop, None).result["ood_dataset"] == "unknown classes"
    )
    assert backends.train_run(b, settings, None, stop, None).result["ood_dataset"] == "noise"


def test_the_worker_data_cache_tells_data_roots_and_devices_apart(tmp_path, monkeypatch):
    """Before: the key held the split only, so a second grid in the same process with another data root
    (or device) trained on the first one's tensors."""
    from experiments.engine.config import RunConfig

    loaded = []
    backends.device_data.cache_clear()
    monkeypatch.setattr(backends, "prepare_run", lambda *a: None)
    monkeypatch.setattr(
        backends, "load_data", lambda cfg, root, device: loaded.append(root) or root
    )
    monkeypatch.setattr(backends, "run_one", lambda cfg, ctx, data: {"data": data})
    cfg = RunConfig(dataset="synthetic", loss="xent", epochs=1)
    for root in ("a", "a", "b"):
        settings = backends.RunSettings(
            out=tmp_path / "runs", results=tmp_path / "results", data_root=tmp_path / root
        )
        assert backends.train_cached(cfg, settings, torch.device("cpu"), lambda: False) == {
            "data": tmp_path / root
        }
    assert loaded == [tmp_path / "a", tmp_path / "b"]
    backends.device_data.cache_clear()  # it holds this test's fake data


def test_a_bundle_that_is_not_there_is_named_as_missing_not_as_unreadable(tmp_path):
    with pytest.raises(runner_bundle.BundleError) as refused:  # it said "... export it again"
        runner_bundle.import_bundle(
            tmp_path / "grid.tar", tmp_path / "r", tmp_path / "i", tmp_path / "runs"
        )
    assert str(refused.value) == (
        f"{tmp_path / 'grid.tar'}: no such file; give the path of the bundle's tar file"
    )
    with pytest.raises(runner_bundle.BundleError, match="a folder; give the path"):
        runner_bundle.import_bundle(tmp_path, tmp_path / "r", tmp_path / "i", tmp_path / "runs")
    (tmp_path / "noise.tar").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(runner_bundle.BundleError) as refused:  # it was tarfile's five lines
        runner_bundle.import_bundle(
            tmp_path / "noise.tar", tmp_path / "r", tmp_path / "i", tmp_path / "runs"
        )
    assert str(refused.value).endswith(
        "noise.tar: not a readable bundle (not a tar file, nor a compressed one); export it again"
    )
