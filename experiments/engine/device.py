"""The device a run trains on, and its name as the ledger records it."""

from __future__ import annotations

import os

import torch


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's thread count and the SIMD kernels PyTorch picked on it (AVX2,
    AVX512, ...): CPU results are bit-identical only for the same threads and the same kernels."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})"


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: the environment's ``SUITE_DEVICE`` if set (the tests pin ``cpu``), else CUDA if present."""
    if name == "auto":
        name = os.environ.get("SUITE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available; use --device cpu")
    return torch.device(name)
