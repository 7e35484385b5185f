"""Where and how one run trains: everything but its numbers (those are its ``RunConfig``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch


def never() -> bool:
    return False


@dataclass(frozen=True)
class RunContext:
    """``device``: where it trains; ``data_root``: where the datasets live; ``out``: where run directories go
    (a run's own is ``out / run_id``); ``should_stop``: asked after each epoch's checkpoint; ``progress``:
    progress bars; ``use_graph``: None for the default (one CUDA graph per step on CUDA, except fp16), False for
    eager steps; ``compile``: torch.compile the forward (CPU); ``fingerprint`` and ``code_version``: recorded
    with the run (experiments/ledger/); ``epoch_log``: ``(run_dir, first epoch) -> log`` (TensorBoard) or None;
    ``log``: where its lines go. Nothing here changes a run's numbers."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    data_root: Path = Path("data")
    out: Path = Path("runs")
    should_stop: Callable[[], bool] = never
    progress: bool = True
    use_graph: bool | None = None
    compile: bool = False
    fingerprint: str = ""
    code_version: str = "unknown"
    epoch_log: Callable | None = None
    log: Callable[[str], None] = print
