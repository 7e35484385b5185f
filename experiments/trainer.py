"""The shared trainer: one run of one config, any model, any loss.

Read top to bottom: build (model, loss, optimizer, schedule), then per epoch
train (device-side batches and augmentation, metrics accumulated on the
device), evaluate (large batches, no grad), sync once, log, checkpoint. The
trainer never names a loss: it asks the loss for its parameters, whether it
trains the head and how it predicts.

A run directory holds: config.json, metrics.csv (one row per epoch),
checkpoint.pt (rewritten atomically after every epoch, so an interrupted run
resumes where it stopped), result.json (written last), and for feat_dim 2
features/epoch_NNN.pt (train subset and test features, labels, centers);
for every run features/final.pt (the same at the end, float16 when wide), and
TensorBoard event files in tensorboard/.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from eval.metrics import embed, evaluate_embeddings
from experiments.augment import Augment
from experiments.center_rules import build_center_rule
from experiments.config import RunConfig
from experiments.data import DeviceData, epoch_batches
from experiments.io import atomic_torch_save, atomic_write_csv, atomic_write_json
from experiments.provenance import AUTOCAST_DTYPES, code_version, device_name, resolve_precision
from experiments.tensorboard_log import TensorBoardLog
from losses import build_loss
from models import build_model

TRAIN_EVAL_SIZE = 10000  # training samples embedded each epoch (class means, 2-D plots)


class Trainer:
    def __init__(self, cfg: RunConfig, data: DeviceData, device: torch.device, run_dir: Path,
                 progress: bool = True, log=print):
        self.cfg, self.data, self.device, self.run_dir = cfg, data, device, Path(run_dir)
        self.progress, self.log = progress, log
        self.precision = resolve_precision(cfg.precision, device)
        self.autocast_dtype = AUTOCAST_DTYPES[self.precision]
        spec = data.spec

        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model, spec.in_channels, spec.num_classes, cfg.feat_dim, spec.image_size).to(device)
        self.loss = build_loss(cfg.loss, spec.num_classes, cfg.feat_dim, **cfg.loss_options).to(device)
        self.center_rule = build_center_rule(cfg.center_rule, self.loss, cfg.center_lr, cfg.center_alpha)
        self.optimizer = torch.optim.SGD(self.center_rule.model_param_groups(self.model, cfg.weight_decay),
                                         lr=cfg.lr, momentum=cfg.momentum)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=cfg.lr_factor, patience=cfg.lr_patience, threshold=cfg.lr_threshold)
        self.augment = Augment(cfg.dataset, cfg.augment)
        n_train = len(data.train_labels)
        self.train_eval_index = torch.randperm(n_train, generator=torch.Generator().manual_seed(1))[
            :TRAIN_EVAL_SIZE].to(device)
        self.history: list[dict] = []
        self.start_epoch = 1

    # ---- one step and one epoch -------------------------------------------------
    def train_step(self, images: torch.Tensor, labels: torch.Tensor):
        x = self.augment(images)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                            enabled=self.autocast_dtype is not None):
            features, logits = self.model(x)
        total, terms = self.loss(features, logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.center_rule.zero_grad()
        total.backward()
        self.center_rule.before_step()
        self.optimizer.step()
        self.center_rule.after_step(features.detach(), labels)
        correct = (self.loss.predict(features.detach().float(), logits.detach().float()) == labels).sum()
        return total.detach(), {k: v.detach() for k, v in terms.items()}, correct

    def train_epoch(self, epoch: int) -> dict[str, torch.Tensor]:
        """Mean loss terms and train accuracy, as device tensors (no host sync)."""
        self.model.train()
        batches = epoch_batches(len(self.data.train_labels), self.cfg.batch_size, self.device)
        sums: dict[str, torch.Tensor] = {}
        bar = tqdm(batches, desc=f"epoch {epoch}/{self.cfg.epochs}", leave=False, disable=not self.progress,
                   unit="step", dynamic_ncols=True)
        for index in bar:
            total, terms, correct = self.train_step(self.data.train_images[index], self.data.train_labels[index])
            for name, value in {"loss": total, **terms, "train_acc": correct}.items():
                sums[name] = sums[name] + value if name in sums else value.float()
        steps = len(batches)
        out = {name: value / steps for name, value in sums.items()}
        out["train_acc"] = sums["train_acc"] / (steps * self.cfg.batch_size)
        return out

    # ---- evaluation -------------------------------------------------------------
    def embed_splits(self):
        train_index = self.train_eval_index
        train_features, _ = embed(self.model, self.data.train_images[train_index], autocast_dtype=self.autocast_dtype)
        test_features, test_logits = embed(self.model, self.data.test_images, autocast_dtype=self.autocast_dtype)
        return train_features, self.data.train_labels[train_index], test_features, test_logits

    def evaluate(self) -> tuple[dict[str, torch.Tensor], tuple]:
        embeddings = self.embed_splits()
        train_features, train_labels, test_features, test_logits = embeddings
        accs = evaluate_embeddings(self.loss, train_features, train_labels, test_features, test_logits,
                                   self.data.test_labels)
        return {f"test_acc_{k}" if k != "headline" else "test_acc": v for k, v in accs.items()}, embeddings

    # ---- the run ----------------------------------------------------------------
    def fit(self) -> dict:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.run_dir / "config.json", self.cfg.to_dict())
        self.resume_if_interrupted()
        self.tensorboard = TensorBoardLog(self.run_dir, self.start_epoch)
        status, diverged_epoch, embeddings = "finished", None, None
        t0 = time.perf_counter() - sum(row["seconds"] for row in self.history)
        for epoch in range(self.start_epoch, self.cfg.epochs + 1):
            t_epoch = time.perf_counter()
            train_metrics = self.train_epoch(epoch)
            test_metrics, embeddings = self.evaluate()
            names = [*train_metrics, *test_metrics]
            values = torch.stack([*train_metrics.values(), *test_metrics.values()]).tolist()  # the one sync
            row = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"], **dict(zip(names, values))}
            if not all(math.isfinite(row[name]) for name in train_metrics):
                status, diverged_epoch = "diverged", epoch
                self.log(f"run {self.cfg.run_id}: loss is {row['loss']} at epoch {epoch}; stopping "
                         "(lower --lr or the loss weights)")
                break
            self.scheduler.step(row["test_acc"])
            row["seconds"] = time.perf_counter() - t_epoch
            self.history.append(row)
            self.save_epoch(epoch, embeddings)
            if self.progress:
                tqdm.write(self.format_row(row))
        self.tensorboard.close()
        if status == "finished":
            if embeddings is None:  # resumed after the last epoch's checkpoint
                embeddings = self.evaluate()[1]
            atomic_torch_save(self.run_dir / "features" / "final.pt", self.feature_frame(embeddings, torch.float16))
        result = self.result(status, diverged_epoch, time.perf_counter() - t0)
        atomic_write_json(self.run_dir / "result.json", result)
        return result

    def format_row(self, row: dict) -> str:
        terms = " ".join(f"{k}={row[k]:.4g}" for k in row if k not in ("epoch", "lr", "seconds"))
        return f"[{self.cfg.run_id}] epoch {row['epoch']:3d} lr={row['lr']:.2g} {terms} ({row['seconds']:.1f}s)"

    def feature_frame(self, embeddings, dtype=torch.float32) -> dict:
        """The features of the last evaluation, on the CPU, for plots."""
        train_features, train_labels, test_features, _ = embeddings
        centers = self.loss.centers
        return {
            "train_features": train_features.to(dtype).cpu(), "train_labels": train_labels.to(torch.uint8).cpu(),
            "test_features": test_features.to(dtype).cpu(), "test_labels": self.data.test_labels.to(torch.uint8).cpu(),
            "centers": None if centers is None else centers.detach().float().cpu(),
            "test_acc": self.history[-1]["test_acc"], "epoch": self.history[-1]["epoch"],
        }

    def save_epoch(self, epoch: int, embeddings) -> None:
        atomic_write_csv(self.run_dir / "metrics.csv", self.history)
        if self.cfg.feat_dim == 2:
            frame = self.feature_frame(embeddings)
            atomic_torch_save(self.run_dir / "features" / f"epoch_{epoch:03d}.pt", frame)
            self.tensorboard.log_epoch(self.history[-1], self.data.spec.class_names, frame["test_features"].numpy(),
                                       frame["test_labels"].numpy(),
                                       None if frame["centers"] is None else frame["centers"].numpy())
        else:
            self.tensorboard.log_epoch(self.history[-1])
        atomic_torch_save(self.run_dir / "checkpoint.pt", {
            "epoch": epoch, "model": self.model.state_dict(), "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(), "center_rule": self.center_rule.state_dict(), "scheduler": self.scheduler.state_dict(),
            "history": self.history, "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
        })

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
        self.history = state["history"]
        torch.set_rng_state(state["rng_cpu"].cpu())
        if state["rng_cuda"] is not None:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng_cuda"]])
        self.start_epoch = state["epoch"] + 1
        self.log(f"run {self.cfg.run_id}: resuming after epoch {state['epoch']}")

    def result(self, status: str, diverged_epoch: int | None, wall_s: float) -> dict:
        metrics = ["test_acc", "test_acc_argmax", "test_acc_center", "test_acc_class_mean", "train_acc"]
        out = {"run_id": self.cfg.run_id, "status": status, "diverged_epoch": diverged_epoch,
               "epochs_done": len(self.history), "wall_s": round(wall_s, 2),
               "device": device_name(self.device), "precision": self.precision,
               "torch_version": torch.__version__, "code_version": code_version(),
               "headline_rule": "argmax" if self.loss.prediction == "logits" else "nearest_center",
               "config": self.cfg.to_dict()}
        for name in metrics:
            values = [row[name] for row in self.history]
            finite = [v for v in values if math.isfinite(v)]
            out[f"final_{name}"] = values[-1] if finite and math.isfinite(values[-1]) else None
            out[f"best_{name}"] = max(finite) if finite else None
        if self.history:
            out["best_epoch"] = max(self.history, key=lambda r: r["test_acc"])["epoch"]
        return out
