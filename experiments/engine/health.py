"""Collapse and dead centers, watched every epoch (issue: a run records no sign of either but a poor
accuracy). Per epoch the trainer records ``center_gap`` (the distance between the two nearest class centers,
or proxies, or class means of the embedded training subset for a loss without them, over the mean feature
norm of the epoch's training batches; over 1 for a loss that compares directions) and ``center_shift``
(how far the centers moved in the epoch, on the same scale). A run is flagged:

- ``collapsed``: in two epochs running, from the second on, the two nearest centers closer than
  ``COLLAPSE_GAP`` of the feature norm (two classes drawn to one point, not passing by), or the feature norm
  shrunk below ``SHRUNK`` of its first epoch's (everything drawn to one point);
- ``centers never moved``: learnable centers whose shifts sum to less than ``STILL`` over the run.
"""

from __future__ import annotations

import math

COLLAPSE_GAP = 0.05
SHRUNK = 1e-3
STILL = 1e-6


def health(history: list[dict], learnable: bool) -> str:
    """The flag of a run from its epoch rows: "" (none), ``collapsed at epoch K (...)``, or ``centers never
    moved``; a run flagged once stays flagged (the first epoch that showed it)."""
    first_norm = next((r.get("feature_norm") for r in history if r.get("feature_norm")), None)
    close = [r.get("center_gap", math.nan) < COLLAPSE_GAP for r in history]  # NaN: never close
    for k, r in enumerate(history[1:], start=1):  # from epoch 2: the first is near the random start
        norm = r.get("feature_norm", math.nan)
        if k >= 2 and close[k] and close[k - 1]:
            return (
                f"collapsed at epoch {r['epoch']} (the two nearest class centers {r['center_gap']:.3g} of the "
                "feature norm apart, and under 5% since the epoch before)"
            )
        if first_norm and norm == norm and norm < SHRUNK * first_norm:
            return f"collapsed at epoch {r['epoch']} (feature norm {norm:.3g}, {first_norm:.3g} at first)"
    shifts = [r.get("center_shift", math.nan) for r in history]
    if learnable and len(history) >= 2 and all(s == s for s in shifts) and sum(shifts) < STILL:
        return "centers never moved"
    return ""
