"""A loss defined outside losses/, as a user adds one (docs/losses.md, "Add a loss"); used by the tests:
``LOSSES["hinge-to-center"] = ENTRY`` registers it."""

import torch
import torch.nn.functional as F

from centersuite.losses import LossEntry
from centersuite.losses.base import LossWithCenters
from centersuite.losses.distances import distance_to_own_center
from centersuite.losses.options import Option

HINGE_WEIGHT = Option(
    "hinge_weight", 0.5, "weight of the hinge pull to the centers", (1e-3, 10.0), log=True
)


class HingeToCenter(LossWithCenters):
    """``hinge-to-center``: softmax plus a pull to the centers that stops within distance 1.

    ``L = xent + hinge_weight * sum_i max(0, ||x_i - c_{y_i}||^2 - 1) / m``; classify by argmax.
    """

    pull_weight = "hinge_weight"

    def __init__(self, num_classes, feat_dim, hinge_weight: float = HINGE_WEIGHT.default):
        super().__init__(num_classes, feat_dim)
        self.hinge_weight = hinge_weight

    def loss_terms(self, features, labels, logits=None):
        self.check_inputs(features, logits, labels)
        xent = F.cross_entropy(logits.float(), labels)
        hinge = torch.relu(distance_to_own_center(features, self.centers, labels) - 1).mean()
        return xent + self.hinge_weight * hinge, {"xent": xent, "hinge": hinge}


ENTRY = LossEntry(HingeToCenter, (HINGE_WEIGHT,), class_parameters="centers")
