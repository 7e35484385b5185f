from __future__ import annotations

import torch

from .base import LossWithCenters
from .distances import distance_to_own_center, squared_distances
from .options import WEIGHT_INTER, WEIGHT_INTRA


class StandaloneCenterLoss(LossWithCenters):
    """``standalone``: center loss with a log inter-class push, no softmax.

    ``L = weight_intra * L_intra - weight_inter * L_inter`` with
    ``L_intra = sum_i ||x_i - c_{y_i}||^2 / m`` and
    ``L_inter = sum_{i,j: y_i != y_j} log(1 + ||x_i - x_j||^2) / m``
    over every ordered pair of samples with different labels, divided by the
    batch size m (not by the number of pairs). Classify by nearest center.
    """

    uses_logits = False
    prediction = "centers"
    pull_weight = "weight_intra"

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        weight_intra: float = WEIGHT_INTRA.default,
        weight_inter: float = WEIGHT_INTER.default,
    ):
        super().__init__(num_classes, feat_dim)
        self.weight_intra = weight_intra
        self.weight_inter = weight_inter

    def inter_pair_term(self, pair_distances: torch.Tensor) -> torch.Tensor:
        """The per-pair quantity summed by ``L_inter``: ``log(1 + d)``."""
        return torch.log1p(pair_distances)

    def loss_terms(self, features, labels, logits=None):
        self.check_inputs(features, logits, labels)
        m = features.shape[0]
        intra = distance_to_own_center(features, self.centers, labels).sum() / m
        different = labels[:, None] != labels[None, :]
        pair_terms = self.inter_pair_term(squared_distances(features, features))
        inter = torch.where(different, pair_terms, torch.zeros_like(pair_terms)).sum() / m
        total = self.weight_intra * intra - self.weight_inter * inter
        return total, {"intra": intra, "inter": inter}
