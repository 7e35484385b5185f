from __future__ import annotations

import torch.nn.functional as F

from .base import Loss


class SoftmaxLoss(Loss):
    """``xent``: softmax cross-entropy on the logits of the linear head.

    ``L = -1/m * sum_i log softmax(z_i)[y_i]``; classify by argmax of the logits.
    """

    def loss_terms(self, features, labels, logits=None):
        self.check_inputs(features, logits, labels)
        xent = F.cross_entropy(logits.float(), labels)
        return xent, {"xent": xent}
