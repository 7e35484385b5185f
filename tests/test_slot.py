"""One GPU slot, one command, end to end on the CPU: pack, self-check, train to the budget, export; the next
slot imports the bundle on a bare machine, resumes and finishes."""

import json
import shutil
import tarfile

import pytest

from experiments import check_env, slot
from experiments.ledger.rows import read_rows
from experiments.runners import backends, bundle
from experiments.slot import pack as _pack  # noqa: F401 (slot.pack for monkeypatch)
from tests.conftest import says

# one run of 3 epochs on 256 images; the first slot's budget runs out during its first epoch (the grid's stop,
# made to say so: deterministic, unlike a clock), so it leaves the run to resume, and the second slot finishes it
GRID = [
    "--device",
    "cpu",
    "--datasets",
    "synthetic",
    "--feat-dims",
    "8",
    "--losses",
    "standalone",
    "--seeds",
    "0",
    "--epochs",
    "3",
    "--train-size",
    "256",
    "--test-size",
    "100",
    "--check-steps",
    "3",
]


def machine(root):
    return ["--results", str(root / "results"), "--runs", str(root / "runs")]


@pytest.mark.slow
def test_a_slot_stops_at_its_budget_and_the_next_slot_resumes_from_its_bundle_and_finishes(
    tmp_path, capsys, monkeypatch
):
    here, gpu1, gpu2 = tmp_path / "here", tmp_path / "gpu1", tmp_path / "gpu2"
    carry, carry2 = tmp_path / "carry", tmp_path / "carry2"
    assert slot.main(["--pack", str(carry), "--datasets", "synthetic"] + machine(here)) == 0
    assert "slot: packed" in capsys.readouterr().out and (carry / slot.MARKER).exists()

    argv = (
        ["--minutes", "1", "--out", str(tmp_path / "out1"), "--carry", str(carry)]
        + GRID
        + machine(gpu1)
    )
    with monkeypatch.context() as m:  # the grid's budget, as if it ran out during the first epoch
        m.setattr(backends.Stop, "allows", lambda self, estimate_s: True)
        m.setattr(backends.Stop, "__call__", lambda self: True)
        assert slot.main(argv) == 0
    first = json.loads((tmp_path / "out1" / "summary.json").read_text())
    planned = first[
        "budget_s"
    ]  # the budget holds: the grid's time, the export and the epoch in flight fit in it
    assert planned["grid"] > 0
    assert planned["grid"] + planned["export"] + 1.2 * planned["epoch"] <= 1 * 60
    assert (
        first["self_check"]["verdict"] == "skipped"
        and first["problems"] == []
        and first["exit_code"] == 0
    )
    assert first["self_check"]["reason"].startswith(
        "no CUDA device: the graph-pool probe and the graphed steps are skipped"
    )
    assert first["steps"] == "eager steps (CPU)" and first["grid_exit"] == 0
    assert "--epochs 3" in first["departs"] and "--datasets synthetic" in first["departs"]
    assert (
        first["cells"]["per_seed"]["0"]["planned"] == 1
        and first["cells"]["per_seed"]["0"]["done"] == 0
    )
    assert first["cells"]["unfinished"] and all(
        e.endswith("/3") for e in first["cells"]["unfinished"].values()
    )
    assert first["measured"]["epochs_trained"] == 1 and first["measured"]["s_per_epoch"] > 0
    again = ["--minutes", "1", "--out", "$OUT"] + argv[
        4:
    ]  # the same command: --carry, --device and the grid
    ledger = (
        f"--results {gpu1 / 'results'} --runs {gpu1 / 'runs'}"  # the ledger this slot trained for
    )
    assert first["next"] == [
        f"here, with the returned files: ./suite bundle import grid.tar {ledger}",
        f"here: ./suite slot --pack {carry} --datasets synthetic {ledger}",
        "in the next slot: python3 -m experiments.slot " + " ".join(again),
    ]
    text = (tmp_path / "out1" / "summary.txt").read_text()
    assert (
        "self-check: SKIPPED" in text
        and "cells recorded: seed 0" in text
        and "unfinished (epochs done)" in text
    )
    assert (
        "epoch   1" in (tmp_path / "out1" / "slot.log").read_text()
    )  # the grid's own lines are in the log
    with tarfile.open(first["bundle"][0]) as tar:
        names = tar.getnames()
    assert "results/runs.csv" in names and any(n.endswith("checkpoint.pt") for n in names)
    assert not any(
        n.startswith("imgs/") for n in names
    )  # pictures are generated where the bundle is imported

    # here: the returned files are imported and packed again; the next slot runs on a bare machine
    bundle.import_bundle(
        first["bundle"], here / "results", here / "results" / "imgs", here / "runs"
    )
    assert slot.main(["--pack", str(carry2), "--datasets", "synthetic"] + machine(here)) == 0
    assert (
        slot.main(
            ["--minutes", "2", "--out", str(tmp_path / "out2"), "--carry", str(carry2)]
            + GRID
            + machine(gpu2)
        )
        == 0
    )  # time enough to finish on a loaded machine; it ends when done
    second = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert (
        second["cells"]["per_seed"]["0"] == {"done": 1, "planned": 1}
        and second["cells"]["unfinished"] == {}
    )
    says(second["next"][-1], "every planned cell", "results/", "imgs/", "README.md")
    log = (tmp_path / "out2" / "slot.log").read_text()
    assert "bundle: imported" in log and "resuming after epoch" in log
    rows = read_rows(gpu2 / "results" / "runs.csv")
    assert [r["loss"] for r in rows] == ["standalone"] and {r["status"] for r in rows} == {
        "finished"
    }
    resumed = [r for r in rows if r["run_id"] in first["cells"]["unfinished"]]
    assert resumed and all(r["epochs_done"] == "3" for r in resumed)
    counts = bundle.import_bundle(
        second["bundle"], here / "results", here / "results" / "imgs", here / "runs"
    )
    assert len(read_rows(here / "results" / "runs.csv")) == 1 and counts["rows added"] == 1


