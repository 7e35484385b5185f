"""Nearest-center and class-mean rules on constructed points."""

import math

import pytest
import torch

from centersuite.eval.metrics import accuracy, class_means, evaluate_embeddings, nearest_center
from centersuite.losses import build_loss


def test_nearest_center_on_constructed_points():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.tensor([[1.0, 1.0], [6.0, 0.0], [4.0, 4.9], [4.0, 5.1], [-3.0, 9.0]])
    # (4, 4.9): d0 = 40.01, d2 = 42.01 -> 0 ; (4, 5.1): d0 = 42.01, d2 = 40.01 -> 2
    assert nearest_center(points, centers).tolist() == [0, 1, 0, 2, 2]


def test_class_means_and_empty_class():
    feats = torch.tensor([[0.0, 0.0], [2.0, 2.0], [10.0, 0.0]])
    means = class_means(feats, torch.tensor([0, 0, 1]), 3)
    assert means[:2].tolist() == [[1.0, 1.0], [10.0, 0.0]]
    assert torch.isnan(means[2]).all()
    assert nearest_center(torch.tensor([[9.0, 9.0]]), means).tolist() == [1]


def test_accuracy():
    assert accuracy(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 0])).item() == 0.5


def test_xent_is_scored_by_class_means_and_standalone_by_centers():
    train_f = torch.tensor([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
    train_y = torch.tensor([0, 0, 1, 1])
    test_f = torch.tensor([[1.0, 0.5], [9.0, 0.5], [4.0, 0.0]])
    test_y = torch.tensor([0, 1, 1])
    logits = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # argmax right on 2 of 3
    xent = build_loss("xent", 2, 2)
    acc = evaluate_embeddings(xent, train_f, train_y, test_f, logits, test_y)
    # class means (0, .5) and (10, .5): (4, 0) -> class 0, so 2 of 3 right
    assert acc["class_mean"].item() == acc["center"].item() == pytest.approx(2 / 3)
    assert acc["headline"].item() == acc["argmax"].item() == pytest.approx(2 / 3)
    sa = build_loss("standalone", 2, 2)
    with torch.no_grad():
        sa.centers.copy_(torch.tensor([[0.0, 0.0], [5.0, 0.0]]))  # (4, 0) -> class 1 now
    acc = evaluate_embeddings(sa, train_f, train_y, test_f, logits, test_y)
    assert acc["center"].item() == acc["headline"].item() == 1.0
    assert math.isnan(acc["argmax"].item())


def test_embedding_metrics_by_hand():
    from centersuite.eval.embedding import intra_inter_ratio, knn1_accuracy, map_at_r

    # points on a line, no ties; classes of 3, so R = 2 for every query
    f2 = torch.tensor([[0.0, 0], [1.0, 0], [2.5, 0], [10.0, 0], [11.5, 0], [4.2, 0]])
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    # q0: nn 1 (y0), 2 (y0) -> AP 1 ; q1: nn 0, 2 -> AP 1
    # q2: nn 1 (y0, d 2.25), 5 (y1, d 2.89) -> rel [1, 0] -> AP = (1 * 1) / 2 = 0.5
    # q3 (y1, R=2): nn 4 (d2.25, y1), 5 (d33.64, y1) -> AP 1
    # q4: nn 3 (y1), then 5 (d53.29, y1) -> AP 1
    # q5 (y1): nn 2 (d2.89, y0), 1 (d10.24, y0) -> rel [0,0] -> AP 0
    assert map_at_r(f2, y, 2).item() == pytest.approx((1 + 1 + 0.5 + 1 + 1 + 0) / 6)
    train = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    assert knn1_accuracy(f2, y, train, torch.tensor([0, 1])).item() == pytest.approx(
        5 / 6
    )  # 4.2 is nearer 0
    # intra: class 0 mean 3.5/3, class 1 mean 25.7/3
    m0, m1 = 3.5 / 3, 25.7 / 3
    intra = (
        abs(0 - m0) + abs(1 - m0) + abs(2.5 - m0) + abs(10 - m1) + abs(11.5 - m1) + abs(4.2 - m1)
    ) / 6
    assert intra_inter_ratio(f2, y, 2).item() == pytest.approx(intra / (m1 - m0), rel=1e-5)


def test_curve_bands_are_clipped_to_accuracies_and_left_out_for_one_seed(tmp_path, monkeypatch):
    import matplotlib.axes
    import numpy as np

    from experiments.curves import learning_curve_png

    bands = []
    original = matplotlib.axes.Axes.fill_between
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "fill_between",
        lambda self, x, lo, hi, **kw: (
            bands.append((np.asarray(lo), np.asarray(hi))) or original(self, x, lo, hi, **kw)
        ),
    )
    epochs = np.arange(1, 4)
    learning_curve_png(
        {
            "three seeds": (epochs, np.array([0.05, 0.5, 0.97]), np.array([0.1, 0.1, 0.1])),
            "one seed": (epochs, np.array([0.2, 0.4, 0.6]), np.zeros(3)),
        },
        "t",
        tmp_path / "c.png",
    )
    [(lo, hi)] = bands  # one band: the single seed has none
    assert np.allclose(lo, [0.0, 0.4, 0.87]) and np.allclose(hi, [0.15, 0.6, 1.0])
    assert (tmp_path / "c.png").exists()
