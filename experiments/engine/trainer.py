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

import json
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from centersuite.eval.embedding import embedding_metrics
from centersuite.eval.ood import detection_metrics, ood_scores
from centersuite.eval.metrics import embed, evaluate_embeddings
from experiments.engine.augment import Augment
from centersuite.losses.center_rules import build_center_rule
from experiments.engine.compiled import CompiledForward
from experiments.engine.config import RunConfig
from experiments.engine.context import RunContext
from experiments.engine.cpu_memory import keep_freed_memory
from experiments.engine.cuda_graph import GraphedStep
from experiments.engine.data import DeviceData, epoch_batches
from experiments.engine.device import device_name
from experiments.engine.io import atomic_torch_save, atomic_write_csv, atomic_write_json
from experiments.engine.protocol import protocol_of
from experiments.engine.seeding import RunGenerators, seeded
from centersuite.losses import build_loss
from centersuite.models import build_model

TRAIN_EVAL_SIZE = 10000  # training samples embedded at the end (class means, 1-NN, OOD kNN); per epoch: eval_train_size
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
FRAME_POINTS = 5000  # points per split in a per-epoch 2-D frame (float16): a 100-epoch run's frames take ~5 MB
EARLY_FRAMES = (1 / 8, 1 / 4, 1 / 2)  # fractions of epoch 1 where a 2-D run saves extra frames: most structure forms then


