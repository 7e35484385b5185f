"""The geometry of class centers, on plain tensors: how close the two nearest classes are, how far the
centers moved. What a run watches for collapse (features and centers drawn to one point, as users of the
center-loss ports report at a high lr or center weight) and for centers that never move."""

from __future__ import annotations

import torch


@torch.no_grad()
def nearest_center_gap(centers: torch.Tensor) -> torch.Tensor:
    """The Euclidean distance between the two nearest of ``centers`` ``(classes, dim)`` (not squared; rows
    that are not finite, a class without samples, are left out): a 0-d tensor, NaN with fewer than two."""
    keep = torch.isfinite(centers).all(1)
    c = centers.float().nan_to_num(0.0)
    d = torch.cdist(c, c)
    pair = keep[:, None] & keep[None, :] & ~torch.eye(len(c), dtype=torch.bool, device=c.device)
    gap = torch.where(pair, d, torch.full_like(d, float("inf"))).min()
    return torch.where(torch.isinf(gap), torch.full_like(gap, float("nan")), gap)


@torch.no_grad()
def center_shift(centers: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """The mean Euclidean distance each center moved from ``before`` (same shape): a 0-d tensor."""
    return (centers.float() - before.float()).norm(dim=1).nanmean()
