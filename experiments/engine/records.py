"""What a run keeps (a part of ``Trainer``, experiments/engine/trainer.py): the per-epoch metrics and 2-D
frames, the checkpoint it resumes from (random states included), the selected model's snapshot, the epoch
line and the result; and the run directory's code fingerprint, a directory of other code set aside."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from experiments.engine.device import device_name
from experiments.engine.io import atomic_torch_save, atomic_write_csv

FRAME_POINTS = (
    5000  # points per split in a per-epoch 2-D frame (float16): a 100-epoch run's frames take ~5 MB
)


def rng_state(device: torch.device) -> dict:
    """The CPU generator's state, and the state of the one GPU the run trains on (not of every
    visible GPU: a checkpoint resumes under another GPU count or CUDA_VISIBLE_DEVICES)."""
    return {
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def restore_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["rng_cpu"].cpu())
    if state["rng_cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["rng_cuda"].cpu(), device)


def run_fingerprint(run_dir: Path) -> str | None:
    """The code fingerprint a run directory was trained with ("" from before fingerprints; None: no run)."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("code_fingerprint", "")


def set_aside_other_code(run_dir: Path, fingerprint: str, log=print) -> None:
    """A run directory trained by other code is never resumed nor reused: it is renamed
    ``<run id>.stale-<its fingerprint>`` (kept, not deleted) so that the run starts afresh."""
    old = run_fingerprint(run_dir)
    if old is None or old == fingerprint:
        return
    target = run_dir.with_name(f"{run_dir.name}.stale-{old or 'unknown'}")
    n = 1
    while target.exists():
        n += 1
        target = run_dir.with_name(f"{run_dir.name}.stale-{old or 'unknown'}-{n}")
    run_dir.rename(target)
    log(
        f"run {run_dir.name}: trained by other code (fingerprint {old or 'none'}, now {fingerprint}); "
        f"kept as {target.name}, training afresh"
    )


