"""One case of the bench (experiments/bench.py): a training step's speed and memory and an evaluation's
time, for one dataset, loss, mode and precision, through the shared trainer; rows printed and recorded."""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import torch

from centersuite.losses import LOSSES
from experiments.engine.config import RunConfig
from experiments.engine.context import RunContext
from experiments.engine.data import epoch_batches
from experiments.engine.device import device_name
from experiments.engine.io import atomic_write_csv
from experiments.engine.trainer import Trainer
from experiments.ledger.provenance import code_version

PLAIN = "plain loop (DataLoader, eager)"
FP16_EAGER = (
    "eager (fp16: no graph)"  # GradScaler syncs with the host every step and cannot be captured:
)
# asked for the graph mode in fp16, the bench runs eager steps and says so in the mode column
SYNCING_EAGER = "eager (the loss syncs: no graph)"  # a loss declared graph_safe = False, likewise


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_one(
    data,
    dataset: str,
    loss: str,
    mode: str,
    steps: int,
    device,
    precision: str = "fp32",
    feat_dim: int = 2,
    batch_size: int = 128,
) -> dict:
    """Time ``steps`` training steps and one evaluation of one case; ``mode``: eager, compile (CPU) or graph
    (CUDA). Warm-up first: graph capture and cuDNN autotuning, or compilation (its seconds in ``warmup_s``)."""
    warmup = 5 if device.type == "cuda" else 2
    cfg = RunConfig(
        dataset=dataset, loss=loss, feat_dim=feat_dim, batch_size=batch_size, precision=precision
    )
    if mode == "graph" and precision == "fp16":
        mode = FP16_EAGER
    elif mode == "graph" and not LOSSES[loss].graph_safe:
        mode = SYNCING_EAGER
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            cfg,
            data,
            Path(tmp),
            RunContext(
                device=device,
                progress=False,
                log=lambda *_: None,
                use_graph=mode == "graph",
                compile=mode == "compile",
            ),
        )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        step = trainer.step = trainer.make_step()
        per_epoch = len(data.train_labels) // batch_size
        batches = epoch_batches(len(data.train_labels), batch_size, device)
        while len(batches) < warmup + steps:
            batches = torch.cat(
                [batches, epoch_batches(len(data.train_labels), batch_size, device)]
            )
        t0 = time.perf_counter()
        for i in range(warmup):
            step(batches[i])
        if mode == "compile":
            trainer.evaluate("test")  # its evaluation graph is compiled before the clock too
        sync(device)
        warmup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        sums = torch.zeros((), device=device)
        for i in range(warmup, warmup + steps):
            sums += step(batches[i])[0]
        sync(device)
        train_s = (time.perf_counter() - t0) / steps
        t0, sys0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
        trainer.evaluate("test")
        sync(device)
        eval_s = time.perf_counter() - t0
        eval_sys_s = resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys0
        finite = bool(torch.isfinite(sums))
        trainer.release_step()  # the next case starts with this one's graph and tensors freed
    return {
        "dataset": dataset,
        "loss": loss,
        "mode": mode,
        "precision": precision,
        "feat_dim": feat_dim,
        "batch_size": batch_size,
        "steps_timed": steps,
        "ms_per_step": round(1000 * train_s, 3),
        "train_images_per_s": round(batch_size / train_s, 1),
        "x_plain": None,
        "s_per_epoch": round(per_epoch * train_s + eval_s, 3),
        "eval_s": round(eval_s, 3),
        "eval_images": len(data.split("test")[1])
        + min(cfg.eval_train_size, len(data.train_labels)),
        "eval_system_s": round(eval_sys_s, 3),
        "warmup_s": round(warmup_s, 1),
        "peak_gpu_mem_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        if device.type == "cuda"
        else None,
        "finite": finite,
    }


def native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def case_modes(modes: list[str], precision: str) -> list[str]:
    """fp16 has no graph mode: one eager case stands for eager and graph (bench_one labels it FP16_EAGER)."""
    if precision == "fp16" and "graph" in modes:
        return [m for m in modes if m not in ("eager", "graph")] + ["graph"]
    return modes


def plain_row(dataset: str, rate: float, steps: int, device) -> dict:
    return {
        "dataset": dataset,
        "loss": "xent",
        "mode": PLAIN,
        "precision": "fp32",
        "feat_dim": 2,
        "batch_size": 128,
        "steps_timed": steps,
        "ms_per_step": round(1000 * 128 / rate, 3),
        "train_images_per_s": round(rate, 1),
        "x_plain": 1.0,
        "s_per_epoch": None,
        "eval_s": None,
        "eval_images": None,
        "eval_system_s": None,
        "warmup_s": None,
        "peak_gpu_mem_mb": None,
        "finite": True,
    }


def record(rows: list[dict], row: dict, out: Path, device) -> None:
    """Show a case's figures and rewrite the CSV with it (a bench stopped part-way keeps what it measured)."""
    show(row)
    rows.append(
        {
            **row,
            "device": device_name(device),
            "torch_version": torch.__version__,
            "code_version": code_version(),
        }
    )
    atomic_write_csv(out, rows)


def show(row: dict) -> None:
    def cell(v, width):
        return f"{'—' if v is None else v:>{width}}"

    print(
        f"{row['dataset']:14} {row['loss']:11} {row['mode']:32} {row['precision']:5} {cell(row['ms_per_step'], 8)} "
        f"{cell(row['train_images_per_s'], 9)} {cell(row.get('x_plain'), 7)} {cell(row['s_per_epoch'], 8)} "
        f"{cell(row.get('eval_s'), 7)} {cell(row['peak_gpu_mem_mb'], 8)}"
    )
