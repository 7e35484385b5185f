"""What a tuning study searches, torch-free (the command lists it in its help): the shared knobs (``LR``, and
``CENTER_LR`` under the separate center rule) and every option of the loss that has a search range
(losses/options.py); options without one stay at their defaults. The study's fixed settings live here too."""

from __future__ import annotations

from centersuite.losses import LOSSES
from centersuite.losses.options import Option

N_STARTUP = 10  # TPE's first trials of each study, drawn at random
PRUNERS = ("none", "median", "hyperband")
PRECISE_BN = 2000  # training images the trials and reproductions recompute BatchNorm statistics on (--precise-bn)

LR = Option(
    "lr", 0.01, "SGD learning rate (of the centers too, under the joint rule)", (1e-3, 1e-1), True
)
CENTER_LR = Option(
    "center_lr", 0.5, "SGD learning rate of the centers under the separate rule", (1e-2, 1.0), True
)


def search_space(loss: str, center_rule: str, fixed: dict | None = None) -> list[Option]:
    """What a study of ``loss`` searches: the shared knobs, then the loss's options with a search range that
    are not ``fixed`` (the user's ``--set``)."""
    shared = [LR] + ([CENTER_LR] if center_rule == "separate" else [])
    return shared + [
        o
        for o in LOSSES.entry(loss).options
        if o.search is not None and o.name not in (fixed or {})
    ]


def describe_space(loss: str, center_rule: str, fixed: dict | None = None) -> str:
    searched = [o.describe_search() for o in search_space(loss, center_rule, fixed)]
    kept = [f"{name} fixed at {value:g}" for name, value in sorted((fixed or {}).items())]
    kept += [
        o.describe_search()
        for o in LOSSES.entry(loss).options
        if o.search is None and o.name not in (fixed or {})
    ]
    return "; ".join(searched + kept)


def suggest(trial, space: list[Option]) -> dict:
    """One point of the space, drawn by the trial's sampler."""
    return {
        o.name: float(trial.suggest_int(o.name, *map(int, o.search)))
        if o.integer
        else trial.suggest_float(o.name, *o.search, log=o.log)
        for o in space
    }
