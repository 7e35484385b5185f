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
    search: tuple[float, float] | None = None  # (low, high) a search draws from; None: kept at its default
    log: bool = False  # search on a log scale

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
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{self.name}: {text!r} must be a finite number, 0 or more")
        return value

    def describe_search(self) -> str:
        if self.search is None:
            return f"{self.name} fixed at {('on' if self.default else 'off') if self.is_switch else f'{self.default:g}'}"
        return f"{self.name} {'log-' if self.log else ''}uniform over [{self.search[0]:g}, {self.search[1]:g}]"


WEIGHT_CENT = Option("weight_cent", 1.0, "weight of the center loss term next to softmax (lambda)", (1e-3, 10.0), True)
WEIGHT_INTRA = Option("weight_intra", 1.0, "weight of the pull-to-center term (kept at 1 by a search: scaling it "
                                           "with the other terms only repeats the lr axis under SGD)")
WEIGHT_INTER = Option("weight_inter", 0.1, "weight of the inter-class push term", (1e-3, 1.0), True)
MARGIN = Option("margin", 10.0, "squared distance beyond which two features of different classes stop pushing",
                (1.0, 100.0), True)
ALPHA = Option("alpha", 0.01, "scale inside the exponential pull of centers-only", (1e-3, 0.03), True)
RADIUS = Option("radius", 1.0, "squared distance to the center within which a feature is not pulled",
                (0.01, 10.0), True)
FIXED_CENTERS = Option("fixed_centers", False, "fixed centers (one-hot or random directions) instead of learned")
CENTER_SCALE = Option("center_scale", 10.0, "norm of the fixed centers", (1.0, 100.0), True)
WEIGHT_CONTRASTIVE = Option("weight", 1.0, "weight of the contrastive-center term next to softmax", (1e-3, 10.0), True)
DELTA = Option("delta", 1.0, "constant added to the contrastive-center denominator", (0.1, 10.0), True)