def test_a_slot_that_meets_problems_says_so_in_its_summary_and_exit_code(tmp_path, capsys):
    common = ["--out", str(tmp_path / "out"), "--device", "cpu"] + GRID[2:] + machine(tmp_path)
    assert slot.main(["--minutes", "0.1", "--carry", str(tmp_path / "nowhere")] + common) == 1
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["problems"][0].startswith(
        f"carry: {tmp_path / 'nowhere'} is not a folder made by `./suite slot --pack`"
    )
    assert "no time left for training" in (tmp_path / "out" / "slot.log").read_text()
    assert s["problems"][-1].startswith("grid: no time left for training") and s["exit_code"] == 1
    for bad, line in (
        (["--losses", "xent", "softmaxx"], "--losses softmaxx: unknown; choose from xent, cent"),
        (["--datasets", "imagenet"], "--datasets imagenet: unknown; choose from mnist"),
    ):
        capsys.readouterr()
        assert slot.main(["--minutes", "1", "--carry", str(tmp_path)] + common + bad) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and line in err
        assert (
            line in (tmp_path / "out" / "summary.txt").read_text()
            and line in (tmp_path / "out" / "slot.log").read_text()
        )
        assert json.loads((tmp_path / "out" / "summary.json").read_text())["next"] == [
            "fix what the problem line names, then run the same command again"
        ]
    # a run that fails is named, and the slot's exit code says so
    capsys.readouterr()
    assert (
        slot.main(
            ["--minutes", "0.4", "--carry", str(tmp_path)]
            + common
            + ["--train-size", "5", "--losses", "xent"]
        )
        == 1
    )
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert any(p.startswith("run xent-synthetic") and "failed" in p for p in s["problems"]), s[
        "problems"
    ]


