"""Squared Euclidean distances, always in float32 (also under autocast)."""

from __future__ import annotations

import torch


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``d[i, j] = ||a_i - b_j||^2`` for ``a: (n, D)``, ``b: (k, D)``, in float32.

    Uses ``|a|^2 + |b|^2 - 2 a.b`` (one matmul) and clamps at 0 against
    rounding; autocast is disabled so the matmul is never done in half precision.
    Its rounding error grows with the norms: where features lie far from the origin
    compared with their spread (norms in the hundreds, distances of a few units),
    near-ties between neighbours can flip (1-NN, MAP@R and nearest center read these
    distances); centering the features first removes the error.
    """
    with torch.autocast(a.device.type, enabled=False):
        a = a.float()
        b = b.float()
        d = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2.0 * (a @ b.t())
        return d.clamp_min(0.0)


def distance_to_own_center(
    features: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """``d(x_i, c_{y_i})`` for each sample, in float32, shape ``(n,)``."""
    with torch.autocast(features.device.type, enabled=False):
        return (features.float() - centers.float()[labels]).pow(2).sum(1)
