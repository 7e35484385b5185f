"""The shared trainer: one run of one config, any model, any loss.

Read top to bottom: build (model, loss, center rule, optimizer, schedule),
then per epoch train (device-side batches and augmentation, metrics summed on
the device; on CUDA the step is one replayed CUDA graph), evaluate (large
batches, no grad), sync once, log, checkpoint. The trainer never names a loss:
it asks the loss for its parameters, whether it trains the head and how it
predicts; the center rule (experiments/engine/center_rules.py) updates the centers.
What it records beside the numbers comes from its caller: the code
fingerprint and version (experiments/ledger/), and an epoch log (TensorBoard).

Protocols: ``reference`` (the study's: the schedule and the best epoch are
chosen on the test split, evaluated every epoch); ``fair`` (a fixed stratified
10% validation split of the training set drives the schedule and selects the
epoch; the test split is evaluated once, on the selected model); ``last`` (no
held-out split at all: a constant lr, the last epoch's model tested once; per
epoch only the training subset is embedded, for the frames of 2-D runs).

``precise_bn`` N > 0 recomputes the BatchNorm statistics on N fixed training
images (no augmentation, no gradient, a cumulative average over batches of the
training batch size) before every evaluation, so that the statistics match the
weights evaluated; training itself is unchanged (it normalises by batch
statistics). Seeds: experiments/engine/seeding.py.

A run directory holds: config.json, metrics.csv (one row per epoch),
checkpoint.pt (rewritten atomically after every epoch, so an interrupted run
resumes where it stopped), result.json (written last), features/final.pt (the
final or selected model's train-subset and test features), for feat_dim 2
features/epoch_NNN.pt (and epoch_000.125.pt ... within epoch 1), and what
the epoch log writes (TensorBoard event files in tensorboard/).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from centersuite.eval.geometry import center_shift, nearest_center_gap
from centersuite.eval.metrics import class_means
from centersuite.losses import build_loss
from centersuite.losses.center_rules import build_center_rule
from centersuite.models import build_model
from experiments.engine.augment import Augment
from experiments.engine.compiled import CompiledForward
from experiments.engine.config import RunConfig
from experiments.engine.context import RunContext
from experiments.engine.cpu_memory import keep_freed_memory
from experiments.engine.cuda_graph import GraphedStep
from experiments.engine.data import DeviceData, epoch_batches
from experiments.engine.evaluation import Evaluation
from experiments.engine.health import health
from experiments.engine.io import atomic_write_json
from experiments.engine.protocol import protocol_of
from experiments.engine.records import Records, set_aside_other_code
from experiments.engine.seeding import RunGenerators, seeded

TRAIN_EVAL_SIZE = 10000  # training samples embedded at the end (class means, 1-NN, OOD kNN); per epoch: eval_train_size
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
EARLY_FRAMES = (
    1 / 8,
    1 / 4,
    1 / 2,
)  # fractions of epoch 1 where a 2-D run saves extra frames: most structure forms then


class RunStopped(Exception):
    """A run asked to stop (a time budget, SIGTERM) before its last epoch; its checkpoint holds
    every finished epoch, so the same command resumes it."""

    def __init__(self, run_id: str, epochs_done: int):
        super().__init__(
            f"run {run_id} stopped after epoch {epochs_done}; the same command resumes it"
        )
        self.run_id, self.epochs_done = run_id, epochs_done


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: still a KeyboardInterrupt (a grid stops), with what is kept and what resumes."""

    def __init__(self, run_id: str, epochs_done: int, evaluating: bool = False):
        if evaluating:
            what = (
                f"during its final evaluation (its {epochs_done} epochs are trained and kept); the same "
                "command evaluates it again"
            )
        elif epochs_done:
            what = (
                f"after epoch {epochs_done} (kept in its checkpoint); the same command resumes it"
            )
        else:
            what = (
                "before its first epoch ended: nothing was kept; the same command starts it again"
            )
        super().__init__(f"run {run_id} interrupted {what}")
        self.run_id, self.epochs_done = run_id, epochs_done


