"""Out-of-distribution scores and their detection metrics, on the device.

A score is higher for a sample that looks in-distribution:

- ``center``: minus the squared distance to the nearest learned center (class means of the
  training features for a loss without centers);
- ``msp``: the maximum softmax probability of the logits the loss classifies by (softmax losses);
- ``energy``: ``logsumexp`` of those logits, minus the energy (softmax losses);
- ``knn``: minus the squared distance to the nearest training feature.

Metrics, in-distribution samples positive, from the scores sorted once (ties
handled as scikit-learn does: a threshold falls between distinct scores only):

- ``auroc``: area under the ROC curve (trapezoids between distinct thresholds);
- ``fpr95``: false positive rate at the first threshold whose true positive rate is at least 0.95;
- ``aupr``: average precision, ``sum_n (R_n - R_{n-1}) P_n`` over the distinct thresholds;
- ``fpr95_ood``: the same false positive rate with the roles swapped, as OpenOOD reports it: the
  out-of-distribution set positive (scored by minus the score), the share of in-distribution samples taken
  for out-of-distribution at the first threshold that catches 95% of the out-of-distribution set.

The first three follow ODIN's convention (in-distribution positive), the last OpenOOD's: on the same scores
the two FPR95 differ.
"""

from __future__ import annotations

import torch

from ..losses.distances import squared_distances
from .metrics import class_means

SCORES = ("center", "msp", "energy", "knn")
METRICS = ("auroc", "fpr95", "aupr", "fpr95_ood")


def _detection(scores_in: torch.Tensor, scores_out: torch.Tensor) -> dict[str, torch.Tensor]:
    """AUROC, FPR at 95% TPR and AUPR, ``scores_in`` positive."""
    scores = torch.cat([scores_in, scores_out]).double()
    positive = torch.cat([torch.ones_like(scores_in), torch.zeros_like(scores_out)]).double()
    order = torch.argsort(scores, descending=True, stable=True)
    s, y = scores[order], positive[order]
    tps, fps = y.cumsum(0), (1 - y).cumsum(0)
    p, n = tps[-1], fps[-1]
    # the last sample of each group of equal scores: the only places a threshold can fall
    end = torch.cat([s[1:] != s[:-1], torch.ones(1, dtype=torch.bool, device=s.device)])
    zero = torch.zeros(1, dtype=s.dtype, device=s.device)
    prev_tps = torch.cat([zero, torch.where(end, tps, 0).cummax(0).values[:-1]])
    prev_fps = torch.cat([zero, torch.where(end, fps, 0).cummax(0).values[:-1]])
    auroc = torch.where(end, (fps - prev_fps) * (tps + prev_tps), 0).sum() / (2 * p * n)
    aupr = torch.where(end, (tps - prev_tps) / p * tps / (tps + fps), 0).sum()
    fpr95 = torch.where(end & (tps >= 0.95 * p), fps / n, torch.inf).min()
    return {"auroc": auroc.float(), "fpr95": fpr95.float(), "aupr": aupr.float()}


@torch.no_grad()
def detection_metrics(scores_in: torch.Tensor, scores_out: torch.Tensor) -> dict[str, torch.Tensor]:
    """AUROC, FPR at 95% TPR and AUPR of telling ``scores_in`` ``(n,)`` (positive; a higher score looks more
    in-distribution) from ``scores_out`` ``(k,)``, and ``fpr95_ood``: FPR at 95% TPR with the
    out-of-distribution set positive (OpenOOD's convention). 0-d float tensors, fractions in [0, 1]."""
    out = _detection(scores_in, scores_out)
    out["fpr95_ood"] = _detection(-scores_out, -scores_in)["fpr95"]
    return out


@torch.no_grad()
def center_score(embeddings: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Minus the squared Euclidean distance of each of ``embeddings`` ``(n, d)`` to the nearest of ``centers``
    ``(classes, d)`` (a center that is not finite, a class without samples, is never the nearest): ``(n,)``,
    higher for a sample that looks in-distribution."""
    return -squared_distances(embeddings, centers.nan_to_num(1e6)).min(1).values


@torch.no_grad()
def knn_score(embeddings: torch.Tensor, reference: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Minus the squared distance of each of ``embeddings`` ``(n, d)`` to its nearest ``reference`` ``(m, d)``
    (the training features), in chunks of ``chunk`` queries: ``(n,)``."""
    return -nearest_distance(embeddings, reference, chunk)


@torch.no_grad()
def msp_score(logits: torch.Tensor) -> torch.Tensor:
    """The maximum softmax probability of ``logits`` ``(n, classes)``: ``(n,)`` in [1/classes, 1]."""
    return logits.softmax(1).max(1).values


@torch.no_grad()
def energy_score(logits: torch.Tensor) -> torch.Tensor:
    """Minus the energy of ``logits`` ``(n, classes)``, ``logsumexp`` over the classes: ``(n,)``."""
    return logits.logsumexp(1)


@torch.no_grad()
def ood_scores(loss, train_features, train_labels, features, logits) -> dict[str, torch.Tensor]:
    """Every score that applies to this loss, for ``features`` (and their ``logits``): by its centers (class
    means of the training features for a loss without them), by the nearest training feature, and for a loss
    that classifies by logits, by them."""
    centers = (
        loss.centers.detach()
        if loss.centers is not None
        else class_means(train_features, train_labels, loss.num_classes)
    )
    out = {"center": center_score(features, centers), "knn": knn_score(features, train_features)}
    class_logits = loss.class_logits(features, logits)
    if class_logits is not None:
        out["msp"] = msp_score(class_logits)
        out["energy"] = energy_score(class_logits)
    return out


def nearest_distance(
    query: torch.Tensor, reference: torch.Tensor, chunk: int = 1024
) -> torch.Tensor:
    """The squared distance of each query ``(n, d)`` to its nearest reference ``(m, d)``: ``(n,)``."""
    return torch.cat(
        [
            squared_distances(query[i : i + chunk], reference).min(1).values
            for i in range(0, len(query), chunk)
        ]
    )


def natural_score(loss) -> str:
    """The score that matches how the loss classifies: distance to a center, or the softmax."""
    return "center" if loss.prediction == "centers" else "msp"
