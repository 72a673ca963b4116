"""Ranking and calibration metrics: AUC, gAUC and logloss.

AUC and logloss delegate to scikit-learn. gAUC (group AUC, as in the ReLoop2 paper) is the
per-user AUC averaged with weights equal to each user's sample count, over the users that have
both a click and a non-click; users with a single class have no AUC and are left out. It is
computed for all users at once with the rank-sum (Mann-Whitney U) form of the AUC, grouped in
polars, so it stays fast with millions of users; ties get average ranks, which matches
scikit-learn's ``roc_auc_score``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl
from sklearn.metrics import log_loss as _sk_log_loss
from sklearn.metrics import roc_auc_score

__all__ = ["auc", "evaluate", "gauc", "logloss"]

ArrayLike = np.ndarray | Sequence[float] | pl.Series


def _as_arrays(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} values but y_score has {p.size}")
    if y.size == 0:
        raise ValueError("metrics need at least one sample; got an empty input")
    if np.isnan(p).any():
        raise ValueError(f"y_score holds {int(np.isnan(p).sum())} NaN values")
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise ValueError(
            f"labels must be 0 or 1; found {int(bad.sum())} other values, "
            f"e.g. {y[bad][:3].tolist()}"
        )
    return y, p


def auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve. NaN when only one class is present."""
    y, p = _as_arrays(y_true, y_score)
    if y.min() == y.max():
        return math.nan
    return float(roc_auc_score(y, p))


def logloss(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """Mean binary cross-entropy of probabilities (clipped by scikit-learn to avoid log(0))."""
    y, p = _as_arrays(y_true, y_prob)
    return float(_sk_log_loss(y, np.clip(p, 0.0, 1.0), labels=[0.0, 1.0]))


def gauc(y_true: ArrayLike, y_score: ArrayLike, groups: ArrayLike) -> float:
    """Group AUC: per-group AUC weighted by group size, over groups holding both classes.

    NaN when no group holds both classes.
    """
    y, p = _as_arrays(y_true, y_score)
    g = groups if isinstance(groups, pl.Series) else pl.Series(np.asarray(groups).ravel())
    if g.len() != y.size:
        raise ValueError(f"groups has {g.len()} values but y_true has {y.size}")
    df = pl.DataFrame({"g": g, "y": y, "p": p})
    per_group = (
        df.with_columns(pl.col("p").rank("average").over("g").alias("r"))
        .group_by("g", maintain_order=True)  # fixed order: a reproducible float sum
        .agg(
            n=pl.len(),
            pos=pl.col("y").sum(),
            rank_pos=(pl.col("r") * pl.col("y")).sum(),
        )
        .with_columns(neg=pl.col("n") - pl.col("pos"))
        .filter((pl.col("pos") > 0) & (pl.col("neg") > 0))
        .with_columns(
            auc=(pl.col("rank_pos") - pl.col("pos") * (pl.col("pos") + 1) / 2)
            / (pl.col("pos") * pl.col("neg"))
        )
    )
    if per_group.height == 0:
        return math.nan
    n = per_group["n"].cast(pl.Float64)
    return float((per_group["auc"] * n).sum() / n.sum())


def evaluate(
    y_true: ArrayLike, y_prob: ArrayLike, groups: ArrayLike | None = None
) -> dict[str, float]:
    """AUC, logloss and (when ``groups`` is given) gAUC, as a dict."""
    out = {"auc": auc(y_true, y_prob), "logloss": logloss(y_true, y_prob)}
    if groups is not None:
        out["gauc"] = gauc(y_true, y_prob, groups)
    return out
