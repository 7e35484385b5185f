"""What the repository ships is what the current code produces."""

import dataclasses
import os
import re
from pathlib import Path

import pytest
import torch

from experiments.engine.context import RunContext
from experiments.engine.data import load_data
from experiments.engine.device import device_name
from experiments.engine.trainer import Trainer
from experiments.ledger.fingerprint import code_fingerprint
from experiments.ledger.rows import read_rows
from experiments.report import config_of
from tests.conftest import THREADS, dataset_root

REPO = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")
SHIPPED = read_rows(REPO / "results" / "runs.csv")


def test_every_shipped_row_is_a_config_of_the_current_code():
    assert SHIPPED, "results/runs.csv holds no row: the README's tables rest on nothing"
    for row in SHIPPED:
        assert config_of(row).run_id == row["run_id"], (
            "run ids changed: regenerate the shipped rows"
        )


def test_a_row_from_before_an_option_existed_reads_as_the_value_it_ran_with():
    """sphereface's margin became an option (sphere_margin, default 1) after its rows ran at the library's 4:
    those rows read as 4, keep their ids, and share them with a run given 4 now; a run at 1 is another run."""
    [old, *_] = [r for r in SHIPPED if r["loss"] == "sphereface" and r["loss_options"] == "{}"]
    config = config_of(old)
    assert config.loss_options == {"sphere_margin": 4.0} and config.run_id == old["run_id"]
    assert dataclasses.replace(config, loss_options={"sphere_margin": 4.0}).run_id == old["run_id"]
    assert dataclasses.replace(config, loss_options={}).run_id != old["run_id"]  # the default, 1


def threads_of(device: str) -> int | None:
    """The thread count a CPU row was made with: ``cpu (2 threads, AVX2, oneDNN avx2)`` -> 2 (also the older
    labels without oneDNN's instruction set)."""
    found = re.match(r"cpu \((\d+) threads?, ", device)
    return int(found[1]) if found else None


@pytest.fixture
def row_threads():
    """Sets torch's thread count for this test only (a test worker has its own): CPU float bits depend on it."""
    yield torch.set_num_threads
    torch.set_num_threads(THREADS)


def here_with(threads: int) -> str:
    """This machine's CPU label at that many threads (experiments/engine/device.py)."""
    return re.sub(
        r"\(\d+ threads?, ", f"({threads} thread{'s' if threads != 1 else ''}, ", device_name(CPU)
    )


@pytest.mark.slow
def test_the_cheapest_shipped_cpu_row_reproduces_its_first_epoch_exactly(tmp_path, row_threads):
    """The shipped row recorded by the code as it is now, on this kind of CPU (its SIMD kernels, and a thread
    count this machine has), whose epochs are cheapest: its first epoch trained again with the row's threads
    gives the very accuracies its epochs.csv row holds (one epoch, not the whole run, keeps the test short; the
    later epochs follow from the same code)."""
    cpu_rows = [
        r
        for r in SHIPPED
        if r["status"] == "finished"
        and r["device"].startswith("cpu")
        and not r.get("superseded_by")
    ]
    if not cpu_rows:
        pytest.skip("no CPU row is shipped")
    kernels = torch.backends.cpu.get_cpu_capability()
    current = [
        r for r in cpu_rows if r.get("code_fingerprint") == code_fingerprint(r["loss"], r["model"])
    ]
    if not current:
        pytest.skip(
            f"none of the {len(cpu_rows)} shipped CPU rows was recorded by the code as it is now (all stale: "
            "`./suite grid --retrain-stale` records them again)"
        )
    same = [
        r
        for r in current
        if (n := threads_of(r["device"])) is not None
        and n <= (os.cpu_count() or 1)
        and r["device"] == here_with(n)
    ]
    if not same:  # other SIMD kernels give other float bits, and a short run amplifies them
        pytest.skip(
            f"no shipped CPU row was made by this code with {kernels} kernels, oneDNN's instruction set here and at most "
            f"{os.cpu_count()} threads (the current ones were made on {', '.join(sorted({r['device'] for r in current}))})"
        )
    row = min(
        same, key=lambda r: float(r["wall_s"]) / int(r["epochs_done"]) * threads_of(r["device"])
    )
    row_threads(threads_of(row["device"]))
    assert device_name(torch.device("cpu")) == row["device"]
    cfg = config_of(row)
    root = dataset_root(cfg.dataset)
    if root is None:
        pytest.skip(f"{cfg.dataset} is not available here")
    [first] = [
        e
        for e in read_rows(REPO / "results" / "epochs.csv")
        if e["run_id"] == row["run_id"]
        and e["code_fingerprint"] == row["code_fingerprint"]
        and e["epoch"] == "1"
    ]
    data = load_data(cfg, root, torch.device("cpu"))
    one_epoch = dataclasses.replace(cfg, epochs=1)
    Trainer(
        one_epoch,
        data,
        tmp_path,
        RunContext(device=torch.device("cpu"), progress=False, log=lambda *_: None),
    ).fit()
    [again] = read_rows(tmp_path / "metrics.csv")
    recorded = [
        n for n in ("test_acc", "val_acc", "train_acc") if first.get(n)
    ]  # protocol last: no held-out
    assert "train_acc" in recorded  # accuracy per epoch, only a final test
    for name in recorded:
        assert float(again[name]) == float(first[name]), (row["run_id"], name)
