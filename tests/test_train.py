"""End to end: the shared trainer learns with every loss; divergence, resume, real data."""

import json

import pytest
import torch

from experiments.datasets.specs import get_spec
from experiments.engine.config import RunConfig
from experiments.engine.context import RunContext
from experiments.engine.data import DeviceData
from experiments.engine.trainer import Trainer
from tests.conftest import fashion_mnist_root

CPU = torch.device("cpu")


# 3 epochs of 24 steps on 768 images, tested on 200, 256 training images embedded per epoch (for the class
# means): every loss here reaches 1.0 on the synthetic set, centers-only (at the reference lr) about 0.6
TRAIN, TEST = 768, 200


def synthetic_config(loss, **kw):
    base = dict(
        dataset="synthetic",
        loss=loss,
        feat_dim=16,
        epochs=3,
        batch_size=32,
        lr=0.05,
        train_size=TRAIN,
        test_size=TEST,
        eval_train_size=256,
    )
    return RunConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def synthetic_data():
    """The data of ``synthetic_config`` (the session's 1024/500 images are more than these tests need)."""
    return DeviceData(get_spec("synthetic"), "data", CPU, train_size=TRAIN, test_size=TEST)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["xent", "cent", "standalone"])
def test_every_loss_learns_a_separable_problem(loss, synthetic_data, tmp_path):
    cfg = synthetic_config(loss)
    result = Trainer(
        cfg, synthetic_data, tmp_path / cfg.run_id, RunContext(device=CPU, progress=False)
    ).fit()
    assert result["status"] == "finished" and result["epochs_done"] == 3
    assert result["final_test_acc"] > 0.9
    assert result["final_test_acc_center"] > 0.9
    run_dir = tmp_path / cfg.run_id
    assert json.loads((run_dir / "result.json").read_text())["run_id"] == cfg.run_id
    assert len((run_dir / "metrics.csv").read_text().strip().splitlines()) == 4
    state = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert ("center_params.weight" in state["loss"]) == (loss != "xent")


@pytest.mark.slow
def test_two_dimensional_features_are_saved_per_epoch(synthetic_data, tmp_path):
    cfg = synthetic_config("standalone", feat_dim=2, epochs=2)
    Trainer(cfg, synthetic_data, tmp_path, RunContext(device=CPU, progress=False)).fit()
    frames = sorted((tmp_path / "features").glob("epoch_*.pt"))
    assert [f.name for f in frames] == [
        "epoch_000.125.pt",
        "epoch_000.250.pt",
        "epoch_000.500.pt",
        "epoch_001.pt",
        "epoch_002.pt",
    ]
    frame = torch.load(frames[-1])
    assert frame["test_features"].shape == (TEST, 2) and frame["centers"].shape == (10, 2)
    assert frame["train_features"].shape == (256, 2) and frame["epoch"] == 2  # the per-epoch subset
    early = torch.load(frames[0])
    assert (
        early["epoch"] == 0.125
        and early["test_features"].shape == (TEST, 2)
        and 0 <= early["test_acc"] <= 1
    )


@pytest.mark.slow
def test_frames_within_the_first_epoch_do_not_change_the_training(
    synthetic_data, tmp_path, monkeypatch
):
    import experiments.engine.trainer as trainer_module

    cfg = synthetic_config("standalone", feat_dim=2, epochs=1)
    with_frames = Trainer(
        cfg, synthetic_data, tmp_path / "a", RunContext(device=CPU, progress=False)
    ).fit()
    monkeypatch.setattr(trainer_module, "EARLY_FRAMES", ())
    without = Trainer(
        cfg, synthetic_data, tmp_path / "b", RunContext(device=CPU, progress=False)
    ).fit()
    assert len(list((tmp_path / "a" / "features").glob("epoch_000.*.pt"))) == 3
    assert not list((tmp_path / "b" / "features").glob("epoch_000.*.pt"))
    assert with_frames["final_test_acc"] == without["final_test_acc"]
    assert with_frames["final_train_acc"] == without["final_train_acc"]


