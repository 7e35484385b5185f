from __future__ import annotations

import torch.nn.functional as F

from .base import LossWithCenters
from .distances import distance_to_own_center
from .options import WEIGHT_CENT


class SoftmaxCenterLoss(LossWithCenters):
    """``cent``: softmax cross-entropy plus the center loss (reference semantics).

    ``L = xent + weight_cent * L_center``,
    ``L_center = sum_i ||x_i - c_{y_i}||^2 / m`` (no 1/2 factor);
    classify by argmax of the logits.
    """

    pull_weight = "weight_cent"

    def __init__(self, num_classes: int, feat_dim: int, weight_cent: float = WEIGHT_CENT.default):
        super().__init__(num_classes, feat_dim)
        self.weight_cent = weight_cent

    def loss_terms(self, features, labels, logits=None):
        self.check_inputs(features, logits, labels)
        xent = F.cross_entropy(logits.float(), labels)
        center = distance_to_own_center(features, self.centers, labels).mean()
        return xent + self.weight_cent * center, {"xent": xent, "center": center}
