"""Losses and center rules that do not fit together are refused; every other pair trains."""

import pytest
import torch

from centersuite.losses import CENTER_RULES, LOSSES, LossEntry, build_loss
from centersuite.losses.base import LossWithCenters
from centersuite.losses.options import Option
from experiments import grid
from experiments.engine.config import RunConfig
from experiments.engine.context import RunContext
from experiments.engine.data import epoch_batches
from experiments.engine.trainer import Trainer

CPU = torch.device("cpu")
MOVED_BY_OTHER_TERMS = {
    "centers-only",
    "centers-softmax",
    "git",
    "island",  # inter-center, classifier, pushes
    "arcface",
    "cosface",
    "sphereface",
    "normalized-softmax",
    "proxy-nca",
    "proxy-anchor",
    "soft-triple",
}  # pytorch-metric-learning's loss moves its class weights or proxies


@pytest.mark.parametrize("rule", CENTER_RULES)
@pytest.mark.parametrize("loss", list(LOSSES))
def test_every_loss_and_center_rule_pair_trains_a_step_or_is_refused_in_one_line(
    loss, rule, synthetic_data, tmp_path
):
    cfg = RunConfig(
        dataset="synthetic",
        loss=loss,
        center_rule=rule,
        feat_dim=8,
        batch_size=16,
        train_size=1024,
        test_size=500,
        model="lenet++",
    )
    if loss in MOVED_BY_OTHER_TERMS and rule != "joint":
        with pytest.raises(ValueError, match=f"--center-rule {rule} does not fit the loss") as e:
            Trainer(cfg, synthetic_data, tmp_path, RunContext(device=CPU, progress=False))
        assert "\n" not in str(e.value)
        return
    trainer = Trainer(cfg, synthetic_data, tmp_path, RunContext(device=CPU, progress=False))
    out = trainer.train_step(epoch_batches(1024, 16, CPU)[0])
    assert torch.isfinite(out).all()


def test_the_grid_refuses_a_pair_that_does_not_fit_before_training(tmp_path, capsys):
    code = grid.main(
        [
            "--datasets",
            "synthetic",
            "--losses",
            "standalone",
            "centers-only",
            "--center-rule",
            "wen",
            "--epochs",
            "1",
            "--train-size",
            "256",
            "--test-size",
            "100",
            "--no-progress",
            "--no-report",
            "--out",
            str(tmp_path / "runs"),
            "--results",
            str(tmp_path / "results"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    # one line naming the rule and the loss at fault, the fix, and that nothing was trained
    assert "\n" not in err and err.startswith("error: ")
    assert all(
        w in err
        for w in (
            "--center-rule wen",
            "centers-only",
            "use --center-rule joint",
            "nothing was trained",
        )
    ), err
    assert not (tmp_path / "results" / "runs.csv").exists()


def test_a_loss_with_centers_that_declares_no_pull_weight_is_refused_when_defined():
    with pytest.raises(TypeError, match=r"(?s)Forgetful.*pull_weight"):

        class Forgetful(LossWithCenters):
            def __init__(self, num_classes, feat_dim, weight: float = 1.0):
                super().__init__(num_classes, feat_dim)
                self.weight = weight

    with pytest.raises(TypeError, match="must declare pull_weight"):

        class Misnamed(LossWithCenters):
            pull_weight = "weigth"

            def __init__(self, num_classes, feat_dim, weight: float = 1.0):
                super().__init__(num_classes, feat_dim)

    weight_option = Option("weight", 2.0, "the pull's weight")

    class Declared(LossWithCenters):
        pull_weight = "weight"

        def __init__(self, num_classes, feat_dim, weight: float = weight_option.default):
            super().__init__(num_classes, feat_dim)
            self.weight = weight

    assert Declared(3, 2).center_weight == 2.0


def test_a_loss_whose_registered_options_are_not_its_parameters_is_refused_when_loaded(monkeypatch):
    class Undeclared(LossWithCenters):
        pull_weight = None

        def __init__(self, num_classes, feat_dim, weight: float = 2.0):
            super().__init__(num_classes, feat_dim)

    monkeypatch.setitem(LOSSES, "undeclared", LossEntry(Undeclared))
    with pytest.raises(
        TypeError, match=r"loss 'undeclared': its registered options \{\} must be the parameters"
    ):
        build_loss("undeclared", 3, 2)
    monkeypatch.setitem(
        LOSSES, "other-default", LossEntry(Undeclared, (Option("weight", 1.0, "a weight"),))
    )
    with pytest.raises(TypeError, match="'other-default'.*weight.: 2.0"):
        build_loss("other-default", 3, 2)
