from __future__ import annotations

import torch

from .options import MARGIN, WEIGHT_INTER, WEIGHT_INTRA
from .standalone import StandaloneCenterLoss


class StandaloneLogLoss(StandaloneCenterLoss):
    """``standalone-log``: the standalone loss with the inter term as the study's text writes it.

    ``L = weight_intra * L_intra - weight_inter * sum_{i,j: y_i != y_j} log(max(d(x_i, x_j), 1e-12)) / m``
    (the clamp keeps coincident points finite).
    """

    def inter_pair_term(self, pair_distances):
        return torch.log(pair_distances.clamp_min(1e-12))


class StandaloneMarginLoss(StandaloneCenterLoss):
    """``standalone-margin``: the inter term truncated by a margin instead of the logarithm.

    ``L = weight_intra * L_intra + weight_inter * sum_{i,j: y_i != y_j} max(0, margin - d(x_i, x_j)) / m``;
    the logged ``inter`` term is the negated hinge sum (what is subtracted).
    """

    def __init__(
        self,
        num_classes,
        feat_dim,
        weight_intra: float = WEIGHT_INTRA.default,
        weight_inter: float = WEIGHT_INTER.default,
        margin: float = MARGIN.default,
    ):
        super().__init__(num_classes, feat_dim, weight_intra, weight_inter)
        self.margin = margin

    def inter_pair_term(self, pair_distances):
        return -torch.relu(self.margin - pair_distances)
