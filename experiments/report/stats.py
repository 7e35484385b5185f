"""Mean and 95% confidence intervals over seeds, and paired comparisons (scipy.stats)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


def mean_ci(values) -> tuple[float, float | None]:
    """``(mean, half width of the two-sided 95% Student t interval)``; the half width is None for one value."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None
    return mean, float(stats.t.ppf(0.975, len(values) - 1) * stats.sem(values))


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` over pairs (one pair per seed): mean, 95% t half width, paired t-test p-value (from 3 pairs:
    with 2 the test has one degree of freedom and says next to nothing)."""

    pairs: int
    mean: float
    half_width: float | None
    p_value: float | None


def paired_difference(a, b) -> PairedDifference:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0:
        return PairedDifference(0, math.nan, None, None)
    mean, half = mean_ci(a - b)
    p = None
    if len(a) >= 3:
        p = float(stats.ttest_rel(a, b).pvalue)
        p = None if math.isnan(p) else p  # every difference equal: no test
    return PairedDifference(len(a), mean, half, p)
