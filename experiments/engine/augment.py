"""Batch augmentation on the device, as tensor ops (no PIL, no DataLoader).

Input: uint8 images ``(B, C, H, W)``; output: float32 in [0, 1], same shape.
Every random draw comes from the generator given (the run's augmentation
generator, so that runs of one seed see the same augmentations whatever their
loss), or from the device's default generator when none is given.
The reference pipelines (pixels scaled to [0, 1], no normalisation):
MNIST rotation +-5 deg (bilinear); Fashion-MNIST horizontal flip + rotation
+-5 deg; CIFAR-10 horizontal flip + 4-pixel zero pad + random crop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255.0)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Horizontal flip of each image with probability 1/2."""
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device, generator=generator) < 0.5
    return torch.where(flip, x.flip(3), x)


def random_rotation(
    x: torch.Tensor, generator: torch.Generator | None = None, degrees: float = 5.0
) -> torch.Tensor:
    """Rotate each image about its center by a uniform angle in [-degrees, degrees],
    bilinear, zero fill (torchvision's RandomRotation with fill 0)."""
    angle = (torch.rand(x.shape[0], device=x.device, generator=generator) * 2 - 1) * (
        degrees * math.pi / 180
    )
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_crop(
    x: torch.Tensor, generator: torch.Generator | None = None, padding: int = 4
) -> torch.Tensor:
    """Zero-pad by ``padding`` and take a random crop of the original size per image."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (b, 1), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b, 1), device=x.device, generator=generator)
    rows = (dy + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx + torch.arange(w, device=x.device))[:, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)


REFERENCE_AUGMENTATIONS = {
    "mnist": (random_rotation,),
    "fashion-mnist": (random_flip, random_rotation),
    "cifar-10": (random_flip, random_crop),
}


class Augment:
    """``augment(uint8 batch) -> float batch``: the named pipeline of a dataset, its draws from ``generator``."""

    def __init__(
        self, dataset: str, mode: str = "reference", generator: torch.Generator | None = None
    ):
        if mode not in ("reference", "none"):
            raise ValueError(f"unknown augmentation {mode!r}; choose from reference, none")
        self.ops = REFERENCE_AUGMENTATIONS.get(dataset, ()) if mode == "reference" else ()
        self.generator = generator

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = to_unit_float(images)
        for op in self.ops:
            x = op(x, self.generator)
        return x
