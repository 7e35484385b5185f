"""Collapse and dead centers are recorded and flagged (experiments/engine/health.py); every loss stays finite
in 2-D where cosines reach +-1; the field's losses train their proxies at their own lr scale; a run scored
against noise because its planned out-of-distribution set is missing says so."""

import math

import pytest
import torch

from centersuite.eval.geometry import center_shift, nearest_center_gap
from centersuite.losses import LOSSES, build_loss
from centersuite.losses.center_rules import build_center_rule
from experiments.datasets.specs import get_spec
from experiments.engine.config import RunConfig
from experiments.engine.context import RunContext
from experiments.engine.data import DeviceData
from experiments.engine.health import health
from experiments.engine.trainer import Trainer
from tests.idx_files import write_tiny_mnist

CPU = torch.device("cpu")


def test_the_geometry_by_hand():
    centers = torch.tensor([[0.0, 0.0], [3.0, 4.0], [3.0, 4.5], [float("nan"), 0.0]])
    assert nearest_center_gap(centers).item() == pytest.approx(
        0.5
    )  # the NaN row (no sample) left out
    assert math.isnan(nearest_center_gap(torch.tensor([[1.0, 2.0]])).item())
    assert center_shift(
        torch.tensor([[3.0, 4.0], [1.0, 1.0]]), torch.zeros(2, 2)
    ).item() == pytest.approx((5 + 2**0.5) / 2)


def rows(*gaps_norms_shifts):
    return [
        {"epoch": i, "center_gap": g, "feature_norm": n, "center_shift": s}
        for i, (g, n, s) in enumerate(gaps_norms_shifts, 1)
    ]


def test_the_flags_from_the_epoch_rows():
    assert health(rows((0.3, 1, 0.1), (0.2, 1, 0.1)), learnable=True) == ""
    # a first epoch near the random start is not judged
    assert health(rows((0.01, 1, 0.1), (0.2, 1, 0.1)), learnable=True) == ""
    assert (
        health(rows((0.3, 1, 0.1), (0.02, 1, 0.1), (0.3, 1, 0.1)), learnable=True) == ""
    )  # passing by
    assert health(rows((0.3, 1, 0.1), (0.02, 1, 0.1), (0.01, 1, 0.1)), learnable=True).startswith(
        "collapsed at epoch 3"
    )
    assert "feature norm 0.005" in health(rows((0.3, 10, 0.1), (0.3, 0.005, 0.1)), learnable=True)
    assert health(rows((0.3, 1, 0.0), (0.3, 1, 0.0)), learnable=True) == "centers never moved"
    assert (
        health(rows((0.3, 1, 0.0), (0.3, 1, 0.0)), learnable=False) == ""
    )  # class means, fixed centers


@pytest.mark.slow
def test_a_run_made_to_collapse_is_flagged_in_its_result_and_its_log(tmp_path):
    """The standalone loss without its push (weight_inter 0) at a high lr draws every class to one point, as
    the ports' users report for a large center weight: flagged as it happens, and in the result."""
    data = DeviceData(get_spec("synthetic"), tmp_path, CPU, 512, 200)
    cfg = RunConfig(  # the nearest centers' gap: 0.08, 0.07, 0.04, 0.02 of the feature norm over epochs 1-4
        dataset="synthetic",
        loss="standalone",
        loss_options={"weight_inter": 0.0},
        lr=0.1,
        epochs=5,
        batch_size=32,
        train_size=512,
        test_size=200,
        eval_train_size=0,
    )
    lines = []
    result = Trainer(
        cfg, data, tmp_path / "run", RunContext(progress=False, log=lines.append)
    ).fit()
    assert result["health"].startswith("collapsed at epoch")
    assert sum("collapsed at epoch" in line for line in lines) == 1  # said once, when first seen
    healthy = RunConfig.from_dict({**cfg.to_dict(), "loss_options": {}, "lr": 0.01, "epochs": 3})
    result = Trainer(
        healthy, data, tmp_path / "healthy", RunContext(progress=False, log=lambda *_: None)
    ).fit()
    assert result["health"] == "" and result["final_center_gap"] > 0.05


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_is_finite_in_2d_on_the_unit_circle_and_where_cosines_are_plus_minus_one(name):
    """Features on the unit circle, exactly on the axes; where a loss has one proxy per class, the proxies are
    set on the same axes, so that cosines are exactly 1 and -1 (sqrt(1 - cos^2) has an infinite gradient
    there): the loss and every gradient are finite."""
    axes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    loss = build_loss(name, 3, 2)
    weights = loss.learnable_centers
    if weights is not None:
        with torch.no_grad():
            if weights.shape == (3, 2):
                weights.copy_(axes)
            elif weights.shape == (2, 3):
                weights.copy_(axes.t())
    x = torch.cat([axes, -axes]).requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    logits = (x @ axes.t()).detach().requires_grad_(True)
    total, _ = loss.loss_terms(x, labels, logits)
    total.backward()
    grads = [p.grad for p in (x, logits, *loss.parameters()) if p.grad is not None]
    assert torch.isfinite(total) and all(torch.isfinite(g).all() for g in grads)


def test_the_joint_rule_trains_class_parameters_at_their_lr_scale():
    loss = build_loss("proxy-anchor", 3, 2)
    model = torch.nn.Linear(2, 2)
    rule = build_center_rule(
        "joint", loss, class_lr_scale=LOSSES.entry("proxy-anchor").class_lr_scale
    )
    groups = rule.model_param_groups(model, 5e-4, lr=0.01)
    [proxies] = [g for g in groups if any(p is loss.learnable_centers for p in g["params"])]
    assert proxies["weight_decay"] == 0.0
    assert proxies["lr"] == pytest.approx(0.01 * LOSSES.entry("proxy-anchor").class_lr_scale)
    cent = build_loss("cent", 3, 2)
    [_, centers] = build_center_rule("joint", cent).model_param_groups(model, 5e-4, lr=0.01)
    assert "lr" not in centers  # the reference: the optimizer's own lr, as before


def test_a_run_whose_partner_set_is_missing_says_it_scores_noise(tmp_path):
    spec, _ = write_tiny_mnist(tmp_path, "mnist", n_train=40, n_test=20)
    data = DeviceData(spec, tmp_path, CPU)
    assert data.ood_name == "noise" and "fashion-mnist, which is not in" in data.ood_note
    assert "data fetch fashion-mnist" in data.ood_note
