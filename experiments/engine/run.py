"""The engine's entry: one run of one config, as a typed call.

    result = run_one(cfg, RunContext(device=torch.device("cuda"), data_root=Path("data"), out=Path("runs")))

``cfg`` (a ``RunConfig``) is everything that changes the numbers; ``RunContext``
is everything else: where the run trains and writes, when it stops, what it
shows and what it records beside its numbers. The run directory is
``ctx.out / cfg.run_id``; a finished run of the same fingerprint returns its
recorded result, an interrupted one resumes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from experiments.engine.config import RunConfig
from experiments.engine.data import DeviceData, load_data
from experiments.engine.trainer import Trainer, run_fingerprint


def never() -> bool:
    return False


@dataclass(frozen=True)
class RunContext:
    """Where and how one run trains; nothing here changes its numbers.

    ``use_graph``: None for the default (one CUDA graph per step on CUDA, except fp16), False for eager
    steps; ``compile``: torch.compile the forward (CPU); ``fingerprint`` and ``code_version``: recorded with
    the run (experiments/ledger/); ``epoch_log``: ``(run_dir, first epoch) -> log`` (TensorBoard) or None."""
    device: torch.device
    data_root: Path
    out: Path
    should_stop: Callable[[], bool] = never
    progress: bool = True
    use_graph: bool | None = None
    compile: bool = False
    fingerprint: str = ""
    code_version: str = "unknown"
    epoch_log: Callable | None = None
    log: Callable[[str], None] = print


def run_one(cfg: RunConfig, ctx: RunContext, data: DeviceData | None = None) -> dict:
    """Train ``cfg`` (or return its finished result) in ``ctx.out / cfg.run_id``; ``data``: the dataset
    already on the device, when the caller holds it."""
    run_dir = Path(ctx.out) / cfg.run_id
    if (run_dir / "result.json").exists() and run_fingerprint(run_dir) == ctx.fingerprint:
        return json.loads((run_dir / "result.json").read_text())
    data = data or load_data(cfg, ctx.data_root, ctx.device)
    return Trainer(cfg, data, ctx.device, run_dir, progress=ctx.progress, log=ctx.log, use_graph=ctx.use_graph,
                   compile=ctx.compile, fingerprint=ctx.fingerprint, code_version=ctx.code_version,
                   epoch_log=ctx.epoch_log).fit(ctx.should_stop)
