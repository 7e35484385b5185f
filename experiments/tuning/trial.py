"""One tuning trial: a run trained and selected on a validation split, with no test split at all.

The data of every trial of a study (``TrialData``) is the training subset and,
beside it, a validation split held out of the training split (exactly ``val_size``
images, stratified: each class gives its share; the same for every trial and
every loss). Where the test
split and the out-of-distribution images would be, it holds a stand-in
(``NoTestSplit``) that raises when touched in any way, so a trial cannot see them.

The trial trainer is the shared Trainer under the fair protocol (the validation
split evaluated after every epoch, the lr constant) without its final
evaluation: no test accuracy, no OOD scores, no early 2-D frames. After each
epoch, the last included, it reports the validation accuracy to Optuna, whose
pruner may stop the trial.

The objective is scored as a winner is reported: the last epoch's validation
accuracy by the loss's own prediction rule (argmax of the logits, or the nearest
center), averaged over the trial's seeds (``seeds``: each a full training, the
first one's epochs reported to the pruner). A trial that diverges at any seed
scores 0.

The search space of a loss: the shared knobs (``LR``, and ``CENTER_LR`` under
the separate center rule) and every option of the loss that has a search range
(losses/options.py); options without one stay at their defaults.
"""

from __future__ import annotations

from pathlib import Path

import torch

from experiments.datasets.specs import DataError, DatasetSpec, load_split
from experiments.engine.config import RunConfig
from experiments.engine.context import RunContext
from experiments.engine.data import DeviceData
from experiments.engine.trainer import RunStopped, Trainer
from experiments.ledger.fingerprint import code_fingerprint
from experiments.ledger.tensorboard import TensorBoardLog
from experiments.tuning.space import CENTER_LR, LR


class TestSplitTouched(RuntimeError):
    """Something in a tuning trial reached for the test split or the out-of-distribution images."""


class NoTestSplit:
    """Where a split that tuning must never see would be: any use of it raises TestSplitTouched."""

    def __init__(self, what: str):
        object.__setattr__(self, "what", what)

    def refuse(self, *_args, **_kwargs):
        raise TestSplitTouched(f"a tuning trial touched the {self.what}: trials must never see it")

    def __getattr__(self, name):
        self.refuse()

    __len__ = __getitem__ = __iter__ = __bool__ = __array__ = __setattr__ = refuse


def exact_stratified_split(
    labels: torch.Tensor, count: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keep, held_out)`` indices: exactly ``count`` held out, each class giving its share of them (rounded
    down, the remainders going to the classes with the largest fractions, ties to the lower class), each
    class's members in a seeded permutation."""
    g = torch.Generator().manual_seed(seed)
    classes = labels.unique().tolist()
    sizes = torch.tensor([int((labels == c).sum()) for c in classes], dtype=torch.float64)
    shares = sizes * count / len(labels)
    take = shares.floor().long()
    order = sorted(range(len(classes)), key=lambda k: (-(shares[k] - take[k]).item(), k))
    for k in order[: count - int(take.sum())]:
        take[k] += 1
    held = []
    for c, n in zip(classes, take.tolist()):
        members = (labels == c).nonzero().squeeze(1)
        held.append(members[torch.randperm(len(members), generator=g)][:n])
    held_out = torch.cat(held).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held_out] = False
    return mask.nonzero().squeeze(1), held_out


def subset_problem(dataset: str, images: int, train_size: int, val_size: int) -> str | None:
    """Why a trial's ``train_size + val_size`` images cannot be taken from the ``images`` of ``dataset``'s
    training split (one line, with the fix), or None."""
    if train_size + val_size <= images:
        return None
    return (
        f"{dataset}: --train-size {train_size} + --val-size {val_size} is more than its {images} training "
        "images; lower one of them"
    )


