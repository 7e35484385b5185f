from __future__ import annotations

import torch
from torch import nn

from .base import CenterParameters, Loss
from .distances import distance_to_own_center
from .options import CENTER_SCALE, FIXED_CENTERS, RADIUS


class CenterRadiusLoss(Loss):
    """``center-radius``: generalised center loss, no softmax.

    ``L = sum_i max(d(x_i, c_{y_i}) - radius, 0) / m``; classify by nearest center.
    With ``fixed_centers`` the centers are not trained: ``center_scale`` times
    the one-hot vectors when feat_dim == num_classes, otherwise fixed random
    directions (seed 0) of norm ``center_scale``. Learnable centers with no push
    term can collapse onto each other; the fixed ones cannot.
    """

    uses_logits = False
    prediction = "centers"

    def __init__(
        self,
        num_classes,
        feat_dim,
        radius: float = RADIUS.default,
        fixed_centers: bool = FIXED_CENTERS.default,
        center_scale: float = CENTER_SCALE.default,
    ):
        super().__init__(num_classes, feat_dim)
        self.radius, self.fixed_centers, self.center_scale = radius, fixed_centers, center_scale
        if fixed_centers:
            if feat_dim == num_classes:
                fixed = torch.eye(num_classes)
            else:
                fixed = torch.randn(
                    num_classes, feat_dim, generator=torch.Generator().manual_seed(0)
                )
                fixed = fixed / fixed.norm(dim=1, keepdim=True)
            self.register_buffer("fixed", center_scale * fixed)
        else:
            self.center_params = CenterParameters(num_classes, feat_dim)

    @property
    def centers(self) -> torch.Tensor | nn.Parameter:
        return self.fixed if self.fixed_centers else self.center_params.weight

    def loss_terms(self, features, labels, logits=None):
        self.check_inputs(features, logits, labels)
        d = distance_to_own_center(features, self.centers, labels)
        radius = torch.relu(d - self.radius).mean()
        return radius, {"radius": radius}