@pytest.mark.slow
def test_a_diverging_loss_is_recorded_not_raised(synthetic_data, tmp_path):
    cfg = synthetic_config("xent", lr=1e12, epochs=3)
    result = Trainer(
        cfg, synthetic_data, tmp_path, RunContext(device=CPU, progress=False, log=lambda *_: None)
    ).fit()
    assert result["status"] == "diverged" and result["diverged_epoch"] == 1
    assert result["epochs_done"] == 0


@pytest.mark.slow
def test_an_interrupted_run_resumes_where_it_stopped(synthetic_data, tmp_path, monkeypatch):
    cfg = synthetic_config("cent", epochs=3)
    trainer = Trainer(cfg, synthetic_data, tmp_path, RunContext(device=CPU, progress=False))
    real_epoch = Trainer.train_epoch

    def interrupted(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert not (tmp_path / "result.json").exists()
    monkeypatch.setattr(Trainer, "train_epoch", real_epoch)
    messages = []
    result = Trainer(
        cfg, synthetic_data, tmp_path, RunContext(device=CPU, progress=False, log=messages.append)
    ).fit()
    assert messages[0] == f"run {cfg.run_id}: resuming after epoch 1"
    assert [m.split("epoch")[1].split()[0] for m in messages[1:]] == [
        "2",
        "3",
    ]  # one line per epoch trained
    assert result["epochs_done"] == 3
    assert [r["epoch"] for r in json_rows(tmp_path / "metrics.csv")] == ["1", "2", "3"]


def json_rows(path):
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def test_run_ids_are_stable_and_change_with_the_config():
    a, b = synthetic_config("cent"), synthetic_config("cent")
    assert a.run_id == b.run_id
    assert a.run_id != synthetic_config("cent", seed=1).run_id
    assert a.loss_options == {"weight_cent": 1.0}


@pytest.mark.slow
def test_fashion_mnist_few_hundred_steps_is_clearly_above_chance(tmp_path):
    root = fashion_mnist_root()
    if root is None:
        pytest.skip(
            "Fashion-MNIST not available here (python -m experiments.data fetch fashion-mnist)"
        )
    cfg = RunConfig(
        dataset="fashion-mnist",
        loss="xent",
        feat_dim=128,
        epochs=2,
        batch_size=16,
        train_size=800,
        test_size=500,
        eval_train_size=0,
    )  # 0.63 here
    data = DeviceData(get_spec("fashion-mnist"), root, CPU, cfg.train_size, cfg.test_size)
    result = Trainer(cfg, data, tmp_path, RunContext(device=CPU, progress=False)).fit()  # 100 steps
    assert result["final_test_acc"] > 0.5, result  # chance is 0.1


@pytest.mark.parametrize(
    "loss, rule",
    [
        ("standalone-log", "joint"),
        ("standalone-margin", "joint"),
        ("centers-only", "joint"),
        ("center-radius", "joint"),
        ("contrastive-center", "joint"),
        ("cent", "separate"),
        ("standalone", "wen"),
    ],
)
@pytest.mark.slow
def test_every_variant_and_center_rule_trains_in_the_same_trainer(
    loss, rule, synthetic_data, tmp_path
):
    # centers-only runs at the reference lr: the exponential of a distance overflows sooner at higher ones
    cfg = synthetic_config(loss, center_rule=rule, lr=0.01 if loss == "centers-only" else 0.05)
    result = Trainer(cfg, synthetic_data, tmp_path, RunContext(device=CPU, progress=False)).fit()
    assert result["status"] == "finished"
    assert result["final_test_acc"] > 0.5, result  # chance is 0.1


@pytest.mark.parametrize("name", ["reference", "fair", "last"])
def test_the_protocol_alone_decides_the_validation_split_a_run_holds_out(name, tmp_path):
    from experiments.engine.data import load_data
    from experiments.engine.protocol import PROTOCOLS

    data = load_data(synthetic_config("xent", protocol=name), tmp_path, CPU)
    held = 0 if data.val_labels is None else len(data.val_labels)
    # stratified: each class's share rounded, so within one image a class of the fraction of the split
    assert abs(held - PROTOCOLS[name].val_fraction * TRAIN) <= 10, (name, held)
    assert (held > 0) == (PROTOCOLS[name].selection == "val")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["reference", "fair", "last"])
