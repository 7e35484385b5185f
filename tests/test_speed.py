"""The fast paths give the same results as the plain ones.

The CUDA-graph tests need a GPU and are skipped without one; the CPU tests
cover the eager step, the bench and packed runs.
"""

import csv

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from centersuite.losses import LOSSES
from experiments import bench, grid
from experiments.engine.augment import Augment
from experiments.engine.config import RunConfig
from experiments.engine.data import epoch_batches
from experiments.engine.run import RunContext
from experiments.engine.trainer import Trainer
from experiments.ledger.rows import read_rows
from experiments.probes import bench as probe
from experiments.runners import backends
from experiments.runners.backends import graph_safe
from tests.test_grid import grid_dirs


def first_losses(data, device, use_graph, steps=8, precision="fp32"):
    cfg = RunConfig(
        dataset="synthetic",
        loss="standalone",
        feat_dim=16,
        batch_size=64,
        lr=0.05,
        augment="none",
        precision=precision,
        train_size=1024,
        test_size=500,
    )
    trainer = Trainer(
        cfg, data, "/tmp/unused", RunContext(device=device, progress=False, use_graph=use_graph)
    )
    step = trainer.make_step()
    torch.manual_seed(123)
    batches = epoch_batches(len(data.train_labels), 64, device)
    return torch.stack([step(batches[i])[0].clone() for i in range(steps)]).cpu(), trainer


@pytest.mark.slow
def test_eager_steps_are_reproducible_from_the_seed(synthetic_data):
    a, _ = first_losses(synthetic_data, torch.device("cpu"), use_graph=False)
    b, _ = first_losses(synthetic_data, torch.device("cpu"), use_graph=False)
    assert torch.equal(a, b) and a[-1] < a[0]  # the same numbers, and it learns


class HostSyncs(TorchDispatchMode):
    """Records the ops that make a CUDA stream wait for the host (and so break graph capture):
    reading a value (``.item()``, ``bool()``), ops whose output shape depends on the data, and
    ``lift_fresh``: a tensor made from a Python value (``torch.tensor(x, device=...)``), a blocking
    host-to-device copy on CUDA."""

    SYNCING = (
        "_local_scalar_dense",
        "lift_fresh",
        "nonzero",
        "masked_select",
        "_unique",
        "unique_dim",
        "unique_consecutive",
        "bincount",
        "repeat_interleave",
        "is_nonzero",
        "equal",
    )

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        mask_index = name in ("index", "index_put", "index_put_", "_index_put_impl_") and any(
            i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1]
        )  # x[mask]: a nonzero on CUDA
        if name in self.SYNCING or mask_index:
            self.seen.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "loss, rule",
    [(loss, "joint") for loss in LOSSES] + [("cent", "separate"), ("standalone", "wen")],
)
def test_the_training_step_waits_for_the_host_only_where_the_loss_declares_it(
    loss, rule, synthetic_data, tmp_path
):
    # what the CUDA graph captures must not sync; checked op by op on the CPU path, which runs the same code; a
    # loss that syncs (pytorch-metric-learning's masks and miners) declares graph_safe = False and runs eagerly
    cfg = RunConfig(
        dataset="synthetic",
        loss=loss,
        center_rule=rule,
        feat_dim=16,
        batch_size=64,
        train_size=1024,
        test_size=500,
    )
    trainer = Trainer(
        cfg,
        synthetic_data,
        tmp_path,
        RunContext(device=torch.device("cpu"), progress=False, use_graph=False),
    )
    index = epoch_batches(len(synthetic_data.train_labels), 64, torch.device("cpu"))[0]
    with HostSyncs() as syncs:
        out = trainer.train_step(index)
    assert (syncs.seen == []) == graph_safe(loss) and torch.isfinite(out).all()


def test_a_loss_that_syncs_runs_eagerly_on_cuda_and_its_run_says_so():
    lines = []
    ctx = RunContext(device=torch.device("cuda"), data_root="data", out="runs", log=lines.append)
    assert backends.eager_for_loss(ctx, "standalone", torch.device("cuda")) is ctx
    assert backends.eager_for_loss(ctx, "arcface", torch.device("cpu")) is ctx
    assert lines == []
    assert backends.eager_for_loss(ctx, "arcface", torch.device("cuda")).use_graph is False
    assert len(lines) == 1 and "arcface syncs with the host" in lines[0]


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "cifar-10"])
def test_augmentation_never_waits_for_the_host(dataset):
    channels, size = (3, 32) if dataset == "cifar-10" else (1, 28)
    images = torch.randint(0, 256, (64, channels, size, size), dtype=torch.uint8)
    with HostSyncs() as syncs:
        Augment(dataset, "reference")(images)
    assert syncs.seen == []


def test_the_host_sync_detector_sees_a_sync():
    with HostSyncs() as syncs:
        x = torch.arange(6.0)
        x[x > 4] = 0.0
        x[x > 2].sum().item()
        torch.tensor(float("nan"))
    assert syncs.seen == [
        "lift_fresh.default",
        "index_put_.default",
        "index.Tensor",
        "_local_scalar_dense.default",
        "lift_fresh.default",
    ]  # x[m] = 0.0 lifts 0.0 too


