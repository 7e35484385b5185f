"""What the repository ships is what the current code produces."""
import dataclasses
import os
from pathlib import Path

import pytest
import torch

from experiments.ledger.fingerprint import code_fingerprint
from experiments.ledger.rows import read_rows
from experiments.engine.device import device_name
from experiments.report import config_of
from experiments.engine.data import load_data
from experiments.engine.trainer import Trainer
from tests.conftest import THREADS, dataset_root

REPO = Path(__file__).resolve().parent.parent
SHIPPED = read_rows(REPO / "results" / "runs.csv")


def test_every_shipped_row_is_a_config_of_the_current_code():
    for row in SHIPPED:
        assert config_of(row).run_id == row["run_id"], "run ids changed: regenerate the shipped rows"


@pytest.fixture
def machine_threads():
    """Every core's thread, as a run uses the machine (a test worker has fewer), for this test only."""
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(THREADS)


def test_the_cheapest_shipped_cpu_row_reproduces_its_first_epoch_exactly(tmp_path, machine_threads):
    """The shipped row recorded by the code as it is now, on this kind of CPU, whose epochs are cheapest: its
    first epoch trained again gives the very accuracies its epochs.csv row holds (one epoch, not the whole run,
    keeps the test short; the later epochs follow from the same code)."""
    cpu_rows = [r for r in SHIPPED if r["status"] == "finished" and r["device"].startswith("cpu")
                and not r.get("superseded_by")]
    if not cpu_rows:
        pytest.skip("no CPU row is shipped")
    here = device_name(torch.device("cpu"))
    same = [r for r in cpu_rows if r["device"] == here
            and r.get("code_fingerprint") == code_fingerprint(r["loss"], r["model"])]
    if not same:  # other threads or other SIMD kernels give other float bits, and a short run amplifies them
        pytest.skip(f"no shipped CPU row was made by this code on {here} (they were made on "
                    f"{', '.join(sorted({r['device'] for r in cpu_rows}))})")
    row = min(same, key=lambda r: float(r["wall_s"]) / int(r["epochs_done"]))
    cfg = config_of(row)
    root = dataset_root(cfg.dataset)
    if root is None:
        pytest.skip(f"{cfg.dataset} is not available here")
    [first] = [e for e in read_rows(REPO / "results" / "epochs.csv") if e["run_id"] == row["run_id"]
               and e["code_fingerprint"] == row["code_fingerprint"] and e["epoch"] == "1"]
    data = load_data(cfg, root, torch.device("cpu"))
    one_epoch = dataclasses.replace(cfg, epochs=1)
    Trainer(one_epoch, data, torch.device("cpu"), tmp_path, progress=False, log=lambda *_: None).fit()
    [again] = read_rows(tmp_path / "metrics.csv")
    split = "test" if cfg.protocol == "reference" else "val"
    for name in (f"{split}_acc", "train_acc"):
        assert float(again[name]) == float(first[name]), (row["run_id"], name)