def test_a_2d_runs_frames_hold_the_split_its_pictures_are_named_by(name, tmp_path):
    """Issue 39: under protocol last a gif named val.gif was drawn from training frames. The frames' points
    are the split the report names the picture by: test, the validation split, or the training subset."""
    from experiments.engine.data import load_data
    from experiments.report.figures import picture_split

    cfg = synthetic_config("xent", protocol=name, feat_dim=2, epochs=1)
    data = load_data(cfg, tmp_path, CPU)
    trainer = Trainer(cfg, data, tmp_path, RunContext(device=CPU, progress=False))
    trainer.fit()
    frame = torch.load(tmp_path / "features" / "epoch_001.pt")
    shown = picture_split({"protocol": name, "feat_dim": 2})
    labels = {
        "test": data.test_labels,
        "val": data.val_labels,
        "train": data.train_labels[trainer.train_eval_index],  # the fixed training subset, whole
    }[shown]
    assert torch.equal(frame["test_labels"], labels.to(torch.uint8)), (name, shown)


@pytest.mark.slow
def test_fair_protocol_selects_on_validation_and_tests_once(tmp_path):
    from experiments.engine.data import load_data

    cfg = synthetic_config("standalone", protocol="fair", epochs=3)
    data = load_data(cfg, tmp_path, CPU)
    # 10% of each class of the 768 training samples held out, disjoint from the rest
    counts = torch.bincount(data.val_labels, minlength=10)
    per_class = torch.bincount(torch.cat([data.val_labels, data.train_labels]), minlength=10)
    assert len(data.val_labels) + len(data.train_labels) == TRAIN and counts.min() >= 7
    assert ((counts - 0.1 * per_class).abs() <= 1).all(), (counts, per_class)
    result = Trainer(cfg, data, tmp_path, RunContext(device=CPU, progress=False)).fit()
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert (
        "val_acc" in header and "test_acc" not in header
    )  # the test split is not looked at per epoch
    rows = json_rows(tmp_path / "metrics.csv")
    assert result["selected_epoch"] == int(max(rows, key=lambda r: float(r["val_acc"]))["epoch"])
    assert result["final_test_acc"] == result["best_test_acc"] > 0.5
    assert result["final_knn1_acc"] > 0.5 and 0 < result["final_map_at_r"] <= 1


@pytest.mark.slow
def test_fp16_trains_through_the_grad_scaler_on_the_cpu(tmp_path):
    # fp16 is emulated (slow) on the CPU: three steps prove the path
    cfg = synthetic_config(
        "cent", precision="fp16", center_rule="separate", epochs=1, train_size=192, test_size=100
    )
    data = DeviceData(get_spec("synthetic"), tmp_path, CPU, cfg.train_size, cfg.test_size)
    trainer = Trainer(cfg, data, tmp_path, RunContext(device=CPU, progress=False))
    result = trainer.fit()
    assert result["status"] == "finished" and result["precision"] == "fp16"
    assert trainer.scaler.is_enabled() and trainer.scaler.get_scale() > 0


@pytest.mark.slow
def test_centers_softmax_trains_and_classifies_by_its_own_logits(synthetic_data, tmp_path):
    cfg = synthetic_config("centers-softmax")
    result = Trainer(cfg, synthetic_data, tmp_path, RunContext(device=CPU, progress=False)).fit()
    assert result["status"] == "finished" and result["final_test_acc"] > 0.9
    assert (
        result["final_test_acc"] == result["final_test_acc_argmax"]
    )  # its own logits: z = x . c + b
    assert result["final_ood_msp_auroc"] is not None  # the softmax scores come from those logits


