"""Loss options, each defined once: its name, type, default, meaning, and the range a tuning
search draws it from. A loss lists the options it takes (``Loss.options``) and uses their
defaults in its signature; the command-line flags, the grid's sweep axes, the help and the
search spaces are all derived from these definitions."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    name: str
    default: float | bool
    help: str
    search: tuple[float, float] | None = (
        None  # (low, high) a search draws from; None: kept at its default
    )
    log: bool = False  # search on a log scale
    positive: bool = False  # 0 is refused too (a scale or temperature of 0 leaves nothing to learn)
    below: float | None = (
        None  # values from this one up are refused (an angle of 180 degrees or more)
    )
    integer: bool = (
        False  # a whole number from 1 to below - 1 (a multiplicative margin); a search draws them
    )
    added_later: float | None = (
        None  # the value the loss ran with before it took this option: rows without it are read so
    )

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def is_switch(self) -> bool:
        return isinstance(self.default, bool)

    def parse(self, text: str) -> float | bool:
        """A value from the command line; ValueError with a message naming the option when it is bad."""
        if self.is_switch:
            if text.lower() in ("true", "on", "1", "yes"):
                return True
            if text.lower() in ("false", "off", "0", "no"):
                return False
            raise ValueError(f"{self.name}: {text!r} is not on or off")
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{self.name}: {text!r} is not a number") from None
        if self.integer and not (value.is_integer() and 1 <= value < self.below):
            raise ValueError(
                f"{self.name}: {text!r} must be a whole number from 1 to {self.below - 1:g}"
            )
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{self.name}: {text!r} must be a finite number, 0 or more")
        if self.positive and value == 0:
            raise ValueError(f"{self.name}: {text!r} must be more than 0")
        if self.below is not None and value >= self.below:
            raise ValueError(f"{self.name}: {text!r} must be under {self.below:g}")
        return value

    def describe_search(self) -> str:
        if self.search is None:
            return f"{self.name} fixed at {('on' if self.default else 'off') if self.is_switch else f'{self.default:g}'}"
        kind = (
            "the whole numbers of" if self.integer else f"{'log-' if self.log else ''}uniform over"
        )
        return f"{self.name} {kind} [{self.search[0]:g}, {self.search[1]:g}]"


WEIGHT_CENT = Option(
    "weight_cent",
    1.0,
    "weight of the center loss term next to softmax (lambda)",
    (1e-3, 10.0),
    True,
)
WEIGHT_INTRA = Option(
    "weight_intra",
    1.0,
    "weight of the pull-to-center term (kept at 1 by a search: scaling it "
    "with the other terms only repeats the lr axis under SGD)",
)
WEIGHT_INTER = Option("weight_inter", 0.1, "weight of the inter-class push term", (1e-3, 1.0), True)
MARGIN = Option(
    "margin",
    10.0,
    "squared distance beyond which two features of different classes stop pushing",
    (1.0, 100.0),
    True,
)
ALPHA = Option(
    "alpha",
    0.001,
    "bend of centers-only's exponential pull (exp(alpha d) - 1) / alpha",
    (1e-3, 0.03),
    True,
    positive=True,  # the pull divides by it
)
RADIUS = Option(
    "radius",
    1.0,
    "squared distance to the center within which a feature is not pulled",
    (0.01, 10.0),
    True,
)
FIXED_CENTERS = Option(
    "fixed_centers", False, "fixed centers (one-hot or random directions) instead of learned"
)
CENTER_SCALE = Option("center_scale", 10.0, "norm of the fixed centers", (1.0, 100.0), True)
WEIGHT_CONTRASTIVE = Option(
    "weight", 1.0, "weight of the contrastive-center term next to softmax", (1e-3, 10.0), True
)
DELTA = Option(
    "delta", 1.0, "constant added to the contrastive-center denominator", (0.1, 10.0), True
)

# pytorch-metric-learning's losses (losses/pml.py): each default is the library's (2.9), but scale, sphere_margin and proxy_alpha,
# measured (docs/losses.md); a name says which loss
# it belongs to where two losses of the library use one word for different things
ARC_MARGIN = Option(
    "arc_margin", 28.6, "ArcFace's additive angular margin, in degrees", (5.0, 60.0), below=180.0
)
COS_MARGIN = Option("cos_margin", 0.35, "CosFace's additive cosine margin", (0.05, 0.8))
SCALE = Option(
    "scale",
    16.0,
    "scale of the cosine logits (ArcFace, CosFace; the library's 64 left 2-D features near chance: docs/losses.md)",
    (8.0, 128.0),
    True,
    positive=True,
)
SPHERE_MARGIN = Option(
    "sphere_margin",
    1.0,
    "SphereFace's multiplicative angular margin m (the angle to a sample's class is multiplied by it; 1 is "
    "no margin), a whole number from 1 to 4, the paper's range (the library's 4, without the paper's "
    "annealing, reached 0.33 on Fashion-MNIST's validation split at feat_dim 128, chance 0.10, against 0.76 "
    "at 1: docs/losses.md)",
    (1.0, 4.0),
    below=5.0,
    integer=True,
    added_later=4.0,  # the library's margin, fixed before the option existed
)
SOFTMAX_TEMPERATURE = Option(
    "softmax_temperature",
    0.05,
    "temperature of the normalized softmax",
    (0.01, 1.0),
    True,
    positive=True,
)
SOFTMAX_SCALE = Option(
    "softmax_scale",
    1.0,
    "scale of Proxy-NCA's softmax over proxy distances",
    (0.1, 100.0),
    True,
    positive=True,
)
PROXY_MARGIN = Option(
    "proxy_margin", 0.1, "Proxy-Anchor's margin on the cosine similarity", (0.01, 0.5), True
)
PROXY_ALPHA = Option(
    "proxy_alpha",
    1.0,
    "Proxy-Anchor's scale (alpha; the paper's 32, for 512-D features, left 2-D ones at chance: docs/losses.md)",
    (0.5, 64.0),
    True,
    positive=True,
)
SOFT_LA = Option("soft_la", 20.0, "SoftTriple's scale (lambda)", (5.0, 100.0), True, positive=True)
SOFT_GAMMA = Option(
    "soft_gamma",
    0.1,
    "SoftTriple's temperature over a class's sub-centers (gamma)",
    (0.01, 1.0),
    True,
    positive=True,
)
SOFT_MARGIN = Option("soft_margin", 0.01, "SoftTriple's margin (delta)", (0.001, 0.1), True)
POS_MARGIN = Option(
    "pos_margin", 0.0, "contrastive: distance under which a positive pair stops pulling"
)
NEG_MARGIN = Option(
    "neg_margin",
    1.0,
    "contrastive: distance beyond which a negative pair stops pushing",
    (0.1, 4.0),
    True,
)
TRIPLET_MARGIN = Option("triplet_margin", 0.05, "triplet margin", (0.01, 0.5), True)
MINER_MARGIN = Option(
    "miner_margin",
    0.2,
    "the triplet miner's margin: triplets within it are mined",
    (0.01, 1.0),
    True,
)
MS_ALPHA = Option(
    "ms_alpha", 2.0, "multi-similarity: weight of the positive pairs (alpha)", (0.5, 10.0), True
)
MS_BETA = Option(
    "ms_beta", 50.0, "multi-similarity: weight of the negative pairs (beta)", (10.0, 100.0), True
)
MS_BASE = Option("ms_base", 0.5, "multi-similarity: similarity offset (lambda)")
SUPCON_TEMPERATURE = Option(
    "supcon_temperature",
    0.1,
    "temperature of the supervised contrastive loss",
    (0.01, 1.0),
    True,
    positive=True,
)

# the center-loss family's push variants (losses/push_variants.py)
LAMBDA_C = Option(
    "lambda_c", 0.01, "Git loss: weight of the center loss term (lambda_C)", (1e-3, 1.0), True
)
LAMBDA_G = Option(
    "lambda_g",
    0.1,
    "Git loss: weight of the push from the other classes' centers (lambda_G)",
    (1e-3, 1.0),
    True,
)
LAMBDA_ISLAND = Option(
    "lambda_island",
    0.01,
    "Island loss: weight of the island loss next to softmax (lambda)",
    (1e-3, 1.0),
    True,
)
LAMBDA_1 = Option(
    "lambda_1",
    10.0,
    "Island loss: weight of the centers' pairwise cosine term (lambda_1)",
    (0.1, 100.0),
    True,
)
