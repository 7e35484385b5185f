"""Seeds by purpose, so that runs of one seed that differ only in their loss (or its options, or the
center rule) start from the same model and see the same batches and the same augmentations.

Each purpose draws from its own generator, seeded from the run's seed and the purpose's name: the model's
initialisation, the loss's parameters (its centers), the order of the batches, the augmentation. On CUDA
the augmentation draws from the device's default generator (the one a captured CUDA graph replays with),
which nothing else of a run uses. The evaluation's training subset and the frames' points are the same for
every run (fixed seeds where they are drawn).
"""

from __future__ import annotations

import contextlib
import hashlib

import torch


def purpose_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed from the run's seed and a purpose's name, the same on every machine."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{purpose}".encode()).digest()[:8], "little") >> 1


@contextlib.contextmanager
def seeded(seed: int, purpose: str):
    """Inside: the CPU's default generator seeded for ``purpose`` (what ``nn`` initialisers draw from);
    outside, its state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(purpose_seed(seed, purpose))
        yield


class RunGenerators:
    """The generators a run draws from while it trains: ``batches`` (on the device) and ``augment`` (None on
    CUDA: the device's default generator, seeded here)."""

    def __init__(self, seed: int, device: torch.device):
        self.device = device
        self.batches = torch.Generator(device=device).manual_seed(purpose_seed(seed, "batches"))
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(purpose_seed(seed, "augment"))
            self.augment = None
        else:
            self.augment = torch.Generator().manual_seed(purpose_seed(seed, "augment"))

    def state(self) -> dict:
        """What a checkpoint keeps (the device's default generator is kept with the run's other RNG state)."""
        return {
            "batches": self.batches.get_state(),
            "augment": None if self.augment is None else self.augment.get_state(),
        }

    def load_state(self, state: dict) -> None:
        self.batches.set_state(state["batches"].cpu())
        if self.augment is not None and state["augment"] is not None:
            self.augment.set_state(state["augment"].cpu())