@pytest.mark.slow
@pytest.mark.parametrize("loss, natural", [("standalone", "center"), ("xent", "msp")])
def test_an_ood_score_separates_a_shifted_set(loss, natural, synthetic_data, tmp_path):
    result = Trainer(
        synthetic_config(loss),
        synthetic_data,
        tmp_path,
        RunContext(device=CPU, progress=False),
    ).fit()
    assert (
        result["ood_dataset"] == "noise"
    )  # no partner dataset for the synthetic set: uniform noise
    assert result[f"final_ood_{natural}_auroc"] > 0.8 and result["final_ood_knn_auroc"] > 0.8
    for score in ("center", "knn", *(("msp", "energy") if loss == "xent" else ())):
        assert (
            0 <= result[f"final_ood_{score}_fpr95"] <= 1
            and 0 < result[f"final_ood_{score}_aupr"] <= 1
        )
    assert (result.get("final_ood_msp_auroc") is None) == (loss == "standalone")


@pytest.mark.slow
def test_known_classes_never_let_an_unknown_class_reach_training_or_selection(tmp_path):
    from experiments.engine.data import load_data

    cfg = synthetic_config("standalone", known_classes="0-5", protocol="fair")
    data = load_data(cfg, tmp_path, CPU)
    assert data.num_classes == 6 and data.class_names == tuple(f"patch {i}" for i in range(6))
    for labels in (data.train_labels, data.val_labels, data.test_labels):
        assert labels.min() >= 0 and labels.max() <= 5
    # the test subset's images of the unknown classes, and only those, are the out-of-distribution set
    assert (
        len(data.ood_images) + len(data.test_labels) == TEST
        and 0.3 * TEST < len(data.ood_images) < 0.5 * TEST
        and data.ood_name == "unknown classes"
    )
    assert (
        len(data.train_labels) + len(data.val_labels) < TRAIN * 0.7
    )  # about 6/10 of the training samples
    result = Trainer(cfg, data, tmp_path, RunContext(device=CPU, progress=False)).fit()
    assert result["final_test_acc"] > 0.8  # closed-set accuracy on the known classes
    assert result["final_ood_center_auroc"] > 0.6 and result["ood_dataset"] == "unknown classes"
    assert {"protocol=fair", "known_classes=0-5"} <= set(cfg.departures())


@pytest.mark.slow
def test_lenet_trains_at_its_own_recipe_where_the_reference_lr_diverges(synthetic_data, tmp_path):
    from experiments import grid, train

    args = train.parse_args(
        [
            "--model",
            "lenet++",
            "--dataset",
            "synthetic",
            "--loss",
            "standalone",
            "--epochs",
            "2",
            "--train-size",
            str(TRAIN),
            "--test-size",
            str(TEST),
        ]
    )
    cfg = train.run_config(args)
    assert (cfg.lr, cfg.weight_decay) == (
        0.001,
        5e-4,
    )  # LeNet++'s own recipe, applied where no flag is given
    assert "lr=0.001" in cfg.departures() and "weight_decay=0.0005" in cfg.departures()
    assert grid.grid_spec(
        grid.parse_args(["--model", "lenet++", "--preset", "quick"])
    ).sweep.recipe["lr"] == [0.001]
    assert (
        train.run_config(train.parse_args(["--model", "lenet++", "--lr", "0.01"])).lr == 0.01
    )  # a given flag wins
    assert train.run_config(train.parse_args([])).lr == 0.01  # the ResNet: the reference recipe
    result = Trainer(
        cfg, synthetic_data, tmp_path / "own", RunContext(device=CPU, progress=False)
    ).fit()
    assert result["status"] == "finished"
    reference = RunConfig.from_dict({**cfg.to_dict(), "lr": 0.01, "weight_decay": 0.0})
    assert (
        Trainer(
            reference, synthetic_data, tmp_path / "ref", RunContext(device=CPU, progress=False)
        ).fit()["status"]
        == "diverged"
    )
