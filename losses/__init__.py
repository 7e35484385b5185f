"""Loss registry: every loss is a small class with the same call signature.

``build_loss(name, num_classes, feat_dim, **options)`` makes one; options a
loss does not take are rejected with a clear message.
"""
from __future__ import annotations

from .base import Loss
from .options import Option
from .cent import SoftmaxCenterLoss
from .center_radius import CenterRadiusLoss
from .centers_only import CentersOnlyLoss
from .centers_softmax import CentersSoftmaxLoss
from .contrastive_center import ContrastiveCenterLoss
from .standalone import StandaloneCenterLoss
from .standalone_variants import StandaloneLogLoss, StandaloneMarginLoss
from .xent import SoftmaxLoss
from .push_variants import GitLoss, IslandLoss
from . import pml

LOSSES: dict[str, type[Loss]] = {
    "xent": SoftmaxLoss,
    "cent": SoftmaxCenterLoss,
    "standalone": StandaloneCenterLoss,
    "standalone-log": StandaloneLogLoss,
    "standalone-margin": StandaloneMarginLoss,
    "centers-only": CentersOnlyLoss,
    "center-radius": CenterRadiusLoss,
    "contrastive-center": ContrastiveCenterLoss,
    "centers-softmax": CentersSoftmaxLoss,
    "git": GitLoss,
    "island": IslandLoss,
    # pytorch-metric-learning's losses (losses/pml.py: an adapter; the library is imported when one is built)
    "arcface": pml.ArcFace,
    "cosface": pml.CosFace,
    "sphereface": pml.SphereFace,
    "normalized-softmax": pml.NormalizedSoftmax,
    "proxy-nca": pml.ProxyNCA,
    "proxy-anchor": pml.ProxyAnchor,
    "soft-triple": pml.SoftTriple,
    "contrastive": pml.Contrastive,
    "triplet": pml.Triplet,
    "multi-similarity": pml.MultiSimilarity,
    "supcon": pml.SupCon,
}


def loss_options(name: str) -> dict[str, object]:
    """The options a loss takes, with their defaults."""
    return {o.name: o.default for o in LOSSES[name].options}


def option_definitions() -> dict[str, Option]:
    """Every option of every registered loss, by name (one definition each)."""
    found: dict[str, Option] = {}
    for loss in LOSSES.values():
        for option in loss.options:
            if found.setdefault(option.name, option) != option:
                raise TypeError(f"two losses define the option {option.name!r} differently; define it once in "
                                "losses/options.py and use it in both")
    return found


def build_loss(name: str, num_classes: int, feat_dim: int, **options) -> Loss:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
    unknown = sorted(set(options) - set(loss_options(name)))
    if unknown:
        raise ValueError(f"loss {name!r} takes no option {', '.join(unknown)}; it takes: {', '.join(loss_options(name)) or 'none'}")
    return LOSSES[name](num_classes, feat_dim, **options)
