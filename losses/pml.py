"""The field's competitors from pytorch-metric-learning, behind the suite's loss interface.

An adapter, not copies: every total is the library's own call on the features
(float32, autocast off) and the labels; no formula is written here. Three kinds:

- ``classifier`` (arcface, cosface, sphereface, normalized-softmax) and
  ``proxy`` (proxy-nca, proxy-anchor, soft-triple): the library's learnable
  class weights or proxies are this loss's parameters, trained under the
  ``joint`` center rule (``separate`` and ``wen`` are refused: the library's
  loss moves them), drawn as the centers in 2-D pictures and used by the
  nearest-center OOD score (at unit length: see below). They classify by the library's ``get_logits``
  (cosine times scale for the margin losses: the margin is left out at test
  time; a distance is negated so that the largest logit is the nearest).
  SoftTriple has several sub-centers per class: it has no one center per class
  to draw, and its nearest-center figures use the class means.
- ``pair`` (contrastive, triplet with the library's triplet-margin miner,
  multi-similarity, supcon): no class parameters; they classify by the nearest
  class mean of the training features (the evaluation's ``class_mean`` rule),
  and their train accuracy by the nearest running mean of the training
  features (momentum 0.9, kept as a buffer; a class's first batch sets it).

Every classifier and proxy loss here compares by cosine (its distance
normalizes the features and the proxies): its ``centers`` are the unit
proxies, so that the evaluation's nearest center is its nearest proxy by
cosine and the 2-D pictures draw the proxies' directions at radius 1.

The model's own classifier head is not trained by any of them. ``graph_safe``
says whether the library's forward can be captured in a CUDA graph (no host
sync, no output shape that depends on the data): where it cannot, the runner
runs that loss with eager steps and says so once (tests/test_losses_pml.py
checks each declaration op by op). The installed library's version is part of
these losses' code fingerprint (their registry entry names it), so upgrading it makes their rows
stale. The library is imported when such a loss is built: without it, building
one fails with one line naming the package, and every other loss still runs.

Source: K. Musgrave, S. Belongie, S.-N. Lim, "PyTorch Metric Learning",
arXiv:2008.09164, 2020; the losses' papers are named in each class's docstring.
"""

from __future__ import annotations

import torch

from .base import Loss
from .distances import squared_distances
from .options import (
    ARC_MARGIN,
    COS_MARGIN,
    MINER_MARGIN,
    MS_ALPHA,
    MS_BASE,
    MS_BETA,
    NEG_MARGIN,
    POS_MARGIN,
    PROXY_ALPHA,
    PROXY_MARGIN,
    SCALE,
    SOFT_GAMMA,
    SOFT_LA,
    SOFT_MARGIN,
    SOFTMAX_SCALE,
    SOFTMAX_TEMPERATURE,
    SPHERE_MARGIN,
    SUPCON_TEMPERATURE,
    TRIPLET_MARGIN,
)

LIBRARY = "pytorch-metric-learning"
RUNNING_MOMENTUM = 0.9


class MissingLibrary(ValueError):
    """The library an adapted loss needs is not installed (one line, with the fix)."""


def library():
    """``pytorch_metric_learning``, or MissingLibrary naming the package and the fix."""
    try:
        import pytorch_metric_learning.losses
        import pytorch_metric_learning.miners  # noqa: F401 (the adapter reads both submodules)
    except ImportError:
        raise MissingLibrary(
            f"this loss needs the package {LIBRARY}, which this Python lacks: "
            f"pip install {LIBRARY} (or install this package with its extra: pip install "
            "'/path/to/checkout[pml]'); every other loss runs without it"
        ) from None
    return pytorch_metric_learning


