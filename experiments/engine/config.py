"""The full configuration of one run; its hash is the run's stable id.

Only what changes the result is here (execution details such as the data
root, the device or progress bars are not), so the same experiment always
gets the same id and the grid can skip it once it is done.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

from centersuite.losses import loss_options


# The reference study's recipe (docs/reference.md): a run that departs from it in any of these
# fields, or in its loss's options, is not a reproduction of the study's table.
REFERENCE_RECIPE = {"model": "resnet", "epochs": 100, "batch_size": 128, "lr": 0.01, "momentum": 0.9,
                    "weight_decay": 0.0, "lr_factor": 0.2, "lr_patience": 10, "lr_threshold": 0.1,
                    "augment": "reference", "train_size": None, "test_size": None, "precision": "fp32",
                    "center_rule": "joint", "protocol": "reference", "known_classes": "", "precise_bn": 0}

SWEEPABLE = ("lr", "center_lr", "center_alpha", "weight_decay")  # recipe fields a grid may sweep

# Fields added after runs were first recorded enter the hash only when they differ
# from these defaults, so the ids of earlier runs stay valid.
ADDED_LATER = {"center_rule": "joint", "center_lr": 0.5, "center_alpha": 0.5, "protocol": "reference",
               "known_classes": "", "ood_images": "", "eval_train_size": 10000, "precise_bn": 0}


@dataclass
class RunConfig:
    dataset: str = "fashion-mnist"
    loss: str = "standalone"
    feat_dim: int = 2
    model: str = "resnet"
    loss_options: dict = field(default_factory=dict)
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_factor: float = 0.2
    lr_patience: int = 10
    lr_threshold: float = 0.1
    augment: str = "reference"
    train_size: int | None = None
    test_size: int | None = None
    seed: int = 0
    precision: str = "fp32"
    center_rule: str = "joint"
    center_lr: float = 0.5
    center_alpha: float = 0.5
    protocol: str = "reference"  # reference (select on test), fair (select on val, test once), last (test once)
    known_classes: str = ""  # open-set recognition: train and test on these classes only, e.g. "0-5"
    ood_images: str = ""  # a .npy of uint8 images to score as out-of-distribution (default: partner dataset or noise)
    eval_train_size: int = 10000  # training images embedded each epoch (class-mean accuracy, train frames); 0: none
    precise_bn: int = 0  # training images the BatchNorm statistics are recomputed on before each evaluation; 0: no

    def __post_init__(self):
        # Record every option of the loss, defaults included, so the id is explicit.
        self.loss_options = {**loss_options(self.loss), **self.loss_options}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def departures(self) -> list[str]:
        """``field=value`` for every field (and loss option) that departs from the reference recipe."""
        out = [f"{k}={getattr(self, k)}" for k, v in REFERENCE_RECIPE.items() if getattr(self, k) != v]
        defaults = loss_options(self.loss)
        return out + [f"{k}={v}" for k, v in sorted(self.loss_options.items()) if defaults.get(k) != v]

    @property
    def run_id(self) -> str:
        d = {k: v for k, v in self.to_dict().items() if ADDED_LATER.get(k, object()) != v}
        digest = hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.loss}-{self.dataset}-d{self.feat_dim}-s{self.seed}-{digest}"