class Trainer(Evaluation, Records):
    def __init__(
        self, cfg: RunConfig, data: DeviceData, run_dir: Path, ctx: RunContext = RunContext()
    ):
        """Train ``cfg`` on ``data`` in ``run_dir``; ``ctx``: the device, the steps, what is recorded beside the
        numbers (a run directory of another fingerprint is set aside, never resumed) and the logs."""
        self.cfg, self.data, self.run_dir, self.ctx = cfg, data, Path(run_dir), ctx
        device, compile = ctx.device, ctx.compile
        self.device, self.log = device, ctx.log
        self.protocol = protocol_of(cfg.protocol)
        self.precision = cfg.precision
        self.autocast_dtype = AUTOCAST_DTYPES[self.precision]
        on_cuda = device.type == "cuda"
        self.use_graph = (
            (on_cuda and self.precision != "fp16") if ctx.use_graph is None else ctx.use_graph
        )
        if self.use_graph and (not on_cuda or self.precision == "fp16"):
            raise ValueError(
                "CUDA graph mode needs a CUDA device and bf16 or fp32 (GradScaler cannot be captured)"
            )
        if compile and on_cuda:
            raise ValueError(
                "--compile is for the CPU; on CUDA the step is one replayed CUDA graph"
            )
        # channels_last: cuDNN's and oneDNN's fast layout for eager convolutions (1.3x on a 2-core CPU);
        # the compiled CPU forward is fastest on contiguous tensors (measured by the bench)
        self.memory_format = torch.contiguous_format if compile else torch.channels_last
        if not on_cuda:
            keep_freed_memory()  # evaluation's large activations reuse heap blocks instead of faulting in pages
        if on_cuda:
            torch.backends.cudnn.benchmark = (
                True  # kernels are picked during the eager warm-up steps
            )
        spec = data.spec

        with seeded(cfg.seed, "model"):
            self.model = build_model(
                cfg.model, spec.in_channels, data.num_classes, cfg.feat_dim, spec.image_size
            )
        self.model = self.model.to(device, memory_format=self.memory_format)
        self.forward = CompiledForward(self.model, self.log) if compile else None
        with seeded(cfg.seed, "loss"):
            self.loss = build_loss(cfg.loss, data.num_classes, cfg.feat_dim, **cfg.loss_options).to(
                device
            )
        self.generators = RunGenerators(cfg.seed, device)
        self.center_rule = build_center_rule(
            cfg.center_rule,
            self.loss,
            cfg.center_lr,
            cfg.center_alpha,
            cfg.resolved("class_lr_scale"),
        )
        self.optimizer = torch.optim.SGD(
            self.center_rule.model_param_groups(self.model, cfg.weight_decay, cfg.lr),
            lr=cfg.lr,
            momentum=cfg.momentum,
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode="max",
            factor=cfg.lr_factor,
            patience=cfg.lr_patience,
            threshold=cfg.lr_threshold,
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.augment = Augment(cfg.dataset, cfg.augment, self.generators.augment)
        self.train_eval_index = torch.randperm(
            len(data.train_labels), generator=torch.Generator().manual_seed(1)
        )[:TRAIN_EVAL_SIZE].to(device)
        self.bn_index = torch.randperm(
            len(data.train_labels), generator=torch.Generator().manual_seed(3)
        )[: cfg.precise_bn].to(device)
        self.history: list[dict] = []
        self.best_state: dict | None = None
        self.start_epoch = 1
        self.epochs_saved = 0  # checkpoints written by this process
        self.term_names: list[str] | None = None
        self.step = None
        self.flagged = ""  # collapse or dead centers, once seen (engine/health.py)
        centers = self.loss.centers
        self.centers_before = None if centers is None else centers.detach().float().clone()

    # ---- one step and one epoch -------------------------------------------------
    def train_step(self, index: torch.Tensor) -> torch.Tensor:
        """One optimisation step on the batch ``index``; returns
        ``[total, *terms, mean feature norm, correct]`` as one device tensor (no host sync)."""
        labels = self.data.train_labels[index]
        x = self.augment(self.data.train_images[index]).contiguous(memory_format=self.memory_format)
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.bfloat16,
            enabled=self.autocast_dtype is not None,
            cache_enabled=False,
        ):
            features, logits = (self.forward or self.model)(x)
        total, terms = self.loss.loss_terms(features, labels, logits)
        self.optimizer.zero_grad(set_to_none=True)
        self.center_rule.zero_grad()
        self.scaler.scale(total).backward()
        self.center_rule.before_step(self.scaler)
        self.scaler.step(self.optimizer)
        self.center_rule.after_step(features.detach(), labels, self.scaler)
        self.scaler.update()
        self.term_names = list(terms)
        correct = (
            self.loss.predict(features.detach().float(), logits.detach().float()) == labels
        ).sum()
        norm = features.detach().float().norm(dim=1).mean()
        return torch.stack(
            [total.detach(), *(t.detach() for t in terms.values()), norm, correct.float()]
        )

    def current_lrs(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def make_step(self):
        """The step callable: one replayed CUDA graph, or the eager ``train_step``."""
        if self.use_graph:
            return GraphedStep(self.train_step, self.cfg.batch_size, self.device, self.current_lrs)
        return self.train_step

    def release_step(self) -> None:
        """Break the step <-> trainer cycle (the step calls the bound ``train_step``) so that a finished,
        stopped or failed run frees its graph, pool and tensors without waiting for the cycle collector."""
        if isinstance(self.step, GraphedStep):
            self.step.release()
        self.step = None

    def train_epoch(self, epoch: int) -> dict[str, torch.Tensor]:
        """Mean loss terms and train accuracy, as device tensors (no host sync)."""
        self.model.train()
        self.step = self.step or self.make_step()
        batches = epoch_batches(
            len(self.data.train_labels), self.cfg.batch_size, self.device, self.generators.batches
        )
        sums = None
        bar = tqdm(
            batches,
            desc=f"epoch {epoch}/{self.cfg.epochs}",
            leave=False,
            disable=not self.ctx.progress,
            unit="step",
            dynamic_ncols=True,
        )
        early = (
            {max(1, round(f * len(batches))): f for f in EARLY_FRAMES}
            if epoch == 1 and self.cfg.feat_dim == 2
            else {}
        )
        for step, index in enumerate(bar, 1):
            out = self.step(index)
            sums = out.clone() if sums is None else sums.add_(out)
            if step in early:
                self.save_early_frame(early[step])
        means = sums / len(batches)
        out = dict(zip(["loss", *self.term_names, "feature_norm"], means[:-1]))
        out["train_acc"] = sums[-1] / (len(batches) * self.cfg.batch_size)
        return out

    # ---- evaluation -------------------------------------------------------------
    # ---- collapse and dead centers (experiments/engine/health.py) -------------------
    def center_geometry(self, embeddings, feature_norm: torch.Tensor) -> dict[str, torch.Tensor]:
        """``center_gap`` and ``center_shift`` of this epoch, on the scale of the features (device tensors);
        the centers are the loss's, else the class means of the embedded training subset, else none (NaN)."""
        nan = torch.full((), float("nan"), device=self.device)
        centers = self.loss.centers
        if centers is None and embeddings is not None and embeddings[0] is not None:
            centers = class_means(embeddings[0], embeddings[1], self.loss.num_classes)
        if centers is None:
            return {"center_gap": nan, "center_shift": nan}
        centers = centers.detach().float()
        scale = torch.ones_like(feature_norm) if self.loss.compares_directions else feature_norm
        before, self.centers_before = self.centers_before, centers.clone()
        shift = (
            center_shift(centers, before)
            if before is not None and before.shape == centers.shape
            else nan
        )
        return {"center_gap": nearest_center_gap(centers) / scale, "center_shift": shift / scale}

    def watch_health(self) -> None:
        """Say once, as it happens, that the run collapsed or that its centers never moved."""
        flag = health(self.history, self.loss.learnable_centers is not None)
        if flag and not self.flagged:
            self.log(f"run {self.cfg.run_id}: {flag}")
        self.flagged = flag

    # ---- the run ----------------------------------------------------------------
    def fit(self, should_stop=lambda: False) -> dict:
        """Train to the last epoch and write result.json. ``should_stop()`` is asked after each
        epoch's checkpoint: when it says yes, RunStopped is raised; on Ctrl-C, RunInterrupted."""
        set_aside_other_code(self.run_dir, self.ctx.fingerprint, self.log)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            self.run_dir / "config.json",
            {**self.cfg.to_dict(), "code_fingerprint": self.ctx.fingerprint},
        )
        if getattr(self.data, "ood_note", ""):
            self.log(f"run {self.cfg.run_id}: {self.data.ood_note}")
        self.resume_if_interrupted()
        self.epoch_log = (
            self.ctx.epoch_log(self.run_dir, self.start_epoch) if self.ctx.epoch_log else None
        )
        t0 = time.perf_counter() - sum(row["seconds"] for row in self.history)
        try:
            status, diverged_epoch = self.train_epochs(should_stop)
        except KeyboardInterrupt:
            raise RunInterrupted(
                self.cfg.run_id, self.start_epoch - 1 + self.epochs_saved
            ) from None
        finally:
            if self.epoch_log is not None:
                self.epoch_log.close()
            self.release_step()
        final, error = {}, None
        try:
            final = self.final_evaluation() if status == "finished" else {}
        except KeyboardInterrupt:
            raise RunInterrupted(self.cfg.run_id, len(self.history), evaluating=True) from None
        except Exception as e:  # recorded as failed with the reason, not retrained: a resume would fail the same way
            lines = str(e).strip().splitlines()
            status, error = (
                "failed",
                f"final evaluation: {type(e).__name__}: {lines[0][:200] if lines else ''}",
            )
        result = self.result(status, diverged_epoch, time.perf_counter() - t0, final)
        if error is not None:
            result["error"] = error
            self.log(f"run {self.cfg.run_id}: {error}")
        atomic_write_json(self.run_dir / "result.json", result)
        return result

    def train_epochs(self, should_stop) -> tuple[str, int | None]:
        """The epoch loop; ``(status, diverged epoch)``."""
        selection = self.protocol.selection
        select = f"{selection}_acc"
        for epoch in range(self.start_epoch, self.cfg.epochs + 1):
            t_epoch = time.perf_counter()
            train_metrics = self.train_epoch(epoch)
            eval_metrics, embeddings = self.evaluate(selection) if selection else ({}, None)
            frames, frame_metrics = self.protocol.frames_from, eval_metrics
            # frames from another split than the selection's (protocol "last": the training subset), 2-D only
            if frames != selection and self.cfg.feat_dim == 2:
                frame_metrics, embeddings = self.evaluate(frames)
            frame_acc = frame_metrics.get(f"{frames}_acc", torch.zeros((), device=self.device))
            geometry = self.center_geometry(embeddings, train_metrics["feature_norm"])
            names = [*train_metrics, *eval_metrics, *geometry]
            values = torch.stack(
                [*train_metrics.values(), *eval_metrics.values(), *geometry.values(), frame_acc]
            ).tolist()  # one sync
            frame_acc = values.pop()
            row = {
                "epoch": epoch,
                "lr": self.optimizer.param_groups[0]["lr"],
                **dict(zip(names, values)),
            }
            if not all(
                math.isfinite(row[name]) for name in train_metrics if name != "feature_norm"
            ):
                self.log(
                    f"run {self.cfg.run_id}: loss is {row['loss']} at epoch {epoch}; stopping "
                    "(lower --lr or the loss weights)"
                )
                return "diverged", epoch
            if (
                selection is not None
                and self.protocol.tests_once
                and row[select] > max((r[select] for r in self.history), default=-1)
            ):
                self.best_state = self.snapshot()
            if selection is not None:
                self.scheduler.step(row[select])
            row["seconds"] = time.perf_counter() - t_epoch
            self.history.append(row)
            self.watch_health()
            self.save_epoch(epoch, embeddings, frame_acc)
            (tqdm.write if self.ctx.progress else self.log)(self.format_row(row))
            if epoch < self.cfg.epochs and should_stop():
                raise RunStopped(self.cfg.run_id, epoch)
        return "finished", None
