"""Speed and memory of the training step, per dataset, loss, mode and precision, against a plain loop.

    python -m experiments.bench --device cpu          # Fashion-MNIST if present: xent, eager and compiled, fp32 and bf16
    python -m experiments.bench --datasets fashion-mnist --steps 300 --packed 4   # on CUDA

For each case it times ``--steps`` training steps after a warm-up (cuDNN
autotuning and graph capture on CUDA, compilation on the CPU: its seconds in
``warmup_s``), then one evaluation (train subset + test split; its wall and
system seconds), and reports train images/s, s/epoch (a full epoch's steps
plus one evaluation) and peak GPU memory. Before and after every case it
times the same model trained by a plain PyTorch loop (torchvision transforms
on PIL images, a DataLoader, eager fp32: ``experiments/probes/plain_loop.py``), so
every row says ``x plain``: its speed over the plain loop's, measured in the
same process, alternately. ``--packed K`` then runs K bench processes side
by side (graph mode on CUDA) and reports their summed images/s. Figures are
printed and written to a CSV, rewritten after each case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from centersuite.losses import LOSSES
from experiments.cli.entry import command, loading
from experiments.cli.recipe import add_offline_flag
from experiments.cli.types import (
    HelpFormatter,
    Parser,
    add_device_flag,
    non_negative_int,
    positive_int,
    user_path,
)
from experiments.datasets.specs import SPECS, default_data_root, file_problems, get_spec
from experiments.runners.presets import MAIN_LOSSES


def default_datasets(cuda: bool, root: Path) -> list[str]:
    """Every dataset present on CUDA, one on the CPU (Fashion-MNIST first), else the synthetic set; nothing
    is fetched."""
    present = [d for d in SPECS if d != "synthetic" and not file_problems(get_spec(d), root)]
    if not cuda:
        present = sorted(present, key=lambda d: d != "fashion-mnist")[:1]
    return present or ["synthetic"]


def packed(k: int, dataset: str, steps: int, args, precision: str) -> dict:
    """K processes side by side; each waits until all are ready, then times its steps."""
    with tempfile.TemporaryDirectory() as barrier:
        cmd = [
            sys.executable,
            "-m",
            "experiments.bench",
            "--worker",
            barrier,
            str(k),
            "--datasets",
            dataset,
            "--steps",
            str(steps),
            "--data-root",
            str(args.data_root),
            "--device",
            args.device,
            "--precisions",
            precision,
        ]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(k)]
        outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    rate = sum(o["train_images_per_s"] for o in outs)
    return {
        "dataset": dataset,
        "loss": "standalone",
        "mode": f"packed x{k} ({outs[0]['mode']})",
        "precision": precision,
        "feat_dim": 2,
        "batch_size": 128,
        "steps_timed": steps,
        "ms_per_step": round(max(o["ms_per_step"] for o in outs), 3),
        "train_images_per_s": round(rate, 1),
        "s_per_epoch": None,
        "eval_s": None,
        "peak_gpu_mem_mb": max((o["peak_gpu_mem_mb"] or 0) for o in outs) or None,
        "finite": all(o["finite"] for o in outs),
    }


@dataclass(frozen=True)
class BenchPlan:
    """What the bench times: the flags given, the device's defaults for the rest."""

    steps: int
    train_size: int | None
    precisions: list[str]
    losses: list[str]
    modes: list[str]
    datasets: list[str]


def bench_plan(args, cuda: bool, bf16_pays: bool) -> BenchPlan:
    """The flags given, and for the rest the defaults of a GPU (``cuda``) or of a CPU; bf16 is timed by
    default only where it is native (``bf16_pays``)."""
    return BenchPlan(
        steps=args.steps or (300 if cuda else 40),
        train_size=args.train_size or (None if cuda else 4096),
        precisions=args.precisions or (["fp32", "bf16"] if bf16_pays else ["fp32"]),
        losses=args.losses or (MAIN_LOSSES if cuda else ["xent"]),
        modes=args.modes or (["eager", "graph"] if cuda else ["eager", "compile"]),
        datasets=args.datasets or default_datasets(cuda, args.data_root),
    )