class MetricLearningLoss(Loss):
    """A pytorch-metric-learning loss as a suite loss (see the module docstring). Each subclass names
    ``library_loss`` (the class in ``pytorch_metric_learning.losses``), its ``kind`` (``classifier``,
    ``proxy``, ``pair``) and ``prediction``, ``renamed`` (suite option name -> the library's argument),
    ``proxies`` (the attribute holding the class weights, and whether the library stores them as
    ``(feat_dim, classes)``), ``miner`` and ``graph_safe``; its ``__init__`` takes its options."""

    uses_logits = False  # the model's head is not trained
    centers_only_pulled = False  # the library's loss moves its proxies: only the joint rule fits
    library_loss = ""
    kind = "pair"
    renamed: dict[str, str] = {}
    proxies: tuple[str, bool] | None = None
    miner: tuple[str, dict[str, str]] | None = None
    graph_safe = False
    term = ""

    def __init__(self, num_classes: int, feat_dim: int, **values: float):
        super().__init__(num_classes, feat_dim)
        for name, value in values.items():
            setattr(self, name, value)
        lib = library()
        args = {
            self.renamed.get(k, k): v
            for k, v in values.items()
            if self.renamed.get(k, k) is not None
        }
        miner_args = {}
        if self.miner is not None:
            miner_args = {lib_name: args.pop(name) for name, lib_name in self.miner[1].items()}
        if self.kind != "pair":
            args.update(num_classes=self.num_classes, embedding_size=self.feat_dim)
        self.metric_loss = getattr(lib.losses, self.library_loss)(**args)
        self.mine = (
            getattr(lib.miners, self.miner[0])(**miner_args) if self.miner is not None else None
        )
        if self.kind == "pair":
            self.register_buffer("running_means", torch.zeros(self.num_classes, self.feat_dim))
            self.register_buffer("seen", torch.zeros(self.num_classes, 1, dtype=torch.bool))

    @property
    def compares_directions(self) -> bool:
        """Whether the library's distance normalizes what it compares (its proxies and the features)."""
        return bool(self.metric_loss.distance.normalize_embeddings)

    @property
    def learnable_centers(self) -> torch.nn.Parameter | None:
        """The library's class weights or proxies, as the library stores them."""
        return getattr(self.metric_loss, self.proxies[0]) if self.proxies is not None else None

    @property
    def centers(self) -> torch.Tensor | None:
        """One proxy per class, ``(num_classes, feat_dim)``; None for pair losses and SoftTriple. Where the
        library's distance normalizes what it compares (every classifier and proxy loss registered here), these
        are the proxies at unit length: the evaluation's Euclidean nearest center is then the nearest proxy by
        cosine, the library's own measure (``||x - c||^2 = ||x||^2 - 2 x.c + 1`` for every unit ``c``)."""
        weights = self.learnable_centers
        if weights is None:
            return None
        weights = weights.t() if self.proxies[1] else weights
        if weights.shape != (self.num_classes, self.feat_dim):
            return None
        return (
            torch.nn.functional.normalize(weights, dim=1)
            if self.metric_loss.distance.normalize_embeddings
            else weights
        )

    def loss_terms(self, features, labels, logits=None):
        self.check_inputs(features, logits, labels)
        with torch.autocast(features.device.type, enabled=False):
            features = features.float()
            pairs = self.mine(features, labels) if self.mine is not None else None
            total = self.metric_loss(features, labels, pairs)
        if self.kind == "pair" and self.training:
            self._track_means(features.detach(), labels)
        return total, {self.term: total}

    @torch.no_grad()
    def _track_means(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        sums = torch.zeros_like(self.running_means).index_add_(0, labels, features)
        counts = torch.zeros(self.num_classes, device=features.device).index_add_(
            0, labels, torch.ones_like(labels, dtype=features.dtype)
        )[:, None]
        means = sums / counts.clamp_min(1)
        moved = torch.where(
            self.seen, RUNNING_MOMENTUM * self.running_means + (1 - RUNNING_MOMENTUM) * means, means
        )
        self.running_means.copy_(torch.where(counts > 0, moved, self.running_means))
        self.seen.logical_or_(counts > 0)

    def class_logits(self, features, logits=None):
        if self.kind == "pair":
            return None
        with torch.autocast(features.device.type, enabled=False):
            scores = self.metric_loss.get_logits(features.float())
        return scores if self.metric_loss.distance.is_inverted else -scores

    @torch.no_grad()
    def predict(self, features, logits):
        if self.kind == "pair":
            return squared_distances(features, self.running_means).argmin(1)
        return super().predict(features, logits)


class ArcFace(MetricLearningLoss):
    """``arcface``: additive angular margin softmax (Deng et al., CVPR 2019); the library's ``ArcFaceLoss``."""

    library_loss, term, proxies, renamed = (
        "ArcFaceLoss",
        "arcface",
        ("W", True),
        {"arc_margin": "margin"},
    )
    kind, prediction = "classifier", "logits"

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        arc_margin: float = ARC_MARGIN.default,
        scale: float = SCALE.default,
    ):
        super().__init__(num_classes, feat_dim, arc_margin=arc_margin, scale=scale)


class CosFace(MetricLearningLoss):
    """``cosface``: additive cosine margin softmax (Wang et al., CVPR 2018); the library's ``CosFaceLoss``."""

    library_loss, term, proxies, renamed = (
        "CosFaceLoss",
        "cosface",
        ("W", True),
        {"cos_margin": "margin"},
    )
    kind, prediction = "classifier", "logits"

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        cos_margin: float = COS_MARGIN.default,
        scale: float = SCALE.default,
    ):
        super().__init__(num_classes, feat_dim, cos_margin=cos_margin, scale=scale)


class SphereFace(MetricLearningLoss):
    """``sphereface``: multiplicative angular margin softmax, A-Softmax (Liu et al., CVPR 2017); the library's
    ``SphereFaceLoss`` at scale 1, its margin ``m`` the option ``sphere_margin`` (the library's ``margin``, a
    whole number). The paper anneals the margin in (``(lambda cos + psi) / (1 + lambda)``, lambda from 1000
    down to 5); the library does not."""

    library_loss, term, proxies = "SphereFaceLoss", "sphereface", ("W", True)
    renamed = {"sphere_margin": "margin"}
    kind, prediction = "classifier", "logits"

    def __init__(
        self, num_classes: int, feat_dim: int, sphere_margin: float = SPHERE_MARGIN.default
    ):
        super().__init__(num_classes, feat_dim, sphere_margin=sphere_margin)


