"""What the repository ships is what the current code produces."""
from pathlib import Path

import pytest
import torch

from experiments.ledger import read_rows
from experiments.provenance import device_name
from experiments.report import config_of
from experiments.data import load_data
from experiments.trainer import Trainer
from tests.conftest import dataset_root

REPO = Path(__file__).resolve().parent.parent
SHIPPED = read_rows(REPO / "results" / "runs.csv")


def test_every_shipped_row_is_a_config_of_the_current_code():
    for row in SHIPPED:
        assert config_of(row).run_id == row["run_id"], "run ids changed: regenerate the shipped rows"


def test_the_cheapest_shipped_cpu_row_reproduces_exactly(tmp_path):
    cpu_rows = [r for r in SHIPPED if r["status"] == "finished" and r["device"].startswith("cpu")]
    if not cpu_rows:
        pytest.skip("no CPU row is shipped")
    here = device_name(torch.device("cpu"))
    same = [r for r in cpu_rows if r["device"] == here]
    if not same:  # other threads or other SIMD kernels give other float bits, and a short run amplifies them
        pytest.skip(f"no shipped CPU row was made on {here} (they were made on "
                    f"{', '.join(sorted({r['device'] for r in cpu_rows}))})")
    row = min(same, key=lambda r: float(r["wall_s"]))
    cfg = config_of(row)
    root = dataset_root(cfg.dataset)
    if root is None:
        pytest.skip(f"{cfg.dataset} is not available here")
    data = load_data(cfg, root, torch.device("cpu"))
    result = Trainer(cfg, data, torch.device("cpu"), tmp_path, progress=False, log=lambda *_: None).fit()
    assert (result["final_test_acc"], result["best_test_acc"]) == (float(row["final_test_acc"]),
                                                                   float(row["best_test_acc"])), row["run_id"]
