"""The engine's entry: one run of one config, as a typed call.

    result = run_one(cfg, RunContext(device=torch.device("cuda"), data_root=Path("data"), out=Path("runs")))

``cfg`` (a ``RunConfig``) is everything that changes the numbers; ``RunContext`` (engine/context.py) is
everything else: where the run trains and writes, when it stops, what it shows and what it records beside
its numbers. The run directory is ``ctx.out / cfg.run_id``; a finished run of the same fingerprint returns
its recorded result, an interrupted one resumes.
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.engine.config import RunConfig
from experiments.engine.context import RunContext, never
from experiments.engine.data import DeviceData, load_data
from experiments.engine.records import run_fingerprint
from experiments.engine.trainer import Trainer

__all__ = ["RunContext", "never", "run_one"]


def run_one(cfg: RunConfig, ctx: RunContext, data: DeviceData | None = None) -> dict:
    """Train ``cfg`` (or return its finished result) in ``ctx.out / cfg.run_id``; ``data``: the dataset
    already on the device, when the caller holds it."""
    run_dir = Path(ctx.out) / cfg.run_id
    if (run_dir / "result.json").exists() and run_fingerprint(run_dir) == ctx.fingerprint:
        return json.loads((run_dir / "result.json").read_text())
    data = data or load_data(cfg, ctx.data_root, ctx.device)
    return Trainer(cfg, data, run_dir, ctx).fit(ctx.should_stop)
