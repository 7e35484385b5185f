"""The losses, by name: every loss is a small class with the same call, ``loss(embeddings, labels)``.

``LOSSES`` maps each name to its class, imported when first asked for (so that a
command lists the names and options and refuses a bad one without loading
torch); ``LOSSES.entry(name)`` says, without importing it, the options the loss
takes (each defined once in ``losses/options.py``, its default the class's) and
what a runner asks of it before training: whether a term sums over pairs of
samples of different classes, whether it trains class centers or proxies, the
library it needs. ``build_loss(name, num_classes, feat_dim, **options)`` makes
one; an option it does not take is refused in one line.

A loss defined elsewhere joins with one line:
``LOSSES["my-loss"] = LossEntry(MyLoss, (MY_WEIGHT,), class_parameters="centers")``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import MutableMapping
from dataclasses import dataclass

from .options import (
    ALPHA,
    ARC_MARGIN,
    CENTER_SCALE,
    COS_MARGIN,
    DELTA,
    FIXED_CENTERS,
    LAMBDA_1,
    LAMBDA_C,
    LAMBDA_G,
    LAMBDA_ISLAND,
    MARGIN,
    MINER_MARGIN,
    MS_ALPHA,
    MS_BASE,
    MS_BETA,
    NEG_MARGIN,
    POS_MARGIN,
    PROXY_ALPHA,
    PROXY_MARGIN,
    RADIUS,
    SCALE,
    SOFT_GAMMA,
    SOFT_LA,
    SOFT_MARGIN,
    SOFTMAX_SCALE,
    SOFTMAX_TEMPERATURE,
    SPHERE_MARGIN,
    SUPCON_TEMPERATURE,
    TRIPLET_MARGIN,
    WEIGHT_CENT,
    WEIGHT_CONTRASTIVE,
    WEIGHT_INTER,
    WEIGHT_INTRA,
    Option,
)

PML = "pytorch-metric-learning"
CENTER_RULES = (
    "joint",
    "separate",
    "wen",
)  # how learnable centers are updated: losses/center_rules.py


@dataclass(frozen=True)
class LossEntry:
    """One registered loss. ``target``: its class, or ``".module:Class"`` of this package (imported when first
    built); ``options``: the options it takes, in its ``__init__``'s order, with their defaults;
    ``pairs_across_classes``: a term sums over pairs of samples with different labels, so a batch of one class
    makes it 0; ``class_parameters``: ``"centers"`` or ``"proxies"`` when it trains one learnable vector per
    class (what the center rules act on), unless the option ``fixed_by`` is on; ``library``: the installed
    package it needs (its version enters the loss's code fingerprint); ``class_lr_scale``: the model's lr
    times this is its class parameters' lr under the joint rule (1: the reference; a loss of the field: the
    scale its source trains its proxies at, docs/losses.md)."""

    target: object
    options: tuple[Option, ...] = ()
    pairs_across_classes: bool = False
    class_parameters: str | None = None
    fixed_by: str = ""
    library: str | None = None
    class_lr_scale: float = 1.0

    def has_class_parameters(self, options: dict | None = None) -> bool:
        return self.class_parameters is not None and not (
            self.fixed_by and (options or {}).get(self.fixed_by)
        )


def _pml(target: str, *options: Option, kind: str, class_lr_scale: float = 1.0) -> LossEntry:
    return LossEntry(
        f".pml:{target}",
        options,
        pairs_across_classes=kind == "pair",
        class_parameters=None if kind == "pair" else "proxies",
        library=PML,
        class_lr_scale=class_lr_scale,
    )


class Registry(MutableMapping):
    """Loss name -> loss class, each imported when first asked for; its entry without importing it."""

    def __init__(self, entries: dict[str, LossEntry]):
        self._entries, self._classes = dict(entries), {}

    def entry(self, name: str) -> LossEntry:
        if name not in self._entries:
            raise ValueError(f"unknown loss {name!r}; choose from {', '.join(self._entries)}")
        return self._entries[name]

    def __getitem__(self, name: str):
        if name not in self._classes:
            target = self._entries[name].target
            if isinstance(target, str):
                module, _, attr = target.partition(":")
                target = getattr(importlib.import_module(module, __name__), attr)
            check_signature(name, target, self._entries[name].options)
            self._classes[name] = target
        return self._classes[name]

    def __setitem__(self, name: str, entry: LossEntry) -> None:
        if not isinstance(entry, LossEntry):
            raise TypeError(
                f"register a loss as LOSSES[{name!r}] = LossEntry(TheClass, options, ...)"
            )
        self._entries[name] = entry
        self._classes.pop(name, None)

    def __delitem__(self, name: str) -> None:
        del self._entries[name]
        self._classes.pop(name, None)

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def check_signature(name: str, cls: type, options: tuple[Option, ...]) -> None:
    """A loss class's ``__init__`` takes exactly its registered options, with their defaults."""
    params = {
        k: p.default
        for k, p in inspect.signature(cls.__init__).parameters.items()
        if k not in ("self", "num_classes", "feat_dim")
    }
    declared = {o.name: o.default for o in options}
    if params != declared:
        raise TypeError(
            f"loss {name!r}: its registered options {declared} must be the parameters of "
            f"{cls.__name__}.__init__ with their defaults, {params}"
        )


