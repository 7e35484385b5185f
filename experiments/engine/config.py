"""The recipe: the full configuration of one run, each field defined once; its hash is the run's stable id.

Each field of ``RunConfig`` says, in its metadata (``recipe``), its default, the reference study's value
(docs/reference.md), whether it was added after runs were first recorded (then it enters the run id only
when it differs from its default, so the ids of earlier runs stay valid), whether a grid may sweep it,
its help and how its flag parses. The command-line flags (``experiments/cli/recipe.py``), the presets'
departures, the tuner's recipe, the report's "departs from the reference in" column and the run id are all
derived from these definitions: a new recipe option is one field here.

Only what changes the result is here (execution details such as the data root, the device or progress bars
are in ``RunContext``), so the same experiment always gets the same id and the grid can skip it once done.
This module is torch-free, so that a command parses and refuses its flags without loading torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields

from centersuite.losses import CENTER_RULES, LOSSES, loss_options
from centersuite.models import MODELS
from experiments.cli.types import non_negative_float, non_negative_int, positive_float, positive_int
from experiments.engine.protocol import PROTOCOLS

# a field the reference study had no value for: never a departure
NOT_COMPARED = object()
# a field whose default is the loss's own (its registry entry): a departure when not that
PER_LOSS = object()


def recipe(
    default,
    help: str,
    *,
    reference=MISSING,
    added_later: bool = False,
    sweep: bool = False,
    parse=None,
    choices=None,
    model_default: bool = False,
    flag: bool = True,
):
    """A recipe field: ``reference`` (the study's value; the default when not given, ``NOT_COMPARED`` for
    none), ``added_later`` (enters the run id only when not the default), ``sweep`` (a grid may take several
    values), ``parse`` and ``choices`` (its flag's), ``model_default`` (a model with its own recipe,
    models/__init__.py, has its own default), ``flag`` (False: set by a command's own options)."""
    meta = {
        "help": help,
        "reference": default if reference is MISSING else reference,
        "added_later": added_later,
        "sweep": sweep,
        "parse": parse,
        "choices": choices,
        "model_default": model_default,
        "flag": flag,
    }
    return field(default=default, metadata={"recipe": meta})


@dataclass
class RunConfig:
    dataset: str = field(default="fashion-mnist", metadata={"recipe": None})
    loss: str = field(default="standalone", metadata={"recipe": None})
    feat_dim: int = field(default=2, metadata={"recipe": None})
    model: str = recipe(
        "resnet",
        "resnet: the reference pre-activation ResNet; lenet++: the center-loss demo's LeNet++",
        choices=tuple(MODELS),
    )
    loss_options: dict = field(default_factory=dict, metadata={"recipe": None})
    epochs: int = recipe(100, "training epochs", parse=positive_int)
    batch_size: int = recipe(
        128, "training batch (the last partial batch is dropped)", parse=positive_int
    )
    lr: float = recipe(
        0.01,
        "SGD learning rate (centers too, under joint)",
        sweep=True,
        parse=positive_float,
        model_default=True,
    )
    momentum: float = recipe(0.9, "SGD momentum", parse=non_negative_float)
    weight_decay: float = recipe(
        0.0,
        "SGD weight decay (never on centers)",
        sweep=True,
        parse=non_negative_float,
        model_default=True,
    )
    lr_factor: float = recipe(0.2, "ReduceLROnPlateau factor", parse=positive_float)
    lr_patience: int = recipe(10, "ReduceLROnPlateau patience", parse=positive_int)
    lr_threshold: float = recipe(
        0.1, "ReduceLROnPlateau relative threshold", parse=non_negative_float
    )
    augment: str = recipe(
        "reference",
        "reference: the study's per-dataset augmentation on the device; none: no augmentation",
        choices=("reference", "none"),
    )
    train_size: int | None = recipe(
        None, "train on a fixed subset of N samples (default: the whole split)", parse=positive_int
    )
    test_size: int | None = recipe(
        None, "test on a fixed subset of N samples (default: the whole split)", parse=positive_int
    )
    seed: int = field(default=0, metadata={"recipe": None})
    precision: str = recipe(
        "fp32",
        "fp32: the reference (TF32 convolutions as PyTorch allows by default); bf16: "
        "autocast, a named departure; fp16: autocast with a GradScaler",
        choices=("fp32", "bf16", "fp16"),
    )
    center_rule: str = recipe(
        "joint",
        "how centers are updated: joint (reference), separate, wen",
        added_later=True,
        choices=CENTER_RULES,
    )
    center_lr: float = recipe(
        0.5,
        "lr of the separate rule",
        reference=NOT_COMPARED,
        added_later=True,
        sweep=True,
        parse=positive_float,
    )
    center_alpha: float = recipe(
        0.5,
        "alpha of the wen rule",
        reference=NOT_COMPARED,
        added_later=True,
        sweep=True,
        parse=positive_float,
    )
    class_lr_scale: float | None = recipe(
        None,
        "the centers' or proxies' lr under the joint rule, as a multiple of --lr (default: the loss's own: "
        "1 for the center-loss family, as the reference; the field's losses their source's, docs/losses.md)",
        reference=PER_LOSS,
        added_later=True,
        sweep=True,
        parse=positive_float,
    )
    protocol: str = recipe(
        "reference",
        "reference: schedule and best epoch on the test split (the study); fair: "
        f"on a fixed stratified {PROTOCOLS['fair'].val_fraction * 100:g}%% validation split of the "
        "training set, test evaluated once at "
        "the end; last: no held-out split, a constant lr, the last epoch tested once",
        added_later=True,
        choices=tuple(PROTOCOLS),
    )
    known_classes: str = recipe(
        "",
        "open-set recognition: train and test on these classes only, e.g. 0-5",
        added_later=True,
        flag=False,
    )
    ood_images: str = recipe(
        "",
        "a .npy file of uint8 images of the dataset's shape, scored as "
        "out-of-distribution (default: the partner dataset, MNIST <-> Fashion-MNIST, or uniform "
        "noise)",
        reference=NOT_COMPARED,
        added_later=True,
    )
    eval_train_size: int = recipe(
        10000,
        "training images embedded after each epoch (the class-mean accuracy, "
        "the train frames of 2-D runs); 0: none. The final evaluation always embeds 10,000",
        reference=NOT_COMPARED,
        added_later=True,
        parse=non_negative_int,
    )
    precise_bn: int = recipe(
        0,
        "recompute the BatchNorm statistics on N fixed training images (no augmentation, "
        "no gradient) before every evaluation, so that they match the weights evaluated; 0: the "
        "running averages of training, as the reference",
        added_later=True,
        parse=non_negative_int,
    )

    def __post_init__(self):
        # Record every option of the loss, defaults included, so the id is explicit.
        # A number as a float (a tuner's whole-number draw, 2, is the 2.0 a command line gives: one run id).
        self.loss_options = {
            k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in {**loss_options(self.loss), **self.loss_options}.items()
        }
        # None: the loss's own value (its registry entry's), also when given
        for name in PER_LOSS_FIELDS:
            if getattr(self, name) == per_loss_default(self.loss, name):
                setattr(self, name, None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def departures(self) -> list[str]:
        """``field=value`` for every field (and loss option) that departs from the reference recipe."""
        out = [
            f"{k}={getattr(self, k)}" for k, v in REFERENCE_RECIPE.items() if getattr(self, k) != v
        ] + [f"{k}={getattr(self, k):g}" for k in PER_LOSS_FIELDS if getattr(self, k) is not None]
        defaults = loss_options(self.loss)
        return out + [
            f"{k}={v}" for k, v in sorted(self.loss_options.items()) if defaults.get(k) != v
        ]

    def resolved(self, name: str):
        """A per-loss field's value for this run: the one given, else the loss's own (its registry entry's;
        a change of it makes the loss's code fingerprint change, experiments/ledger/fingerprint.py)."""
        value = getattr(self, name)
        return per_loss_default(self.loss, name) if value is None else value

    @property
    def run_id(self) -> str:
        d = {k: v for k, v in self.to_dict().items() if ADDED_LATER.get(k, object()) != v}
        later = options_added_later(self.loss)
        d["loss_options"] = {
            k: v for k, v in self.loss_options.items() if later.get(k, object()) != v
        }  # an option at the value the loss had before it took the option: the id the run had then
        digest = hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.loss}-{self.dataset}-d{self.feat_dim}-s{self.seed}-{digest}"


RECIPE = {
    f.name: f.metadata["recipe"] for f in fields(RunConfig) if f.metadata.get("recipe") is not None
}
DEFAULTS = {f.name: f.default for f in fields(RunConfig) if f.name in RECIPE}
# the reference study's recipe (docs/reference.md): a run that departs from it in any of these fields, or in its
# loss's options, is not a reproduction of the study's table
REFERENCE_RECIPE = {
    k: m["reference"] for k, m in RECIPE.items() if m["reference"] not in (NOT_COMPARED, PER_LOSS)
}
PER_LOSS_FIELDS = tuple(k for k, m in RECIPE.items() if m["reference"] is PER_LOSS)


def options_added_later(loss: str) -> dict:
    """``{option: value}`` for the loss's options added after runs were recorded without them: the value those
    runs ran with (``Option.added_later``, losses/options.py)."""
    return {o.name: o.added_later for o in LOSSES.entry(loss).options if o.added_later is not None}


def per_loss_default(loss: str, name: str):
    """The loss's own default of a per-loss recipe field: its registry entry's attribute of that name."""
    return getattr(LOSSES.entry(loss), name)


ADDED_LATER = {k: DEFAULTS[k] for k, m in RECIPE.items() if m["added_later"]}
SWEEPABLE = tuple(k for k, m in RECIPE.items() if m["sweep"])  # recipe fields a grid may sweep