class RunStopped(Exception):
    """A run asked to stop (a time budget, SIGTERM) before its last epoch; its checkpoint holds
    every finished epoch, so the same command resumes it."""

    def __init__(self, run_id: str, epochs_done: int):
        super().__init__(f"run {run_id} stopped after epoch {epochs_done}; the same command resumes it")
        self.run_id, self.epochs_done = run_id, epochs_done


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: still a KeyboardInterrupt (a grid stops), with what is kept and what resumes."""

    def __init__(self, run_id: str, epochs_done: int, evaluating: bool = False):
        what = (f"during its final evaluation (its {epochs_done} epochs are trained and kept); the same command "
                "evaluates it again" if evaluating else
                f"after epoch {epochs_done} (kept in its checkpoint); the same command resumes it")
        super().__init__(f"run {run_id} interrupted {what}")
        self.run_id, self.epochs_done = run_id, epochs_done


def rng_state(device: torch.device) -> dict:
    """The CPU generator's state, and the state of the one GPU the run trains on (not of every
    visible GPU: a checkpoint resumes under another GPU count or CUDA_VISIBLE_DEVICES)."""
    return {"rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


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
    log(f"run {run_dir.name}: trained by other code (fingerprint {old or 'none'}, now {fingerprint}); "
        f"kept as {target.name}, training afresh")


class Trainer:
    def __init__(self, cfg: RunConfig, data: DeviceData, run_dir: Path, ctx: RunContext = RunContext()):
        """Train ``cfg`` on ``data`` in ``run_dir``; ``ctx``: the device, the steps, what is recorded beside the
        numbers (a run directory of another fingerprint is set aside, never resumed) and the logs."""
        self.cfg, self.data, self.run_dir, self.ctx = cfg, data, Path(run_dir), ctx
        device, compile = ctx.device, ctx.compile
        self.device, self.log = device, ctx.log
        self.protocol = protocol_of(cfg.protocol)
        self.precision = cfg.precision
        self.autocast_dtype = AUTOCAST_DTYPES[self.precision]
        on_cuda = device.type == "cuda"
        self.use_graph = (on_cuda and self.precision != "fp16") if ctx.use_graph is None else ctx.use_graph
        if self.use_graph and (not on_cuda or self.precision == "fp16"):
            raise ValueError("CUDA graph mode needs a CUDA device and bf16 or fp32 (GradScaler cannot be captured)")
        if compile and on_cuda:
            raise ValueError("--compile is for the CPU; on CUDA the step is one replayed CUDA graph")
        # channels_last: cuDNN's and oneDNN's fast layout for eager convolutions (1.3x on a 2-core CPU);
        # the compiled CPU forward is fastest on contiguous tensors (measured by the bench)
        self.memory_format = torch.contiguous_format if compile else torch.channels_last
        if not on_cuda:
            keep_freed_memory()  # evaluation's large activations reuse heap blocks instead of faulting in pages
        if on_cuda:
            torch.backends.cudnn.benchmark = True  # kernels are picked during the eager warm-up steps
        spec = data.spec

        with seeded(cfg.seed, "model"):
            self.model = build_model(cfg.model, spec.in_channels, data.num_classes, cfg.feat_dim, spec.image_size)
        self.model = self.model.to(device, memory_format=self.memory_format)
        self.forward = CompiledForward(self.model, self.log) if compile else None
        with seeded(cfg.seed, "loss"):
            self.loss = build_loss(cfg.loss, data.num_classes, cfg.feat_dim, **cfg.loss_options).to(device)
        self.generators = RunGenerators(cfg.seed, device)
        self.center_rule = build_center_rule(cfg.center_rule, self.loss, cfg.center_lr, cfg.center_alpha)
        self.optimizer = torch.optim.SGD(self.center_rule.model_param_groups(self.model, cfg.weight_decay),
                                         lr=cfg.lr, momentum=cfg.momentum)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=cfg.lr_factor, patience=cfg.lr_patience, threshold=cfg.lr_threshold)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.augment = Augment(cfg.dataset, cfg.augment, self.generators.augment)
        self.train_eval_index = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(1))[
            :TRAIN_EVAL_SIZE].to(device)
        self.bn_index = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(3))[
            :cfg.precise_bn].to(device)
        self.history: list[dict] = []
        self.best_state: dict | None = None
        self.start_epoch = 1
        self.epochs_saved = 0  # checkpoints written by this process
        self.term_names: list[str] | None = None
        self.step = None

    # ---- one step and one epoch -------------------------------------------------
    def train_step(self, index: torch.Tensor) -> torch.Tensor:
        """One optimisation step on the batch ``index``; returns
        ``[total, *terms, correct]`` as one device tensor (no host sync)."""
        labels = self.data.train_labels[index]
        x = self.augment(self.data.train_images[index]).contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                            enabled=self.autocast_dtype is not None, cache_enabled=False):
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
        correct = (self.loss.predict(features.detach().float(), logits.detach().float()) == labels).sum()
        return torch.stack([total.detach(), *(t.detach() for t in terms.values()), correct.float()])

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
        batches = epoch_batches(len(self.data.train_labels), self.cfg.batch_size, self.device, self.generators.batches)
        sums = None
        bar = tqdm(batches, desc=f"epoch {epoch}/{self.cfg.epochs}", leave=False, disable=not self.ctx.progress,
                   unit="step", dynamic_ncols=True)
        early = {max(1, round(f * len(batches))): f for f in EARLY_FRAMES} if epoch == 1 and self.cfg.feat_dim == 2 else {}
        for step, index in enumerate(bar, 1):
            out = self.step(index)
            sums = out.clone() if sums is None else sums.add_(out)
            if step in early:
                self.save_early_frame(early[step])
        means = sums / len(batches)
        out = dict(zip(["loss", *self.term_names], means[:-1]))
        out["train_acc"] = sums[-1] / (len(batches) * self.cfg.batch_size)
        return out

    # ---- evaluation -------------------------------------------------------------
    def embed(self, images: torch.Tensor):
        return embed(self.model, images, autocast_dtype=self.autocast_dtype, memory_format=self.memory_format,
                     forward=self.forward)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, labels)`` of ``test``, ``val``, or ``train_eval``: the fixed training subset, unaugmented."""
        if name == "train_eval":
            return self.data.train_images[self.train_eval_index], self.data.train_labels[self.train_eval_index]
        return self.data.split(name)

    def embed_split(self, split: str, train_index: torch.Tensor):
        """``(train subset features, labels, split features, split logits, split labels)``; the train
        subset's features are None when ``train_index`` is empty."""
        train_features = self.embed(self.data.train_images[train_index])[0] if len(train_index) else None
        images, labels = self.split(split)
        features, logits = self.embed(images)
        return train_features, self.data.train_labels[train_index], features, logits, labels

    @torch.no_grad()
    def recompute_bn_statistics(self) -> None:
        """Precise BN: every BatchNorm's running statistics recomputed on the ``precise_bn`` fixed training
        images, unaugmented, as a cumulative average over batches (momentum None), the weights unchanged."""
        norms = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms or not len(self.bn_index):
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        training = self.model.training
        self.model.train()
        for index in self.bn_index.split(self.cfg.batch_size):
            x = Augment(self.cfg.dataset, "none")(self.data.train_images[index]).contiguous(
                memory_format=self.memory_format)
            with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                                enabled=self.autocast_dtype is not None, cache_enabled=False):
                (self.forward or self.model)(x)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        self.model.train(training)

    def evaluate(self, split: str, final: bool = False) -> tuple[dict[str, torch.Tensor], tuple]:
        """Accuracies on ``split`` by every rule; the train subset embedded is ``eval_train_size`` images
        per epoch, the whole TRAIN_EVAL_SIZE subset for the final evaluation."""
        self.recompute_bn_statistics()
        index = self.train_eval_index if final else self.train_eval_index[:self.cfg.eval_train_size]
        embeddings = self.embed_split(split, index)
        accs = evaluate_embeddings(self.loss, *embeddings)
        return {f"{split}_acc_{k}" if k != "headline" else f"{split}_acc": v for k, v in accs.items()}, embeddings

    # ---- the run ----------------------------------------------------------------
    def fit(self, should_stop=lambda: False) -> dict:
        """Train to the last epoch and write result.json. ``should_stop()`` is asked after each
        epoch's checkpoint: when it says yes, RunStopped is raised; on Ctrl-C, RunInterrupted."""
        set_aside_other_code(self.run_dir, self.ctx.fingerprint, self.log)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.run_dir / "config.json", {**self.cfg.to_dict(), "code_fingerprint": self.ctx.fingerprint})
        self.resume_if_interrupted()
        self.epoch_log = self.ctx.epoch_log(self.run_dir, self.start_epoch) if self.ctx.epoch_log else None
        t0 = time.perf_counter() - sum(row["seconds"] for row in self.history)
        try:
            status, diverged_epoch = self.train_epochs(should_stop)
        except KeyboardInterrupt:
            raise RunInterrupted(self.cfg.run_id, self.start_epoch - 1 + self.epochs_saved) from None
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
            status, error = "failed", f"final evaluation: {type(e).__name__}: {lines[0][:200] if lines else ''}"
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
            if selection is not None:
                eval_metrics, embeddings = self.evaluate(selection)
                frame_acc = eval_metrics[f"{selection}_acc"]
            else:  # protocol "last": no held-out split; the training subset only for the 2-D frames
                frames = self.protocol.frames_from
                eval_metrics, (frame_metrics, embeddings) = {}, self.evaluate(frames) \
                    if self.cfg.feat_dim == 2 else ({}, None)
                frame_acc = frame_metrics.get(f"{frames}_acc", torch.zeros((), device=self.device))
            names = [*train_metrics, *eval_metrics]
            values = torch.stack([*train_metrics.values(), *eval_metrics.values(), frame_acc]).tolist()  # one sync
            frame_acc = values.pop()
            row = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"], **dict(zip(names, values))}
            if not all(math.isfinite(row[name]) for name in train_metrics):
                self.log(f"run {self.cfg.run_id}: loss is {row['loss']} at epoch {epoch}; stopping "
                         "(lower --lr or the loss weights)")
                return "diverged", epoch
            if selection is not None and self.protocol.tests_once \
                    and row[select] > max((r[select] for r in self.history), default=-1):
                self.best_state = self.snapshot()
            if selection is not None:
                self.scheduler.step(row[select])
            row["seconds"] = time.perf_counter() - t_epoch
            self.history.append(row)
            self.save_epoch(epoch, embeddings, frame_acc)
            (tqdm.write if self.ctx.progress else self.log)(self.format_row(row))
            if epoch < self.cfg.epochs and should_stop():
                raise RunStopped(self.cfg.run_id, epoch)
        return "finished", None

    def final_evaluation(self) -> dict[str, float]:
        """Test accuracies and embedding metrics of the reported model: the last
        epoch's (reference and last protocols) or the selected epoch's (fair protocol)."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state["model"])
            self.loss.load_state_dict(self.best_state["loss"])
        test_metrics, embeddings = self.evaluate("test", final=True)
        train_features, train_labels, test_features, test_logits, test_labels = embeddings
        extra = embedding_metrics(train_features, train_labels, test_features, test_labels, self.loss.num_classes)
        if len(self.data.ood_images):
            ood_features, ood_logits = self.embed(self.data.ood_images)
            scores_in = ood_scores(self.loss, train_features, train_labels, test_features, test_logits)
            scores_out = ood_scores(self.loss, train_features, train_labels, ood_features, ood_logits)
            for score in scores_in:
                for metric, value in detection_metrics(scores_in[score], scores_out[score]).items():
                    extra[f"ood_{score}_{metric}"] = value
        else:
            self.log(f"run {self.cfg.run_id}: the out-of-distribution set ({self.data.ood_name}) is empty: no "
                     "detection metric")
        atomic_torch_save(self.run_dir / "features" / "final.pt",
                          self.feature_frame(embeddings, test_metrics["test_acc"].item()))
        return {k: v.item() for k, v in {**test_metrics, **extra}.items()}

    def snapshot(self) -> dict:
        return {"model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "loss": {k: v.detach().clone() for k, v in self.loss.state_dict().items()}}

    def format_row(self, row: dict) -> str:
        terms = " ".join(f"{k}={row[k]:.4g}" for k in row if k not in ("epoch", "lr", "seconds"))
        return f"[{self.cfg.run_id}] epoch {row['epoch']:3d} lr={row['lr']:.2g} {terms} ({row['seconds']:.1f}s)"

    def save_early_frame(self, fraction: float) -> None:
        """A 2-D frame within epoch 1 (``features/epoch_000.125.pt``): the frames' split's features and accuracy
        after that fraction of the epoch's steps. It only observes: the training's numbers do not change."""
        split = self.protocol.frames_from
        metrics, embeddings = self.evaluate(split)
        frame = self.feature_frame(embeddings, metrics[f"{split}_acc"].item(), FRAME_POINTS, fraction)
        atomic_torch_save(self.run_dir / "features" / f"epoch_{fraction:07.3f}.pt", frame)

    def feature_frame(self, embeddings, accuracy: float, points: int | None = None,
                      epoch: float | None = None) -> dict:
        """Features of an evaluation in float16, on the CPU, for plots; ``points``: at most that many
        per split (the train subset is already a random one; the held-out split gets a fixed random one)."""
        train_features, train_labels, features, _, labels = embeddings
        keep = torch.arange(len(labels))
        if points is not None and points < len(labels):
            keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(2))[:points].sort().values
        keep = keep.to(labels.device)
        centers = self.loss.centers
        if train_features is None:  # no train subset embedded this epoch (eval_train_size 0)
            train_features = features.new_empty(0, features.shape[1])
        return {
            "train_features": train_features[:points].half().cpu(),
            "train_labels": train_labels[:points].to(torch.uint8).cpu(),
            "test_features": features[keep].half().cpu(), "test_labels": labels[keep].to(torch.uint8).cpu(),
            "centers": None if centers is None else centers.detach().float().cpu(),
            "test_acc": accuracy, "epoch": self.history[-1]["epoch"] if epoch is None else epoch,
        }

    def save_epoch(self, epoch: int, embeddings, frame_acc: float) -> None:
        row = self.history[-1]
        atomic_write_csv(self.run_dir / "metrics.csv", self.history)
        if self.cfg.feat_dim == 2:
            frame = self.feature_frame(embeddings, frame_acc, FRAME_POINTS)
            atomic_torch_save(self.run_dir / "features" / f"epoch_{epoch:03d}.pt", frame)
            centers = None if frame["centers"] is None else frame["centers"].numpy()
            if self.epoch_log is not None:
                self.epoch_log.log_epoch(row, self.data.class_names, frame["test_features"].float().numpy(),
                                         frame["test_labels"].numpy(), centers)
        elif self.epoch_log is not None:
            self.epoch_log.log_epoch(row)
        atomic_torch_save(self.run_dir / "checkpoint.pt", {
            "epoch": epoch, "model": self.model.state_dict(), "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(), "center_rule": self.center_rule.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "best_state": self.best_state, "history": self.history, **rng_state(self.device),
            "generators": self.generators.state(),
        })
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
        out = {"run_id": self.cfg.run_id, "status": status, "diverged_epoch": diverged_epoch,
               "epochs_done": len(self.history), "wall_s": round(wall_s, 2),
               "device": device_name(self.device), "precision": self.precision,
               "torch_version": torch.__version__, "code_version": self.ctx.code_version,
               "code_fingerprint": self.ctx.fingerprint,
               "headline_rule": "argmax" if self.loss.prediction == "logits" else "nearest_center",
               "ood_dataset": self.data.ood_name + ("" if len(self.data.ood_images) else " (empty: no metric)"),
               "train_images": len(self.data.train_labels),
               "test_images": len(self.data.split("test")[1]),
               "config": self.cfg.to_dict()}
        held_out = [f"{split}_acc{s}" for s in ("", "_argmax", "_center", "_class_mean")] if split else []
        for name in held_out + ["train_acc"]:
            values = [row[name] for row in self.history if math.isfinite(row[name])]
            out[f"final_{name}"] = self.history[-1][name] if values and math.isfinite(self.history[-1][name]) else None
            out[f"best_{name}"] = max(values) if values else None
        if self.history and split:
            out["best_epoch"] = max(self.history, key=lambda r: r[select])["epoch"]
        finite = {k: (v if math.isfinite(v) else None) for k, v in final.items()}
        out.update({f"final_{k}": v for k, v in finite.items() if not k.startswith("test_")})  # embedding metrics
        if split is not None and self.protocol.tests_once:  # the test split was evaluated once, on the selected model
            out.update({f"{w}_{k}": v for k, v in finite.items() if k.startswith("test_") for w in ("final", "best")})
            out["selected_epoch"] = out.get("best_epoch")
        elif split is None:  # the test split was evaluated once, on the last epoch's model: no best-epoch figure
            out.update({f"final_{k}": v for k, v in finite.items() if k.startswith("test_")})
        return out
