"""Each loss against a hand computation: values, gradients, masks, normalisation."""

import math

import pytest
import torch

from centersuite.losses import LOSSES, build_loss

# Three 2-D features, labels, two centers.
X = [[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]
Y = [0, 0, 1]
C = [[1.0, 0.0], [0.0, 2.0]]


def setup(name, **options):
    loss = build_loss(name, num_classes=2, feat_dim=2, **options)
    if loss.centers is not None:
        with torch.no_grad():
            loss.centers.copy_(torch.tensor(C))
    x = torch.tensor(X, requires_grad=True)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    return loss, x, logits, torch.tensor(Y)


def hand_xent():
    # -log softmax(z)[y]: z0=[2,0] y=0; z1=[0,1] y=0; z2=[1,1] y=1
    return (math.log(1 + math.exp(-2)) + math.log(1 + math.e) + math.log(2)) / 3


def test_xent_value():
    loss, x, z, y = setup("xent")
    total, terms = loss.loss_terms(x, y, z)
    assert total.item() == pytest.approx(hand_xent(), rel=1e-6)
    assert set(terms) == {"xent"}


def test_cent_value_and_gradients():
    loss, x, z, y = setup("cent", weight_cent=0.5)
    total, terms = loss.loss_terms(x, y, z)
    # d(x_i, c_{y_i}): |(0,0)-(1,0)|^2 = 1, |(1,1)-(1,0)|^2 = 1, |(2,0)-(0,2)|^2 = 8 -> sum/m = 10/3
    assert terms["center"].item() == pytest.approx(10 / 3)
    assert total.item() == pytest.approx(hand_xent() + 0.5 * 10 / 3, rel=1e-6)
    total.backward()
    # d/dx_i [0.5 * sum d / m] = 0.5 * 2 (x_i - c_{y_i}) / 3 ; xent adds nothing to x (logits are separate leaves)
    expected = 0.5 * 2 * (torch.tensor(X) - torch.tensor(C)[torch.tensor(Y)]) / 3
    assert torch.allclose(x.grad, expected, atol=1e-6)
    # centers: -0.5 * 2 * sum_{i: y_i=j} (x_i - c_j) / 3
    expected_c = torch.zeros(2, 2)
    for xi, yi in zip(torch.tensor(X), Y):
        expected_c[yi] -= 0.5 * 2 * (xi - torch.tensor(C)[yi]) / 3
    assert torch.allclose(loss.centers.grad, expected_c, atol=1e-6)


def hand_standalone_inter(points, labels):
    total = 0.0
    for a, ya in zip(points, labels):
        for b, yb in zip(points, labels):
            if ya != yb:
                total += math.log(1 + sum((p - q) ** 2 for p, q in zip(a, b)))
    return total / len(points)


def test_standalone_value_pair_mask_and_normalisation():
    loss, x, z, y = setup("standalone")
    total, terms = loss.loss_terms(x, y, None)
    # different-label ordered pairs: (0,2),(2,0),(1,2),(2,1); d02 = 4, d12 = 2
    inter = (2 * math.log(5) + 2 * math.log(3)) / 3
    assert inter == pytest.approx(hand_standalone_inter(X, Y))
    assert terms["inter"].item() == pytest.approx(inter, rel=1e-6)
    assert terms["intra"].item() == pytest.approx(10 / 3, rel=1e-6)
    assert total.item() == pytest.approx(1.0 * 10 / 3 - 0.1 * inter, rel=1e-6)


def test_standalone_inter_divides_by_batch_not_pairs():
    loss, x, z, y = setup("standalone")
    _, terms = loss.loss_terms(x, y, None)
    _, doubled = loss.loss_terms(torch.cat([x, x]), torch.cat([y, y]))
    # twice the batch: four times the pairs (pairs of copies at d=0 add log1p(0)=0
    # only for same labels), divided by twice m -> the inter term doubles
    assert doubled["inter"].item() == pytest.approx(2 * terms["inter"].item(), rel=1e-6)
    assert doubled["intra"].item() == pytest.approx(terms["intra"].item(), rel=1e-6)


def test_standalone_gradient_by_hand():
    loss, x, z, y = setup("standalone", weight_intra=1.0, weight_inter=0.1)
    total, _ = loss.loss_terms(x, y, None)
    total.backward()
    pts, m = torch.tensor(X), 3
    expected = torch.zeros(3, 2)
    for i in range(3):
        expected[i] += 2 * (pts[i] - torch.tensor(C)[Y[i]]) / m
        for j in range(3):
            if Y[i] != Y[j]:
                d = (pts[i] - pts[j]).pow(2).sum()
                # x_i appears in pairs (i,j) and (j,i): 2 * 2(x_i - x_j)/(1+d) / m
                expected[i] -= 0.1 * 2 * 2 * (pts[i] - pts[j]) / (1 + d) / m
    assert torch.allclose(x.grad, expected, atol=1e-5)


def test_same_label_pairs_do_not_push():
    loss, x, z, _ = setup("standalone")
    y = torch.tensor([0, 0, 0])
    _, terms = loss.loss_terms(x, y, None)
    assert terms["inter"].item() == 0.0


def test_distances_float32_under_autocast():
    loss, x, z, y = setup("standalone")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, terms = loss.loss_terms(x.bfloat16(), y, None)
    assert total.dtype == torch.float32 and terms["inter"].dtype == torch.float32


def test_prediction_rules_declared():
    assert [LOSSES[n].prediction for n in ("xent", "cent", "standalone")] == [
        "logits",
        "logits",
        "centers",
    ]
    assert LOSSES["standalone"].uses_logits is False


def test_standalone_predicts_nearest_center():
    loss, _, _, _ = setup("standalone")
    pts = torch.tensor([[0.9, 0.1], [0.1, 1.8], [3.0, 0.0]])
    assert loss.predict(pts, None).tolist() == [0, 1, 0]


def test_registry_and_shape_errors():
    with pytest.raises(ValueError, match="unknown loss 'arc-face'"):
        build_loss("arc-face", 2, 2)
    with pytest.raises(ValueError, match="takes no option weight_cent"):
        build_loss("standalone", 2, 2, weight_cent=1.0)
    loss, x, z, y = setup("cent")
    with pytest.raises(ValueError, match=r"features must be \(batch, 2\)"):
        loss.loss_terms(torch.zeros(3, 5), y, z)
    with pytest.raises(ValueError, match="logits must be"):
        loss.loss_terms(x, y, torch.zeros(3, 7))
