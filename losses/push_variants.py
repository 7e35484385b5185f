"""The center-loss family's own push variants: softmax + center loss + a term that pushes classes apart.

Both are the suite's own code (the formulas below), with the center term as ``cent`` writes it
(``L_center = sum_i ||x_i - c_{y_i}||^2 / m``, no 1/2 factor) so that the three share one pull.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import LossWithCenters
from .distances import distance_to_own_center, squared_distances
from .options import LAMBDA_1, LAMBDA_C, LAMBDA_G, LAMBDA_ISLAND


class SoftmaxCenterPush(LossWithCenters):
    """``xent + center_weight * L_center + push_weight * L_push``: what git and island share; a subclass gives
    ``push(features, labels)`` (its ``L_push``, named ``push_term``) and the two weights."""

    pull_weight = None  # each subclass names its own
    centers_only_pulled = False  # the push moves the centers too
    push_term = ""

    @property
    def push_weight(self) -> float:
        raise NotImplementedError

    def push(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss_terms(self, features, labels, logits=None):
        self.check_inputs(features, logits, labels)
        xent = F.cross_entropy(logits.float(), labels)
        center = distance_to_own_center(features, self.centers, labels).mean()
        push = self.push(features, labels)
        total = xent + self.center_weight * center + self.push_weight * push
        return total, {"xent": xent, "center": center, self.push_term: push}


class GitLoss(SoftmaxCenterPush):
    """``git``: softmax + center loss + a push of each feature away from the other classes' centers.

    ``L = xent + lambda_c * L_center + lambda_g * L_git``,
    ``L_git = sum_i sum_{j != y_i} 1 / (1 + ||x_i - c_j||^2) / m``
    (squared Euclidean distance; divided by the batch size m, as ``L_center``). Classify by argmax of the logits.

    Source: A. Calefati, M. K. Janjua, S. Nawaz, I. Gallo, "Git Loss for Deep Face Recognition", BMVC 2018,
    eq. 3-4 (the sum over the other classes' centers). Defaults lambda_c = 0.01, lambda_g = 0.1: the MNIST
    figure of the authors' code (github.com/kjanjua26/Git-Loss-For-Deep-Face-Recognition,
    results/git-loss-lc001-lg01.png). That code differs from the paper's formula (a mean over feature
    dimensions of 1 / (1 + (x_i - c_{y_j})^2) against the batch's own centers, its masked diagonal counted);
    the paper's formula is the one written here.
    """

    pull_weight = "lambda_c"
    push_term = "git"

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        lambda_c: float = LAMBDA_C.default,
        lambda_g: float = LAMBDA_G.default,
    ):
        super().__init__(num_classes, feat_dim)
        self.lambda_c = lambda_c
        self.lambda_g = lambda_g

    @property
    def center_weight(self) -> float:
        return self.lambda_c

    @property
    def push_weight(self) -> float:
        return self.lambda_g

    def push(self, features, labels):
        others = torch.ones(features.shape[0], self.num_classes, device=features.device).scatter_(
            1, labels[:, None], 0.0
        )
        return (others / (1 + squared_distances(features, self.centers))).sum(1).mean()


class IslandLoss(SoftmaxCenterPush):
    """``island``: softmax + the island loss, center loss plus a push between the centers' directions.

    ``L = xent + lambda_island * (L_center + lambda_1 * L_island)``,
    ``L_island = sum_{j != k} (cos(c_j, c_k) + 1)`` over ordered pairs of distinct classes (each pair twice, as
    the paper's double sum), a cosine of a zero center taken as 0. Classify by argmax of the logits.

    Source: J. Cai, Z. Meng, A. S. Khan, Z. Li, J. O'Reilly, Y. Tong, "Island Loss for Learning Discriminative
    Features in Facial Expression Recognition", FG 2018, eq. 4-5; defaults lambda_island = 0.01 and
    lambda_1 = 10, the values of the paper's experiments.
    """

    pull_weight = "lambda_island"
    push_term = "island"

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        lambda_island: float = LAMBDA_ISLAND.default,
        lambda_1: float = LAMBDA_1.default,
    ):
        super().__init__(num_classes, feat_dim)
        self.lambda_island = lambda_island
        self.lambda_1 = lambda_1

    @property
    def center_weight(self) -> float:
        return self.lambda_island

    @property
    def push_weight(self) -> float:
        return self.lambda_island * self.lambda_1

    def push(self, features, labels):
        unit = F.normalize(self.centers.float(), dim=1)
        off_diagonal = 1 - torch.eye(self.num_classes, device=unit.device)
        return ((unit @ unit.t() + 1) * off_diagonal).sum()