@pytest.mark.gpu
@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-3), ("bf16", 3e-2)])
def test_graph_step_gives_the_eager_losses(synthetic_data, precision, tolerance):
    from experiments.datasets.specs import get_spec
    from experiments.engine.data import DeviceData

    data = DeviceData(get_spec("synthetic"), "data", torch.device("cuda"), 1024, 500)
    eager, _ = first_losses(data, torch.device("cuda"), use_graph=False, precision=precision)
    graphed, trainer = first_losses(data, torch.device("cuda"), use_graph=True, precision=precision)
    assert torch.allclose(eager, graphed, rtol=tolerance, atol=tolerance), (eager, graphed)


@pytest.mark.gpu
def test_graph_and_eager_runs_reach_the_same_accuracy(tmp_path):
    from experiments.datasets.specs import get_spec
    from experiments.engine.data import DeviceData

    device = torch.device("cuda")
    data = DeviceData(get_spec("synthetic"), "data", device, 1024, 500)
    cfg = RunConfig(
        dataset="synthetic",
        loss="cent",
        feat_dim=16,
        epochs=12,
        batch_size=64,
        lr=0.05,
        lr_patience=2,
        train_size=1024,
        test_size=500,
    )  # patience 2: the lr drops, graph recaptured
    eager = Trainer(
        cfg, data, tmp_path / "eager", RunContext(device=device, progress=False, use_graph=False)
    ).fit()
    trainer = Trainer(
        cfg, data, tmp_path / "graph", RunContext(device=device, progress=False, use_graph=True)
    )
    graphed = trainer.fit()
    assert trainer.step.captures >= 2  # the lr changed and the step was recaptured
    assert abs(eager["final_test_acc"] - graphed["final_test_acc"]) < 0.05


@pytest.mark.slow
def test_bench_runs_on_the_cpu_and_writes_its_figures_beside_the_plain_loop(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    assert (
        bench.main(
            [
                "--device",
                "cpu",
                "--datasets",
                "synthetic",
                "--modes",
                "eager",
                "--precisions",
                "fp32",
                "--steps",
                "2",
                "--packed",
                "2",
                "--losses",
                "standalone",
                "--train-size",
                "256",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [(r["mode"], r["precision"]) for r in rows] == [
        (probe.PLAIN, "fp32"),
        ("eager", "fp32"),
        ("packed x2 (eager)", "fp32"),
    ]
    assert all(float(r["train_images_per_s"]) > 0 and r["finite"] == "True" for r in rows)
    plain, eager = rows[0], rows[1]
    assert float(plain["x_plain"]) == 1.0 and float(eager["x_plain"]) > 0
    assert (
        float(eager["eval_s"]) > 0
        and float(eager["eval_system_s"]) >= 0
        and int(eager["eval_images"]) == 500 + 256
    )
    assert "x plain" in capsys.readouterr().out


@pytest.mark.slow
def test_packed_runs_record_what_sequential_runs_record(tmp_path):
    args = [
        "--datasets",
        "synthetic",
        "--losses",
        "xent",
        "standalone",
        "--feat-dims",
        "8",
        "--seeds",
        "0",
        "--epochs",
        "2",
        "--train-size",
        "128",
        "--test-size",
        "50",
        "--batch-size",
        "32",
        "--no-progress",
        "--no-report",
    ]
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    assert grid.main(args + ["--runs-per-gpu", "1"] + grid_dirs(tmp_path / "one")) == 0
    assert grid.main(args + ["--runs-per-gpu", "2"] + grid_dirs(tmp_path / "two")) == 0
    one = {r["run_id"]: r for r in read_rows(tmp_path / "one" / "results" / "runs.csv")}
    two = {r["run_id"]: r for r in read_rows(tmp_path / "two" / "results" / "runs.csv")}
    assert one.keys() == two.keys() and len(one) == 2
    for run_id in one:
        assert one[run_id]["status"] == two[run_id]["status"] == "finished"
        assert one[run_id]["epochs_done"] == two[run_id]["epochs_done"]
        # other thread counts may change the last float bits, not the outcome
        assert (
            abs(float(one[run_id]["final_test_acc"]) - float(two[run_id]["final_test_acc"])) < 0.05
        )


def test_evaluation_syncs_once_whatever_the_number_of_batches(synthetic_data, tmp_path):
    from centersuite.eval.embedding import embedding_metrics
    from centersuite.eval.metrics import embed, evaluate_embeddings

    cfg = RunConfig(dataset="synthetic", loss="cent", feat_dim=16, train_size=1024, test_size=500)
    trainer = Trainer(
        cfg,
        synthetic_data,
        tmp_path,
        RunContext(device=torch.device("cpu"), progress=False, use_graph=False),
    )
    images, labels = synthetic_data.split("test")
    with HostSyncs() as syncs:
        features, logits = embed(trainer.model, images, batch_size=64)  # 8 batches
        evaluate_embeddings(trainer.loss, features, labels, features, logits, labels)
    assert syncs.seen == []
    with HostSyncs() as syncs:
        embedding_metrics(features, labels, features, labels, 10)
    assert syncs.seen == ["_local_scalar_dense.default"]  # MAP@R's neighbour count, once
