"""Center update rules and loss variants, each checked by hand on a few points."""

import math

import pytest
import torch
from torch import nn

from centersuite.losses import build_loss
from centersuite.losses.center_rules import build_center_rule
from tests.test_losses import C, X, Y, setup


def one_step(rule_name, weight_decay=0.0, **rule_kw):
    loss, x, z, y = setup("cent", weight_cent=0.5)
    model = nn.Linear(2, 2)
    rule = build_center_rule(rule_name, loss, **rule_kw)
    groups = rule.model_param_groups(model, weight_decay)
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    total, _ = loss.loss_terms(x, y, z)
    opt.zero_grad()
    rule.zero_grad()
    total.backward()
    rule.before_step(scaler)
    opt.step()
    rule.after_step(x.detach(), y, scaler)
    return loss.centers.detach(), groups


def own_sums():
    """sum_{i: y_i = j} (x_i - c_j) and n_j."""
    pts, cs = torch.tensor(X), torch.tensor(C)
    sums, counts = torch.zeros(2, 2), torch.zeros(2)
    for p, label in zip(pts, Y):
        sums[label] += p - cs[label]
        counts[label] += 1
    return cs, sums, counts


def test_joint_rule_moves_centers_with_the_model_lr_and_no_weight_decay():
    centers, groups = one_step("joint", weight_decay=0.1)
    assert groups[1]["weight_decay"] == 0.0 and groups[0]["weight_decay"] == 0.1
    cs, sums, _ = own_sums()
    # grad = -0.5 * 2 * sums / 3 ; c <- c - 0.1 * grad
    assert torch.allclose(centers, cs + 0.1 * 0.5 * 2 * sums / 3, atol=1e-6)


def test_separate_rule_divides_the_gradient_by_the_weight():
    centers, groups = one_step("separate", center_lr=0.5)
    assert len(groups) == 1  # centers are not in the model optimizer
    cs, sums, _ = own_sums()
    assert torch.allclose(centers, cs + 0.5 * 2 * sums / 3, atol=1e-6)  # weight 0.5 cancelled


def test_wen_rule_by_hand():
    centers, groups = one_step("wen", center_alpha=0.5)
    cs, sums, counts = own_sums()
    # c_j <- c_j - alpha * sum (c_j - x_i) / (1 + n_j)
    assert torch.allclose(centers, cs + 0.5 * sums / (1 + counts[:, None]), atol=1e-6)


def value(name, **options):
    loss, x, z, y = setup(name, **options)
    return loss.loss_terms(x, y, z if loss.uses_logits else None)


def test_standalone_log_variant():
    total, terms = value("standalone-log")
    inter = (2 * math.log(4) + 2 * math.log(2)) / 3
    assert terms["inter"].item() == pytest.approx(inter, rel=1e-6)
    assert total.item() == pytest.approx(10 / 3 - 0.1 * inter, rel=1e-6)


def test_standalone_margin_variant():
    total, terms = value("standalone-margin", margin=3.0)
    # d02 = 4 -> hinge 0, d12 = 2 -> hinge 1; two ordered pairs each; / m
    assert terms["inter"].item() == pytest.approx(-2 / 3, rel=1e-6)
    assert total.item() == pytest.approx(10 / 3 + 0.1 * 2 / 3, rel=1e-6)


def test_centers_only_variant():
    total, terms = value("centers-only", alpha=0.1)
    # (exp(alpha d) - 1) / alpha over d_own = 1, 1, 8
    intra = (2 * math.expm1(0.1) + math.expm1(0.8)) / 3 / 0.1
    inter = -(2 * math.log(5)) / 2  # d(c0, c1) = 5, ordered pairs j != k, / num_classes
    assert terms["intra"].item() == pytest.approx(intra, rel=1e-6)
    assert terms["inter"].item() == pytest.approx(inter, rel=1e-6)
    assert total.item() == pytest.approx(intra + 0.1 * inter, rel=1e-6)


def test_center_radius_variant_and_fixed_centers():
    total, _ = value("center-radius", radius=2.0)
    assert total.item() == pytest.approx((0 + 0 + 6) / 3)  # d_own = 1, 1, 8
    fixed = build_loss("center-radius", 2, 2, fixed_centers=True, center_scale=3.0)
    assert fixed.centers.tolist() == [[3.0, 0.0], [0.0, 3.0]] and fixed.learnable_centers is None
    assert list(fixed.parameters()) == []
    wide = build_loss("center-radius", 3, 5, fixed_centers=True, center_scale=2.0)
    assert torch.allclose(wide.centers.norm(dim=1), torch.full((3,), 2.0))


def test_contrastive_center_variant():
    total, terms = value("contrastive-center", weight=1.0, delta=1.0)
    # own distances 1, 1, 8; to the other center 4, 2, 8-> (x2 to c0) 1
    expected = (0.5 * 1 / 5 + 0.5 * 1 / 3 + 0.5 * 8 / 2) / 3
    assert terms["contrastive_center"].item() == pytest.approx(expected, rel=1e-6)
    assert total.item() == pytest.approx(terms["xent"].item() + expected, rel=1e-6)


def scaled_separate_step(init_scale):
    """One step of cent (weight 0.5) with the separate rule through an enabled GradScaler."""
    loss, x, z, y = setup("cent", weight_cent=0.5)
    model = nn.Linear(2, 2)
    rule = build_center_rule("separate", loss, center_lr=0.5)
    opt = torch.optim.SGD(rule.model_param_groups(model, 0.0), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    total, _ = loss.loss_terms(x, y, model(z))
    opt.zero_grad()
    rule.zero_grad()
    scaler.scale(total).backward()
    rule.before_step(scaler)
    scaler.step(opt)
    rule.after_step(x.detach(), y, scaler)
    scaler.update()
    return loss.centers.detach(), scaler.get_scale()


def test_grad_scaler_with_two_optimizers_unscales_before_the_weight_rescale():
    centers, scale = scaled_separate_step(init_scale=1024.0)
    cs, sums, _ = own_sums()
    assert torch.allclose(centers, cs + 0.5 * 2 * sums / 3, atol=1e-5)  # same as without a scaler
    assert scale == 1024.0


def test_grad_scaler_skips_both_steps_on_inf_and_updates_once():
    centers, scale = scaled_separate_step(init_scale=float("inf"))
    assert torch.equal(centers, torch.tensor(C))  # the center step was skipped
    assert scale == float("inf") * 0.5  # update ran once (backoff 0.5)


def test_centers_softmax_by_hand():
    # z_ij = x_i . c_j + b_j; L = mean_i -log softmax(z_i)[y_i]
    loss = build_loss("centers-softmax", 2, 2)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        loss.bias.copy_(torch.tensor([0.5, -0.5]))
    x, y = torch.tensor([[1.0, 1.0], [2.0, -1.0]]), torch.tensor([1, 0])
    # sample 0: z = (1 + 0.5, 2 - 0.5) = (1.5, 1.5) -> -log 1/2 ; sample 1: z = (2.5, -2.5) -> -log(e^2.5 / (e^2.5 + e^-2.5))
    expected = (math.log(2) + math.log(1 + math.exp(-5.0))) / 2
    total, terms = loss.loss_terms(x, y, None)
    assert total.item() == pytest.approx(expected, abs=1e-6) and terms[
        "xent"
    ].item() == pytest.approx(expected, abs=1e-6)
    assert loss.predict(x, None).tolist() == [0, 0]  # a tie goes to the first class; 2.5 > -2.5
    total.backward()
    assert loss.centers.grad is not None and loss.bias.grad is not None  # both learned
    assert loss.learnable_centers is loss.centers and loss.uses_logits is False