def test_a_python_without_what_the_suite_needs_is_named_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        check_env, "problems", lambda tests: ["optuna: not installed (need >= 4.0)"]
    )
    assert (
        slot.main(["--minutes", "1", "--out", str(tmp_path / "out"), "--carry", str(tmp_path)]) == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lacks what the suite needs: optuna: not installed" in err
    assert (
        "lacks what the suite needs" in (tmp_path / "out" / "summary.txt").read_text()
    )  # it comes back too


def test_pack_carries_the_data_the_bundle_and_the_wheels_the_gpu_machine_lacks(
    tmp_path, monkeypatch, capsys
):
    from experiments.datasets import specs as datasets
    from tests.idx_files import write_tiny_mnist  # tiny MNIST-layout files with their own md5s

    root = tmp_path / "data"
    spec, _ = write_tiny_mnist(root, "mnist")
    monkeypatch.setitem(datasets.SPECS, "mnist", spec)
    (tmp_path / "results").mkdir()
    from experiments.ledger.rows import start_ledger

    start_ledger(tmp_path / "results")
    monkeypatch.setattr(slot.pack, "carried_requirements", lambda: ["pytorch-metric-learning>=2.9"])
    got = []
    monkeypatch.setattr(
        slot.pack,
        "download_wheel",
        lambda req, dest: (
            got.append(req)
            or dest.mkdir(parents=True, exist_ok=True)
            or (dest / "pytorch_metric_learning-2.9.0-py3-none-any.whl").write_bytes(b"w")
        ),
    )
    carry = tmp_path / "carry"
    assert (
        slot.main(
            [
                "--pack",
                str(carry),
                "--datasets",
                "mnist",
                "--data-root",
                str(root),
                "--results",
                str(tmp_path / "results"),
                "--runs",
                str(tmp_path / "runs"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert got == ["pytorch-metric-learning>=2.9"]
    assert sorted(p.name for p in (carry / "data" / "mnist").iterdir()) == sorted(
        f"{n}.gz" for n in spec.files
    )
    assert (
        carry / "grid.tar"
    ).exists() and "MiB): datasets mnist; bundle grid.tar; wheels pytorch_metric" in out
    # a folder that --pack did not make is never overwritten
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert slot.main(["--pack", str(mine), "--datasets", "synthetic"]) == 2
    assert (mine / "notes.txt").read_text() == "keep"
    # over the size cap: refused, naming the largest file
    assert (
        slot.main(
            [
                "--pack",
                str(carry),
                "--datasets",
                "mnist",
                "--data-root",
                str(root),
                "--max-mb",
                "0.000001",
                "--results",
                str(tmp_path / "results"),
                "--runs",
                str(tmp_path / "runs"),
            ]
        )
        == 2
    )
    assert "--max-mb" in capsys.readouterr().err.splitlines()[-1]


def test_a_bundle_cut_into_parts_imports_whole_and_refuses_a_missing_part(tmp_path):
    results, runs = tmp_path / "results", tmp_path / "runs"
    from experiments.ledger.rows import start_ledger

    start_ledger(results)
    (results / "frames").mkdir()
    for k in range(3):
        (results / "frames" / f"r{k}.pt").write_bytes(bytes(600 * 1024))
    counts = bundle.export(
        tmp_path / "b" / "grid.tar", results, results / "imgs", runs, max_mb=16, part_mb=1
    )
    assert [p.name for p in counts["files"]] == ["grid.tar", "grid.2.tar", "grid.3.tar"]
    assert all(p.stat().st_size <= 2**20 for p in counts["files"])
    with pytest.raises(bundle.BundleError, match="part 3 of 3 is missing"):
        bundle.import_bundle(counts["files"][:2], results, results / "imgs", runs)
    other = bundle.export(
        tmp_path / "c" / "grid.tar", results, results / "imgs", runs, max_mb=16, part_mb=1
    )
    with pytest.raises(bundle.BundleError, match="parts of different bundles"):
        bundle.import_bundle(
            counts["files"][:2] + other["files"][2:], results, results / "imgs", runs
        )
    shutil.rmtree(results / "frames")
    bundle.import_bundle(counts["files"], results, results / "imgs", runs)
    assert sorted(p.name for p in (results / "frames").iterdir()) == ["r0.pt", "r1.pt", "r2.pt"]
    # a shorter bundle of the same name replaces the old parts, leaving none behind
    shutil.rmtree(results / "frames")
    counts = bundle.export(
        tmp_path / "b" / "grid.tar",
        results,
        results / "imgs",
        runs,
        max_mb=16,
        part_mb=1,
        force=True,
    )
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["grid.tar"]