def worker(barrier: str, k: int, plan: BenchPlan, data_root: Path, device) -> None:
    from experiments.engine.config import RunConfig
    from experiments.engine.data import load_data
    from experiments.probes.bench import bench_one

    dataset = plan.datasets[0]
    data = load_data(RunConfig(dataset=dataset, train_size=plan.train_size), data_root, device)
    mode = "graph" if device.type == "cuda" else "eager"
    precision = plan.precisions[0]
    if device.type == "cuda":
        bench_one(
            data, dataset, "standalone", mode, 2, device, precision
        )  # kernels chosen before the clock starts
    Path(barrier, f"ready-{os.getpid()}").touch()
    while len(list(Path(barrier).glob("ready-*"))) < k:
        time.sleep(0.05)
    print(json.dumps(bench_one(data, dataset, "standalone", mode, plan.steps, device, precision)))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m experiments.bench", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=list(SPECS),
        help="default: every dataset present on CUDA, Fashion-MNIST (else the first present, else "
        "the synthetic set) on the CPU; nothing is fetched",
    )
    parser.add_argument(
        "--losses",
        nargs="+",
        choices=list(LOSSES),
        help="losses to time (default: xent, cent, standalone on CUDA; xent on the CPU)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["eager", "compile", "graph"],
        help="step modes (default: eager and graph on CUDA, eager and compile on the CPU; compile "
        "counts its compilation in warmup_s)",
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=["fp32", "bf16", "fp16"],
        help="default: fp32 (the reference) and bf16 (on the CPU only where it is native); packed "
        "runs use the first",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        help="timed steps per case (default 300 on CUDA, 40 on the CPU)",
    )
    parser.add_argument(
        "--packed",
        type=non_negative_int,
        help="processes side by side (default 4 on CUDA, 0 on the CPU; 0: skip)",
    )
    parser.add_argument(
        "--train-size", type=positive_int, help="train on N samples (CPU default: 4096)"
    )
    parser.add_argument(
        "--data-root", type=user_path, default=default_data_root(), help="where the datasets live"
    )
    add_device_flag(parser, "auto (CUDA if present), cpu, cuda, cuda:N")
    parser.add_argument(
        "--out", type=user_path, default=Path("results/bench.csv"), help="the CSV written"
    )
    add_offline_flag(parser)
    parser.add_argument("--worker", nargs=2, metavar=("BARRIER", "K"), help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    with loading():  # torch and the rest, once the flags are good
        import torch

        from experiments.cli.recipe import chosen_device
        from experiments.engine.config import RunConfig
        from experiments.engine.data import load_data
        from experiments.engine.device import device_name
        from experiments.ledger.provenance import code_version
        from experiments.probes.bench import bench_one, case_modes, native_bf16, plain_row, record
        from experiments.probes.plain_loop import PlainLoop
    device = chosen_device(args.device)
    cuda = device.type == "cuda"
    bf16_pays = cuda or native_bf16()
    plan = bench_plan(args, cuda, bf16_pays)
    if args.precisions is None and not bf16_pays:
        print(
            f"bf16 left out: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bf16, so "
            "autocast emulates it (about 10x slower than fp32); --precisions fp32 bf16 times it anyway"
        )
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), plan, args.data_root, device)
        return 0
    rows = []
    print(f"bench on {device_name(device)}, torch {torch.__version__}, code {code_version()}")
    print(
        f"{'dataset':14} {'loss':11} {'mode':32} {'prec':5} {'ms/step':>8} {'img/s':>9} {'x plain':>7} "
        f"{'s/epoch':>8} {'eval s':>7} {'peak MB':>8}"
    )
    for dataset in plan.datasets:
        data = load_data(
            RunConfig(dataset=dataset, train_size=plan.train_size), args.data_root, device
        )
        plain = PlainLoop(data, dataset, device, workers=4 if cuda else 0)
        plain_rates = [plain.images_per_s(plan.steps)]
        record(rows, plain_row(dataset, plain_rates[0], plan.steps, device), args.out, device)
        for loss in plan.losses:
            for precision in plan.precisions:
                for mode in case_modes(plan.modes, precision):
                    row = bench_one(data, dataset, loss, mode, plan.steps, device, precision)
                    plain_rates.append(
                        plain.images_per_s(plan.steps)
                    )  # alternately: before and after each case
                    row["x_plain"] = round(
                        row["train_images_per_s"] / (sum(plain_rates[-2:]) / 2), 2
                    )
                    record(rows, row, args.out, device)
        del data, plain
    k = args.packed if args.packed is not None else (4 if cuda else 0)
    if k > 0:
        record(
            rows,
            packed(k, plan.datasets[0], plan.steps, args, plan.precisions[0]),
            args.out,
            device,
        )
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(command(main))
