from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import LossWithCenters


class CentersSoftmaxLoss(LossWithCenters):
    """``centers-softmax``: the study's second alternative, a fully connected layer over the centers with softmax.

    ``z_ij = x_i . c_j + b_j`` (the centers are the layer's weights, ``b`` its bias, both learned),
    ``L = -1/m * sum_i log softmax(z_i)[y_i]``; the model's own head is not used.
    Classify by argmax of ``z``.
    """

    uses_logits = False  # the model's head is not trained; the logits come from the centers
    pull_weight = None  # no term pulls features to the centers: the classifier moves them
    centers_only_pulled = False

    def __init__(self, num_classes: int, feat_dim: int):
        super().__init__(num_classes, feat_dim)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    @property
    def center_weight(self) -> float:
        return 1.0  # no pull-to-center term to weigh

    def class_logits(self, features, logits=None):
        return features.float() @ self.centers.t() + self.bias

    def loss_terms(self, features, labels, logits=None):
        self.check_inputs(features, logits, labels)
        xent = F.cross_entropy(self.class_logits(features), labels)
        return xent, {"xent": xent}
