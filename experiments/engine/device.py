"""The device a run trains on, and its name as the ledger records it."""

from __future__ import annotations

import os

import torch

ONEDNN_ISAS = (  # oneDNN's instruction sets, lowest first, each with what the CPU needs for it
    ("avx2", "_is_avx2_supported"),
    ("avx512_core", "_is_avx512_supported"),
    ("avx512_core_vnni", "_is_vnni_supported"),
    ("avx512_core_bf16", "_is_avx512_bf16_supported"),
    ("avx512_core_amx", "_is_amx_tile_supported"),
)


def onednn_isa() -> str:
    """The instruction set oneDNN dispatches its convolutions to on this CPU: the highest this CPU has, capped
    by ``ONEDNN_MAX_CPU_ISA`` where it is set (its own cap); ``none`` below AVX2."""
    isa = "none"
    for name, check in ONEDNN_ISAS:
        if getattr(torch.cpu, check, lambda: False)():
            isa = name
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").lower()
    names = [n for n, _ in ONEDNN_ISAS]
    if cap in names and isa in names and names.index(cap) < names.index(isa):
        isa = cap
    return isa


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's thread count, the SIMD kernels PyTorch picked on it (AVX2, AVX512, ...)
    and oneDNN's instruction set: CPU results are bit-identical only for the same threads and the same
    kernels (``cpu (1 thread, AVX2, oneDNN avx2)``)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return (
        f"{device.type} ({threads} thread{'s' if threads != 1 else ''}, "
        f"{torch.backends.cpu.get_cpu_capability()}, oneDNN {onednn_isa()})"
    )


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: the environment's ``SUITE_DEVICE`` if set (the tests pin ``cpu``), else CUDA if present."""
    if name == "auto":
        name = os.environ.get("SUITE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available; use --device cpu")
    return torch.device(name)
