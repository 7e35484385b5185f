"""Detection metrics against scikit-learn, and scores that separate a shifted set."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from centersuite.eval.ood import detection_metrics


def sklearn_metrics(scores_in, scores_out):
    y = np.r_[np.ones(len(scores_in)), np.zeros(len(scores_out))]
    s = np.r_[scores_in, scores_out]
    fpr, tpr, _ = roc_curve(y, s)
    ood_fpr, ood_tpr, _ = roc_curve(1 - y, -s)  # OpenOOD: the out-of-distribution set positive
    return {
        "auroc": roc_auc_score(y, s),
        "fpr95": fpr[np.argmax(tpr >= 0.95)],
        "aupr": average_precision_score(y, s),
        "fpr95_ood": ood_fpr[np.argmax(ood_tpr >= 0.95)],
    }


@pytest.mark.parametrize(
    "seed, n_in, n_out, levels",
    [(0, 500, 300, 7), (1, 50, 80, 3), (2, 1000, 1000, 1000), (3, 10, 10, 2)],
)
def test_detection_metrics_match_scikit_learn_with_ties(seed, n_in, n_out, levels):
    rng = np.random.default_rng(seed)
    scores_in = (
        np.round(rng.normal(0.5, 1, n_in) * levels) / levels
    )  # few distinct values: many ties
    scores_out = np.round(rng.normal(0.0, 1, n_out) * levels) / levels
    ours = detection_metrics(torch.tensor(scores_in), torch.tensor(scores_out))
    expected = sklearn_metrics(scores_in, scores_out)
    for name, value in expected.items():
        assert ours[name].item() == pytest.approx(value, abs=1e-6), name


def test_detection_metrics_by_hand():
    # in: 3, 2 ; out: 2, 1. Thresholds 3, 2, 1: (fpr, tpr) = (0, .5), (.5, 1), (1, 1).
    # AUROC: the (in, out) pairs ranked right, a tie counting 1/2: (3,2) (3,1) (2,1) and half of (2,2) = 3.5 / 4
    m = detection_metrics(torch.tensor([3.0, 2.0]), torch.tensor([2.0, 1.0]))
    assert m["auroc"].item() == pytest.approx(3.5 / 4)
    assert m["fpr95"].item() == pytest.approx(0.5)
    assert m["aupr"].item() == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    # OpenOOD's convention on other scores: in 3, 2, 2; out 2, 1. In positive: at threshold 2 every in sample
    # is taken and one out sample of two: FPR95 1/2. Out positive, by minus the score (out -2, -1; in -3, -2,
    # -2): at -1 half the out set, at -2 all of it and two in samples of three: FPR95 2/3. One set of scores,
    # two numbers: a table must say which it shows.
    m = detection_metrics(torch.tensor([3.0, 2.0, 2.0]), torch.tensor([2.0, 1.0]))
    assert m["fpr95"].item() == pytest.approx(1 / 2) and m["fpr95_ood"].item() == pytest.approx(
        2 / 3
    )
