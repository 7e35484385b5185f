from __future__ import annotations

import torch.nn.functional as F

from .base import LossWithCenters
from .distances import squared_distances
from .options import DELTA, WEIGHT_CONTRASTIVE


class ContrastiveCenterLoss(LossWithCenters):
    """``contrastive-center``: softmax plus the contrastive-center loss.

    ``L = xent + weight * sum_i 1/2 * d(x_i, c_{y_i}) / (sum_{j != y_i} d(x_i, c_j) + delta) / m``;
    classify by argmax of the logits.
    """

    pull_weight = "weight"

    def __init__(
        self,
        num_classes,
        feat_dim,
        weight: float = WEIGHT_CONTRASTIVE.default,
        delta: float = DELTA.default,
    ):
        super().__init__(num_classes, feat_dim)
        self.weight, self.delta = weight, delta

    def loss_terms(self, features, labels, logits=None):
        self.check_inputs(features, logits, labels)
        xent = F.cross_entropy(logits.float(), labels)
        d = squared_distances(features, self.centers)
        own = d.gather(1, labels[:, None]).squeeze(1)
        others = d.sum(1) - own
        contrastive = (0.5 * own / (others + self.delta)).mean()
        return xent + self.weight * contrastive, {"xent": xent, "contrastive_center": contrastive}