class NormalizedSoftmax(MetricLearningLoss):
    """``normalized-softmax``: softmax over normalized class weights with a temperature (Zhai and Wu, BMVC
    2019); the library's ``NormalizedSoftmaxLoss``."""

    library_loss, term, proxies = "NormalizedSoftmaxLoss", "normalized-softmax", ("W", True)
    renamed = {"softmax_temperature": "temperature"}
    kind, prediction, graph_safe = "classifier", "logits", True

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        softmax_temperature: float = SOFTMAX_TEMPERATURE.default,
    ):
        super().__init__(num_classes, feat_dim, softmax_temperature=softmax_temperature)


class ProxyNCA(MetricLearningLoss):
    """``proxy-nca``: NCA over one proxy per class (Movshovitz-Attias et al., ICCV 2017); the library's
    ``ProxyNCALoss``."""

    library_loss, term, proxies = "ProxyNCALoss", "proxy-nca", ("proxies", False)
    kind, prediction = "proxy", "logits"

    def __init__(
        self, num_classes: int, feat_dim: int, softmax_scale: float = SOFTMAX_SCALE.default
    ):
        super().__init__(num_classes, feat_dim, softmax_scale=softmax_scale)


class ProxyAnchor(MetricLearningLoss):
    """``proxy-anchor``: proxies as anchors (Kim et al., CVPR 2020); the library's ``ProxyAnchorLoss``."""

    library_loss, term, proxies = "ProxyAnchorLoss", "proxy-anchor", ("proxies", False)
    renamed = {"proxy_margin": "margin", "proxy_alpha": "alpha"}
    kind, prediction = "proxy", "logits"

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        proxy_margin: float = PROXY_MARGIN.default,
        proxy_alpha: float = PROXY_ALPHA.default,
    ):
        super().__init__(num_classes, feat_dim, proxy_margin=proxy_margin, proxy_alpha=proxy_alpha)


class SoftTriple(MetricLearningLoss):
    """``soft-triple``: softmax over 10 sub-centers per class (Qian et al., ICCV 2019); the library's
    ``SoftTripleLoss``."""

    library_loss, term, proxies = "SoftTripleLoss", "soft-triple", ("fc", True)
    renamed = {"soft_la": "la", "soft_gamma": "gamma", "soft_margin": "margin"}
    kind, prediction = "proxy", "logits"

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        soft_la: float = SOFT_LA.default,
        soft_gamma: float = SOFT_GAMMA.default,
        soft_margin: float = SOFT_MARGIN.default,
    ):
        super().__init__(
            num_classes, feat_dim, soft_la=soft_la, soft_gamma=soft_gamma, soft_margin=soft_margin
        )


class Contrastive(MetricLearningLoss):
    """``contrastive``: every positive and negative pair of the batch, Euclidean distance (Hadsell et al., CVPR
    2006); the library's ``ContrastiveLoss``."""

    library_loss, term = "ContrastiveLoss", "contrastive"
    kind, prediction = "pair", "centers"

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        pos_margin: float = POS_MARGIN.default,
        neg_margin: float = NEG_MARGIN.default,
    ):
        super().__init__(num_classes, feat_dim, pos_margin=pos_margin, neg_margin=neg_margin)


class Triplet(MetricLearningLoss):
    """``triplet``: triplet margin loss on the triplets the library's triplet-margin miner finds (Schroff et al.,
    CVPR 2015); the library's ``TripletMarginLoss`` and ``TripletMarginMiner``."""

    library_loss, term, renamed = "TripletMarginLoss", "triplet", {"triplet_margin": "margin"}
    miner = ("TripletMarginMiner", {"miner_margin": "margin"})
    kind, prediction = "pair", "centers"

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        triplet_margin: float = TRIPLET_MARGIN.default,
        miner_margin: float = MINER_MARGIN.default,
    ):
        super().__init__(
            num_classes, feat_dim, triplet_margin=triplet_margin, miner_margin=miner_margin
        )


class MultiSimilarity(MetricLearningLoss):
    """``multi-similarity``: pairs weighted by their self and relative similarities (Wang et al., CVPR 2019);
    the library's ``MultiSimilarityLoss``."""

    library_loss, term = "MultiSimilarityLoss", "multi-similarity"
    renamed = {"ms_alpha": "alpha", "ms_beta": "beta", "ms_base": "base"}
    kind, prediction = "pair", "centers"

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        ms_alpha: float = MS_ALPHA.default,
        ms_beta: float = MS_BETA.default,
        ms_base: float = MS_BASE.default,
    ):
        super().__init__(num_classes, feat_dim, ms_alpha=ms_alpha, ms_beta=ms_beta, ms_base=ms_base)


class SupCon(MetricLearningLoss):
    """``supcon``: supervised contrastive loss (Khosla et al., NeurIPS 2020); the library's ``SupConLoss``."""

    library_loss, term, renamed = "SupConLoss", "supcon", {"supcon_temperature": "temperature"}
    kind, prediction = "pair", "centers"

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        supcon_temperature: float = SUPCON_TEMPERATURE.default,
    ):
        super().__init__(num_classes, feat_dim, supcon_temperature=supcon_temperature)