class Records:
    """How ``Trainer`` records; it reads the trainer's state (model, loss, optimizer, history, ...)."""

    def snapshot(self) -> dict:
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "loss": {k: v.detach().clone() for k, v in self.loss.state_dict().items()},
        }

    def format_row(self, row: dict) -> str:
        # a column without a value for this loss (argmax for a loss without logits; class means without an
        # embedded training subset) is left out of the line
        shown = [k for k in row if k not in ("epoch", "lr", "seconds") and row[k] == row[k]]
        terms = " ".join(f"{k}={row[k]:.4g}" for k in shown)
        return f"[{self.cfg.run_id}] epoch {row['epoch']:3d} lr={row['lr']:.2g} {terms} ({row['seconds']:.1f}s)"

    def save_early_frame(self, fraction: float) -> None:
        """A 2-D frame within epoch 1 (``features/epoch_000.125.pt``): the frames' split's features and accuracy
        after that fraction of the epoch's steps. It only observes: the training's numbers do not change."""
        split = self.protocol.frames_from
        metrics, embeddings = self.evaluate(split)
        frame = self.feature_frame(
            embeddings, metrics[f"{split}_acc"].item(), FRAME_POINTS, fraction
        )
        atomic_torch_save(self.run_dir / "features" / f"epoch_{fraction:07.3f}.pt", frame)

    def feature_frame(
        self, embeddings, accuracy: float, points: int | None = None, epoch: float | None = None
    ) -> dict:
        """Features of an evaluation in float16, on the CPU, for plots; ``points``: at most that many
        per split (the train subset is already a random one; the held-out split gets a fixed random one)."""
        train_features, train_labels, features, _, labels = embeddings
        keep = torch.arange(len(labels))
        if points is not None and points < len(labels):
            keep = (
                torch.randperm(len(labels), generator=torch.Generator().manual_seed(2))[:points]
                .sort()
                .values
            )
        keep = keep.to(labels.device)
        centers = self.loss.centers
        if train_features is None:  # no train subset embedded this epoch (eval_train_size 0)
            train_features = features.new_empty(0, features.shape[1])
        return {
            "train_features": train_features[:points].half().cpu(),
            "train_labels": train_labels[:points].to(torch.uint8).cpu(),
            "test_features": features[keep].half().cpu(),
            "test_labels": labels[keep].to(torch.uint8).cpu(),
            "centers": None if centers is None else centers.detach().float().cpu(),
            "test_acc": accuracy,
            "epoch": self.history[-1]["epoch"] if epoch is None else epoch,
        }

    def save_epoch(self, epoch: int, embeddings, frame_acc: float) -> None:
        row = self.history[-1]
        atomic_write_csv(self.run_dir / "metrics.csv", self.history)
        if self.cfg.feat_dim == 2:
            frame = self.feature_frame(embeddings, frame_acc, FRAME_POINTS)
            atomic_torch_save(self.run_dir / "features" / f"epoch_{epoch:03d}.pt", frame)
            centers = None if frame["centers"] is None else frame["centers"].numpy()
            if self.epoch_log is not None:
                self.epoch_log.log_epoch(
                    row,
                    self.data.class_names,
                    frame["test_features"].float().numpy(),
                    frame["test_labels"].numpy(),
                    centers,
                )
        elif self.epoch_log is not None:
            self.epoch_log.log_epoch(row)
        atomic_torch_save(
            self.run_dir / "checkpoint.pt",
            {
                "epoch": epoch,
                "model": self.model.state_dict(),
                "loss": self.loss.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "center_rule": self.center_rule.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "best_state": self.best_state,
                "history": self.history,
                **rng_state(self.device),
                "generators": self.generators.state(),
            },
        )
        self.epochs_saved += 1

    def resume_if_interrupted(self) -> None:
        path = self.run_dir / "checkpoint.pt"
        if not path.exists():
            return
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.center_rule.load_state_dict(state["center_rule"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.best_state = state["best_state"]
        self.history = state["history"]
        restore_rng_state(state, self.device)
        self.generators.load_state(state["generators"])
        self.start_epoch = state["epoch"] + 1
        self.log(f"run {self.cfg.run_id}: resuming after epoch {state['epoch']}")

    def result(self, status: str, diverged_epoch: int | None, wall_s: float, final: dict) -> dict:
        split = self.protocol.selection
        select = f"{split}_acc"
        out = {
            "run_id": self.cfg.run_id,
            "status": status,
            "diverged_epoch": diverged_epoch,
            "epochs_done": len(self.history),
            "wall_s": round(wall_s, 2),
            "device": device_name(self.device),
            "precision": self.precision,
            "torch_version": torch.__version__,
            "code_version": self.ctx.code_version,
            "code_fingerprint": self.ctx.fingerprint,
            "headline_rule": "argmax" if self.loss.prediction == "logits" else "nearest_center",
            "ood_dataset": self.data.ood_name
            + ("" if len(self.data.ood_images) else " (empty: no metric)"),
            "train_images": len(self.data.train_labels),
            "test_images": len(self.data.split("test")[1]),
            "config": self.cfg.to_dict(),
            "health": self.flagged,  # collapse or dead centers (experiments/engine/health.py)
            "final_center_gap": next(
                (g for r in self.history[-1:] if math.isfinite(g := r.get("center_gap", math.nan))),
                None,
            ),
        }
        held_out = (
            [f"{split}_acc{s}" for s in ("", "_argmax", "_center", "_class_mean")] if split else []
        )
        for name in held_out + ["train_acc"]:
            values = [row[name] for row in self.history if math.isfinite(row[name])]
            out[f"final_{name}"] = (
                self.history[-1][name] if values and math.isfinite(self.history[-1][name]) else None
            )
            out[f"best_{name}"] = max(values) if values else None
        if self.history and split:
            out["best_epoch"] = max(self.history, key=lambda r: r[select])["epoch"]
        finite = {k: (v if math.isfinite(v) else None) for k, v in final.items()}
        out.update(
            {f"final_{k}": v for k, v in finite.items() if not k.startswith("test_")}
        )  # embedding metrics
        if (
            split is not None and self.protocol.tests_once
        ):  # the test split was evaluated once, on the selected model
            out.update(
                {
                    f"{w}_{k}": v
                    for k, v in finite.items()
                    if k.startswith("test_")
                    for w in ("final", "best")
                }
            )
            out["selected_epoch"] = out.get("best_epoch")
        elif (
            split is None
        ):  # the test split was evaluated once, on the last epoch's model: no best-epoch figure
            out.update({f"final_{k}": v for k, v in finite.items() if k.startswith("test_")})
        return out