class TrialData:
    """The training subset (the first ``train_size + val_size`` images of the training split's fixed
    permutation, as ``DeviceData`` takes them, less the validation part) and the validation split
    (``val_size`` of them, stratified by class), on ``device``; no test split, no OOD images."""

    def __init__(
        self, spec: DatasetSpec, root: Path, device: torch.device, train_size: int, val_size: int
    ):
        images, labels = load_split(spec, root, train=True)
        if problem := subset_problem(spec.name, len(labels), train_size, val_size):
            raise DataError(problem)
        images, labels = DeviceData._subset(images, labels, train_size + val_size)
        keep, held = exact_stratified_split(labels, val_size)
        self.spec, self.class_names = spec, spec.class_names
        self.train_images, self.train_labels = images[keep].to(device), labels[keep].to(device)
        self.val_images, self.val_labels = images[held].to(device), labels[held].to(device)
        self.test_images = self.test_labels = NoTestSplit("test split")
        self.ood_images, self.ood_name = NoTestSplit("out-of-distribution images"), "none"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str):
        if name != "val":
            self.test_images.refuse()
        return self.val_images, self.val_labels


class TrialTrainer(Trainer):
    """The shared trainer, selecting on the validation split, without a final evaluation."""

    def save_early_frame(self, fraction: float) -> None:
        """Trials keep no frames within epoch 1 (nobody draws a trial)."""

    def final_evaluation(self) -> dict:
        return {}

    def result(self, status: str, diverged_epoch: int | None, wall_s: float, final: dict) -> dict:
        return {
            "run_id": self.cfg.run_id,
            "status": status,
            "diverged_epoch": diverged_epoch,
            "epochs_done": len(self.history),
            "wall_s": round(wall_s, 2),
            "code_fingerprint": self.ctx.fingerprint,
            "val_acc": [row["val_acc"] for row in self.history],
        }


class TrialStopped(Exception):
    """The trial was told to stop (time budget, SIGTERM, Ctrl-C of a parallel driver) after an epoch; its
    checkpoint holds the epochs done, so the same point trained again resumes there."""


def trial_config(base: RunConfig, params: dict) -> RunConfig:
    """The run of one point of the space: ``base`` (the study's recipe and budget) with the point's values."""
    recipe = {k: v for k, v in params.items() if k in (LR.name, CENTER_LR.name)}
    options = {k: v for k, v in params.items() if k not in recipe}
    return RunConfig.from_dict(
        {**base.to_dict(), **recipe, "loss_options": {**base.loss_options, **options}}
    )


def run_trial(
    trial,
    cfg: RunConfig,
    data: TrialData,
    device: torch.device,
    out: Path,
    should_stop,
    seeds: int = 1,
    progress: bool = True,
    log=print,
) -> list[dict]:
    """Train the trial's point at seeds ``cfg.seed`` .. ``cfg.seed + seeds - 1`` (run directories in ``out``);
    report every epoch of the first one, the last included, to Optuna. Returns the trial trainer's result of
    each seed (up to the first that diverged); raises optuna.TrialPruned when the pruner stops it, TrialStopped
    when told to stop."""
    import optuna

    results = []
    for k in range(seeds):
        run = RunConfig.from_dict({**cfg.to_dict(), "seed": cfg.seed + k})
        trainer = TrialTrainer(
            run,
            data,
            Path(out) / run.run_id,
            RunContext(
                device=device,
                progress=progress,
                log=log,
                fingerprint=code_fingerprint(run.loss, run.model),
                epoch_log=TensorBoardLog,
            ),
        )
        reported, pruned = set(), []

        def report(trainer=trainer, k=k, reported=reported) -> None:
            for row in trainer.history if k == 0 else ():
                if row["epoch"] not in reported:
                    trial.report(row["val_acc"], row["epoch"])
                    reported.add(row["epoch"])

        def after_epoch(trainer=trainer, k=k, pruned=pruned, report=report) -> bool:
            report()
            if k == 0 and trial.should_prune():
                pruned.append(trainer.history[-1]["epoch"])
            return bool(pruned) or should_stop()

        try:
            results.append(trainer.fit(after_epoch))
        except RunStopped:
            if pruned:
                raise optuna.TrialPruned() from None
            raise TrialStopped() from None
        report()  # the last epoch, which the trainer does not ask about
        if results[-1]["status"] == "diverged":
            break
    return results


def objective(results: list[dict]) -> float:
    """The last epoch's validation accuracy, averaged over the trial's seeds; 0 when a seed diverged."""
    if any(r["status"] == "diverged" or not r["val_acc"] for r in results):
        return 0.0
    return sum(r["val_acc"][-1] for r in results) / len(results)
