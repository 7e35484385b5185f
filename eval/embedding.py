"""Embedding metrics, on the device, in query chunks (no n x n matrix at once).

- ``knn1_accuracy``: label of the nearest reference feature (test against train);
- ``map_at_r``: MAP@R as pytorch-metric-learning defines it, queries = references
  (each query excluded from its own neighbours): for a query with R other samples
  of its class, ``(1/R) * sum_{i<=R} P(i) * rel(i)`` over its R nearest neighbours;
- ``intra_inter_ratio``: mean distance of a feature to its class mean divided by
  the mean distance between class means (Euclidean, not squared); lower is tighter.
"""

from __future__ import annotations

import torch

from ..losses.distances import squared_distances
from .metrics import class_counts, class_means


@torch.no_grad()
def knn1_accuracy(
    query, query_labels, reference, reference_labels, chunk: int = 1024
) -> torch.Tensor:
    """1-nearest-neighbour accuracy: the share of ``query`` ``(n, d)`` whose nearest ``reference`` feature
    ``(m, d)`` (squared Euclidean) has its label (``query_labels`` ``(n,)``, ``reference_labels`` ``(m,)``,
    integer class indices): a 0-d float tensor in [0, 1]. Query and reference are different sets (test
    against train): a query that is also in the reference finds itself. ``chunk`` queries at a time, so
    memory is ``chunk x m`` distances. Raises IndexError/RuntimeError from torch for mismatched shapes."""
    correct = torch.zeros((), device=query.device)
    for start in range(0, len(query), chunk):
        nearest = squared_distances(query[start : start + chunk], reference).argmin(1)
        correct += (reference_labels[nearest] == query_labels[start : start + chunk]).sum()
    return correct / len(query)


@torch.no_grad()
def map_at_r(features, labels, num_classes: int, chunk: int = 1024) -> torch.Tensor:
    """MAP@R of ``features`` ``(n, d)`` with ``labels`` ``(n,)`` (class indices in ``[0, num_classes)``), as
    pytorch-metric-learning's AccuracyCalculator defines it (Musgrave et al., "A Metric Learning Reality
    Check", 2020): each sample queries all the others; with R the number of other samples of its class,
    ``AP@R = (1/R) * sum_{i<=R} P(i) * rel(i)`` over its R nearest neighbours (squared Euclidean), averaged
    over the samples whose class has another sample (NaN when no class has two). A 0-d float tensor in
    [0, 1]; ``chunk`` queries at a time (memory ``chunk x n`` distances)."""
    n = len(labels)
    r_per_class = class_counts(labels, num_classes) - 1
    r_max = max(1, int(r_per_class.max()))  # one sync per call: it sets the neighbour count
    total = torch.zeros((), device=features.device)
    counted = torch.zeros((), device=features.device)
    ranks = torch.arange(1, r_max + 1, device=features.device, dtype=torch.float)
    for start in range(0, n, chunk):
        q, q_labels = features[start : start + chunk], labels[start : start + chunk]
        d = squared_distances(q, features)
        d.diagonal(start).fill_(
            float("inf")
        )  # not its own neighbour: (i, start + i); fill_, no host-made tensor
        r = r_per_class[q_labels]
        neighbours = d.topk(r_max, dim=1, largest=False).indices
        within_r = ranks[None, :] <= r[:, None]
        relevant = (labels[neighbours] == q_labels[:, None]) & within_r
        precision = relevant.float().cumsum(1) / ranks
        ap = (precision * relevant).sum(1) / r.clamp_min(1)
        total += torch.where(
            r > 0, ap, torch.zeros_like(ap)
        ).sum()  # where, not a mask index: no sync
        counted += (r > 0).sum()
    return total / counted


@torch.no_grad()
def intra_inter_ratio(features, labels, num_classes: int) -> torch.Tensor:
    """Mean Euclidean distance of ``features`` ``(n, d)`` to their class mean, divided by the mean Euclidean
    distance between two class means (classes of ``labels`` ``(n,)`` that have a sample): a 0-d float
    tensor, unitless, lower is tighter."""
    means = class_means(features, labels, num_classes)
    intra = (features - means[labels]).norm(dim=1).mean()
    present = class_counts(labels, num_classes) > 0
    between = squared_distances(means.nan_to_num(0.0), means.nan_to_num(0.0)).sqrt()
    pair = (
        present[:, None]
        & present[None, :]
        & ~torch.eye(num_classes, dtype=torch.bool, device=features.device)
    )
    return intra / ((between * pair).sum() / pair.sum())


def embedding_metrics(
    train_features, train_labels, test_features, test_labels, num_classes
) -> dict[str, torch.Tensor]:
    """``knn1_acc`` (test queries against train references), ``map_at_r`` and ``intra_inter_ratio`` (of
    the test features), each a 0-d tensor; features ``(n, d)``, labels ``(n,)`` class indices."""
    return {
        "knn1_acc": knn1_accuracy(test_features, test_labels, train_features, train_labels),
        "map_at_r": map_at_r(test_features, test_labels, num_classes),
        "intra_inter_ratio": intra_inter_ratio(test_features, test_labels, num_classes),
    }
