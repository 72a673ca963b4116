"""Paired comparisons of two arms over periods, with percentile bootstrap intervals.

Each period gives one value per arm (its online AUC, expected CTR, ...). Periods, not
impressions, are the unit resampled: the interval says how much the arms' difference varies from
one period to the next, which is what a user deciding on a recipe needs. Resampling keeps the two
arms' values of a period together (``paired=True``), so what the arms share (a hard day, a shift
day) cancels out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["paired_period_ci"]


def _mean_diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a - b, axis=axis)


def _relative_gain(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) / np.mean(b, axis=axis) - 1.0


STATISTICS = {"diff": _mean_diff, "relative": _relative_gain}


def paired_period_ci(
    arm: Sequence[float],
    baseline: Sequence[float],
    *,
    kind: str = "diff",
    n_boot: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """The arm's gain over the baseline across periods, with a percentile bootstrap CI.

    ``kind="diff"``: the mean of the per-period differences ``arm - baseline``;
    ``kind="relative"``: ``mean(arm) / mean(baseline) - 1`` (e.g. a CTR lift). Periods where
    either value is NaN are left out. Returns ``{"value", "low", "high", "periods", "wins"}``
    (``wins``: periods where the arm is ahead); the bounds are NaN with fewer than two periods.
    """
    if kind not in STATISTICS:
        raise ValueError(f"kind={kind!r} is not supported; expected one of {sorted(STATISTICS)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} must be in (0, 1)")
    a = np.asarray(arm, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"arm and baseline need one value per period each; got shapes "
                         f"{a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    statistic = STATISTICS[kind]
    out = {"value": math.nan, "low": math.nan, "high": math.nan, "periods": int(a.size),
           "wins": int((a > b).sum())}
    if a.size == 0:
        return out
    out["value"] = float(statistic(a, b))
    if a.size < 2:
        return out
    if np.all(a - b == (a - b)[0]) and kind == "diff":  # no spread: every resample agrees
        out["low"] = out["high"] = out["value"]
        return out
    res = stats.bootstrap(
        (a, b), statistic, paired=True, vectorized=True, n_resamples=n_boot,
        confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
    )
    out["low"] = float(res.confidence_interval.low)
    out["high"] = float(res.confidence_interval.high)
    return out