LOSSES = Registry(
    {
        "xent": LossEntry(".xent:SoftmaxLoss"),
        "cent": LossEntry(".cent:SoftmaxCenterLoss", (WEIGHT_CENT,), class_parameters="centers"),
        "standalone": LossEntry(
            ".standalone:StandaloneCenterLoss",
            (WEIGHT_INTRA, WEIGHT_INTER),
            pairs_across_classes=True,
            class_parameters="centers",
        ),
        "standalone-log": LossEntry(
            ".standalone_variants:StandaloneLogLoss",
            (WEIGHT_INTRA, WEIGHT_INTER),
            pairs_across_classes=True,
            class_parameters="centers",
        ),
        "standalone-margin": LossEntry(
            ".standalone_variants:StandaloneMarginLoss",
            (WEIGHT_INTRA, WEIGHT_INTER, MARGIN),
            pairs_across_classes=True,
            class_parameters="centers",
        ),
        "centers-only": LossEntry(
            ".centers_only:CentersOnlyLoss",
            (ALPHA, WEIGHT_INTRA, WEIGHT_INTER),
            class_parameters="centers",
        ),
        "center-radius": LossEntry(
            ".center_radius:CenterRadiusLoss",
            (RADIUS, FIXED_CENTERS, CENTER_SCALE),
            class_parameters="centers",
            fixed_by="fixed_centers",
        ),
        "contrastive-center": LossEntry(
            ".contrastive_center:ContrastiveCenterLoss",
            (WEIGHT_CONTRASTIVE, DELTA),
            class_parameters="centers",
        ),
        "centers-softmax": LossEntry(
            ".centers_softmax:CentersSoftmaxLoss", class_parameters="centers"
        ),
        "git": LossEntry(
            ".push_variants:GitLoss", (LAMBDA_C, LAMBDA_G), class_parameters="centers"
        ),
        "island": LossEntry(
            ".push_variants:IslandLoss", (LAMBDA_ISLAND, LAMBDA_1), class_parameters="centers"
        ),
        # pytorch-metric-learning's losses (losses/pml.py: an adapter; the library is imported when one is built)
        "arcface": _pml("ArcFace", ARC_MARGIN, SCALE, kind="classifier"),
        "cosface": _pml("CosFace", COS_MARGIN, SCALE, kind="classifier"),
        "sphereface": _pml("SphereFace", SPHERE_MARGIN, kind="classifier"),
        "normalized-softmax": _pml("NormalizedSoftmax", SOFTMAX_TEMPERATURE, kind="classifier"),
        "proxy-nca": _pml("ProxyNCA", SOFTMAX_SCALE, kind="proxy", class_lr_scale=100.0),
        "proxy-anchor": _pml(
            "ProxyAnchor", PROXY_MARGIN, PROXY_ALPHA, kind="proxy", class_lr_scale=100.0
        ),
        "soft-triple": _pml("SoftTriple", SOFT_LA, SOFT_GAMMA, SOFT_MARGIN, kind="proxy"),
        "contrastive": _pml("Contrastive", POS_MARGIN, NEG_MARGIN, kind="pair"),
        "triplet": _pml("Triplet", TRIPLET_MARGIN, MINER_MARGIN, kind="pair"),
        "multi-similarity": _pml("MultiSimilarity", MS_ALPHA, MS_BETA, MS_BASE, kind="pair"),
        "supcon": _pml("SupCon", SUPCON_TEMPERATURE, kind="pair"),
    }
)


def __getattr__(name: str):
    """A loss class by its class name (``from centersuite.losses import StandaloneCenterLoss``), imported when
    first asked for."""
    for key in LOSSES:
        entry = LOSSES.entry(key)
        if isinstance(entry.target, str) and entry.target.endswith(f":{name}"):
            return LOSSES[key]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def loss_options(name: str) -> dict[str, object]:
    """The options a loss takes, with their defaults."""
    return {o.name: o.default for o in LOSSES.entry(name).options}


def option_definitions() -> dict[str, Option]:
    """Every option of every registered loss, by name (one definition each)."""
    found: dict[str, Option] = {}
    for name in LOSSES:
        for option in LOSSES.entry(name).options:
            if found.setdefault(option.name, option) != option:
                raise TypeError(
                    f"two losses define the option {option.name!r} differently; define it once in "
                    "losses/options.py and use it in both"
                )
    return found


def has_class_parameters(name: str, options: dict | None = None) -> bool:
    """Whether a run of the loss trains class centers or proxies (what the center rules act on)."""
    return LOSSES.entry(name).has_class_parameters(options)


def missing_library(name: str) -> str | None:
    """The package the loss needs that this Python lacks, or None."""
    library = LOSSES.entry(name).library
    if library is None:
        return None
    return None if importlib.util.find_spec(library.replace("-", "_")) is not None else library


def build_loss(name: str, num_classes: int, feat_dim: int, **options):
    """A loss module: ``loss(embeddings, labels)`` is its scalar to minimise. ValueError for an unknown loss or
    option (one line)."""
    unknown = sorted(set(options) - set(loss_options(name)))
    if unknown:
        raise ValueError(
            f"loss {name!r} takes no option {', '.join(unknown)}; it takes: "
            f"{', '.join(loss_options(name)) or 'none'}"
        )
    return LOSSES[name](num_classes, feat_dim, **options)
