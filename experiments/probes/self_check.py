"""The GPU slot's self-check: does the CUDA-graph step train as the eager step does, on a real run?

    python -m experiments.probes.self_check --dataset fashion-mnist --steps 300     # prints one JSON line

Two checks on the run the grid trains most (the paper recipe: ResNet, fp32, batch 128, ``standalone``,
whose pairwise term is the heaviest step), each time the same batches for both modes:

1. **the first steps**: 8 steps from one initialisation without augmentation, eager then graphed; their
   losses must agree within ``FIRST_STEPS_RTOL`` (fp32 with TF32 convolutions);
2. **a few hundred steps** with the reference augmentation, eager then graphed: both must stay finite, and
   the graphed run's mean loss over its last ``TAIL`` steps must be within ``TAIL_RTOL`` of the eager
   run's (augmentation draws differ between the modes, so the runs drift apart slowly; a wrong graph, a
   stale learning rate or a missed update does not stay within it).

Both modes are timed (images per second of training steps, after a warm-up). Without CUDA only the
eager steps run (a finite loss, and their speed), and the verdict says the CUDA parts were skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from experiments.cli.types import HelpFormatter, Parser, add_device_flag, positive_int, user_path
from experiments.datasets.specs import SPECS, default_data_root, file_problems, get_spec
from experiments.engine.config import RunConfig
from experiments.engine.context import RunContext
from experiments.engine.data import DeviceData, epoch_batches
from experiments.engine.device import device_name, resolve_device
from experiments.engine.trainer import Trainer

FIRST_STEPS, FIRST_STEPS_RTOL = 8, 1e-3
TAIL, TAIL_RTOL = 50, 0.10
WARMUP = 5  # steps before the clock starts (cuDNN autotuning, the graph's capture)


def step_losses(
    cfg: RunConfig,
    data,
    device: torch.device,
    batches: torch.Tensor,
    use_graph: bool,
    seed: int = 0,
) -> tuple[torch.Tensor, float]:
    """The total loss of each step over ``batches`` (``(steps, batch)`` indices) from the initialisation of
    ``seed``, and the training images per second after ``WARMUP`` steps."""
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            cfg,
            data,
            Path(tmp),
            RunContext(device=device, progress=False, log=lambda *_: None, use_graph=use_graph),
        )
        trainer.model.train()
        step = trainer.step = trainer.make_step()
        torch.manual_seed(seed + 1)  # the augmentation draws start at the same state in both modes
        losses, t0 = [], None
        for i, index in enumerate(batches):
            if i == min(WARMUP, len(batches) - 1):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
            losses.append(step(index)[0].clone())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timed = len(batches) - min(WARMUP, len(batches) - 1)
        rate = timed * cfg.batch_size / (time.perf_counter() - t0)
        trainer.release_step()
    return torch.stack(losses).cpu(), rate


def check(dataset: str, data_root: Path, device: torch.device, steps: int) -> dict:
    """The verdict (``pass``, ``fail`` or ``skipped``), its reason in one line, and the figures."""
    if dataset != "synthetic" and file_problems(get_spec(dataset), data_root):
        dataset = "synthetic"  # the check needs no network: a dataset not present is replaced
    cfg = RunConfig(dataset=dataset, loss="standalone", feat_dim=2)
    data = DeviceData(get_spec(dataset), data_root, device)
    gen = torch.Generator(device=device).manual_seed(0)
    batches = epoch_batches(len(data.train_labels), cfg.batch_size, device, gen)
    while len(batches) < steps:
        batches = torch.cat(
            [batches, epoch_batches(len(data.train_labels), cfg.batch_size, device, gen)]
        )
    batches = batches[:steps]
    out = {"device": device_name(device), "dataset": dataset, "steps": steps}
    eager, out["eager_img_s"] = step_losses(cfg, data, device, batches, use_graph=False)
    finite = bool(torch.isfinite(eager).all())
    if device.type != "cuda":
        out["verdict"] = "skipped" if finite else "fail"
        out["reason"] = (
            f"no CUDA device: the graph-pool probe and the graphed steps are skipped; {steps} eager steps "
            + ("finite" if finite else "gave a non-finite loss")
        )
        return out
    plain = RunConfig(dataset=dataset, loss="standalone", feat_dim=2, augment="none")
    first_eager, _ = step_losses(plain, data, device, batches[:FIRST_STEPS], use_graph=False)
    first_graph, _ = step_losses(plain, data, device, batches[:FIRST_STEPS], use_graph=True)
    graph, out["graph_img_s"] = step_losses(cfg, data, device, batches, use_graph=True)
    out["first_steps_max_rel_diff"] = float(
        ((first_graph - first_eager).abs() / first_eager.abs()).max()
    )
    out["tail_loss_eager"], out["tail_loss_graph"] = (
        float(eager[-TAIL:].mean()),
        float(graph[-TAIL:].mean()),
    )
    tail_diff = abs(out["tail_loss_graph"] - out["tail_loss_eager"]) / max(
        abs(out["tail_loss_eager"]), 1e-6
    )
    problems = []
    if not (finite and torch.isfinite(graph).all() and torch.isfinite(first_graph).all()):
        problems.append("a non-finite loss")
    if out["first_steps_max_rel_diff"] > FIRST_STEPS_RTOL:
        problems.append(
            f"the first {FIRST_STEPS} steps differ by {out['first_steps_max_rel_diff']:.2g} "
            f"(relative; at most {FIRST_STEPS_RTOL:g})"
        )
    if tail_diff > TAIL_RTOL:
        problems.append(
            f"the mean loss of the last {TAIL} steps differs by {tail_diff:.1%} (at most {TAIL_RTOL:.0%})"
        )
    out["verdict"] = "fail" if problems else "pass"
    out["reason"] = "; ".join(problems) or (
        f"graphed steps match eager ones: first {FIRST_STEPS} within {out['first_steps_max_rel_diff']:.1g}, last "
        f"{TAIL} of {steps} mean loss {out['tail_loss_graph']:.4g} vs {out['tail_loss_eager']:.4g}"
    )
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m experiments.probes.self_check",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        choices=list(SPECS),
        default="fashion-mnist",
        help="the run's dataset (the synthetic set when it is not present; nothing is fetched)",
    )
    parser.add_argument(
        "--steps", type=positive_int, default=300, help="steps of the longer check, per mode"
    )
    parser.add_argument(
        "--data-root", type=user_path, default=default_data_root(), help="where the datasets live"
    )
    add_device_flag(parser, "auto, cpu, cuda, cuda:N")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    steps = max(args.steps, TAIL + WARMUP + 1) if device.type == "cuda" else args.steps
    result = check(args.dataset, args.data_root, device, steps)
    print(json.dumps(result))
    return 1 if result["verdict"] == "fail" else 0


if __name__ == "__main__":
    sys.exit(main())
