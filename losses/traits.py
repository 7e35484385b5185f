"""What the runners and the report ask of a loss without training it, answered even where the loss cannot be
built here (a pytorch-metric-learning loss on a Python without the library: its class declares its proxies)."""
from __future__ import annotations

from . import LOSSES, build_loss
from .pml import MissingLibrary


def has_class_parameters(loss: str, feat_dim: int = 2, options: dict | None = None) -> bool:
    """Whether a run of ``loss`` trains class centers or proxies (its ``learnable_centers``): what the center
    rules act on. ValueError for an unknown loss or option, as ``build_loss``."""
    try:
        return build_loss(loss, 10, feat_dim, **(options or {})).learnable_centers is not None  # any class count
    except MissingLibrary:
        return getattr(LOSSES[loss], "proxies", None) is not None
