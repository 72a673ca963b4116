"""Paired bootstrap confidence interval for the AUC difference of two scorers.

Both scorers are evaluated on the *same* resampled rows in each replicate, so the interval
reflects the uncertainty of the difference, not of each AUC alone (which would be far wider
because most of the sampling noise is shared).

**Why the AUC interval is resampled by hand and the logloss one by** :func:`scipy.stats.bootstrap`.
The logloss difference is the mean of a per-row difference, a one-sample statistic that
``scipy.stats.bootstrap`` expresses exactly (vectorized :func:`numpy.mean`, percentile method,
seeded ``rng``): it draws the same resamples as a hand-written loop over the same generator, so
the interval is the same to the last bits of the percentile interpolation. The AUC difference is
not a per-row quantity: each replicate is two AUCs on the same resampled rows, and a replicate
whose rows hold a single class has no AUC. The gate skips such replicates and reports how many
were kept (``n_boot``); ``scipy.stats.bootstrap`` cannot skip a replicate (a NaN statistic makes
the whole interval NaN), and its non-vectorized path would materialise ``n_boot x rows`` resampled
copies of three arrays to call the same :func:`sklearn.metrics.roc_auc_score` once per replicate,
where the loop below scores only the distinct rows with their draw counts as weights. So the AUC
interval keeps its loop (same percentile rule, :func:`_percentile_interval`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

__all__ = ["paired_bootstrap_auc_diff", "paired_bootstrap_logloss_diff"]


def _checked(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three arrays as float64, after checking their shapes and the bootstrap settings."""
    y, a, b = (np.asarray(x, dtype=np.float64) for x in (y, a, b))
    if not (y.shape == a.shape == b.shape):
        raise ValueError(f"shapes differ: y {y.shape}, candidate {a.shape}, incumbent {b.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} must be in (0, 1)")
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot!r} must be >= 1")
    return y, a, b


def paired_bootstrap_auc_diff(
    y: np.ndarray,
    p_candidate: np.ndarray,
    p_incumbent: np.ndarray,
    *,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """AUC(candidate) - AUC(incumbent) with a percentile bootstrap interval.

    Returns ``{"diff", "low", "high", "n_boot"}``; ``low``/``high`` are NaN when fewer than two
    replicates hold both classes.
    """
    y, a, b = _checked(y, p_candidate, p_incumbent, n_boot, confidence)
    if y.min() == y.max():
        return {"diff": math.nan, "low": math.nan, "high": math.nan, "n_boot": 0}
    diff = float(roc_auc_score(y, a) - roc_auc_score(y, b))
    rng = np.random.default_rng(seed)
    n = y.size
    diffs = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, n, n), minlength=n)
        keep = counts > 0
        yk, w = y[keep], counts[keep]
        if yk.min() == yk.max():
            continue
        diffs.append(
            roc_auc_score(yk, a[keep], sample_weight=w)
            - roc_auc_score(yk, b[keep], sample_weight=w)
        )
    low, high = _percentile_interval(diffs, confidence)
    return {"diff": diff, "low": low, "high": high, "n_boot": len(diffs)}


def _percentile_interval(values: list[float] | np.ndarray,
                         confidence: float) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of bootstrap ``values`` (NaN, NaN for
    fewer than two)."""
    if len(values) < 2:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


#: At most this many resampled rows (replicates x rows) are drawn at once (about 32 MiB of
#: indices); batching does not change the draws.
_BATCH_CELLS = 1 << 22


def _row_logloss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    eps = np.finfo(np.float64).eps  # scikit-learn's log_loss clips the same way
    p = np.clip(p, eps, 1.0 - eps)
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def paired_bootstrap_logloss_diff(
    y: np.ndarray,
    p_candidate: np.ndarray,
    p_incumbent: np.ndarray,
    *,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """logloss(candidate) - logloss(incumbent) with a percentile bootstrap interval.

    The per-row logloss difference (probabilities clipped away from 0 and 1 by the float64
    epsilon, as :func:`reloop.learn.metrics.logloss`) is resampled with the rows, so the interval is
    the paired one.
    Returns ``{"diff", "low", "high", "n_boot"}``.
    """
    y, a, b = _checked(y, p_candidate, p_incumbent, n_boot, confidence)
    if y.size == 0:
        return {"diff": math.nan, "low": math.nan, "high": math.nan, "n_boot": 0}
    d = _row_logloss(y, a) - _row_logloss(y, b)
    diff = float(d.mean())
    if n_boot < 2:  # as _percentile_interval: no interval from fewer than two replicates
        low = high = math.nan
    elif d.size == 1:  # every replicate is the one row (scipy refuses a one-row sample)
        low = high = diff
    else:
        res = stats.bootstrap(
            (d,), np.mean, vectorized=True, n_resamples=n_boot,
            batch=max(1, _BATCH_CELLS // d.size),  # bounds the replicates x rows index array
            confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
        )
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"diff": diff, "low": low, "high": high, "n_boot": n_boot}
