"""The training-table contract: polars frame in, checked tensors out.

A training table has the configured feature columns, the label column (``features.label``,
default ``y``, values 0/1) and, for losses that need it (``kd``, ``reloop``), the previous
model's probability for the same impression (``features.y_last``, default ``y_last``). Bad input
raises :class:`TrainingDataError` naming the column and how many rows are wrong; no row is ever
dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from reloop.config import FeaturesConfig
from reloop.data.logs.schema import BOOTSTRAP_VERSION
from reloop.learn.features import EncodedFeatures, FeatureEncoder

__all__ = [
    "TrainingData",
    "TrainingDataError",
    "check_validation_split",
    "split_tail",
    "to_training_data",
]


class TrainingDataError(ValueError):
    """The training table is missing a column or holds invalid values; the message names it."""


@dataclass(frozen=True)
class TrainingData:
    """Tensors for one table: encoded features, labels and (optionally) ``y_last``."""

    features: EncodedFeatures
    y: torch.Tensor
    y_last: torch.Tensor | None = None
    groups: np.ndarray | None = None  # user ids, for gAUC
    #: 0 where ``y_last`` is not a model's prediction (bootstrap policy): the loss's extra term
    #: is dropped on those rows (see :mod:`reloop.learn.losses`)
    mask: torch.Tensor | None = None
    #: per-row loss weight (recency weighting of a sliding window)
    weight: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.y.shape[0]

    def take(self, rows: torch.Tensor | slice) -> TrainingData:
        def pick(t):
            return None if t is None else t[rows]

        return TrainingData(
            self.features.take(rows), self.y[rows], pick(self.y_last), pick(self.groups),
            pick(self.mask), pick(self.weight),
        )


def _labels(df: pl.DataFrame, column: str) -> torch.Tensor:
    if column not in df.columns:
        raise TrainingDataError(
            f"label column {column!r} is missing; columns present: {df.columns}"
        )
    col = df.get_column(column)
    if not (col.dtype.is_numeric() or col.dtype == pl.Boolean):
        raise TrainingDataError(f"label column {column!r} must be numeric 0/1, got {col.dtype}")
    y = col.cast(pl.Float64)
    bad = y.is_null() | ~y.is_in([0.0, 1.0])
    n_bad = int(bad.sum())
    if n_bad:
        examples = col.filter(bad).head(3).to_list()
        raise TrainingDataError(
            f"label column {column!r} must hold only 0 and 1; {n_bad} rows hold other values, "
            f"e.g. {examples}"
        )
    return torch.from_numpy(y.cast(pl.Float32).to_numpy(writable=True))


def _y_last(df: pl.DataFrame, column: str, loss: str) -> torch.Tensor:
    if column not in df.columns:
        raise TrainingDataError(
            f"column {column!r} is missing; loss={loss!r} needs the previous model's probability "
            "for every impression"
        )
    col = df.get_column(column)
    if not col.dtype.is_numeric():
        raise TrainingDataError(f"column {column!r} must be a probability, got {col.dtype}")
    p = col.cast(pl.Float64)
    n_null = int((p.is_null() | p.is_nan()).sum())
    if n_null:
        raise TrainingDataError(f"column {column!r} holds {n_null} null or NaN values")
    n_out = int(((p < 0.0) | (p > 1.0)).sum())
    if n_out:
        raise TrainingDataError(
            f"column {column!r} must hold probabilities in [0, 1]; {n_out} rows are outside, "
            f"e.g. {p.filter((p < 0.0) | (p > 1.0)).head(3).to_list()}"
        )
    return torch.from_numpy(p.cast(pl.Float32).to_numpy(writable=True))


def to_training_data(
    df: pl.DataFrame,
    encoder: FeatureEncoder,
    features: FeaturesConfig,
    *,
    need_y_last: bool,
    loss: str = "reloop",
    mask_bootstrap: bool = False,
    weight: np.ndarray | None = None,
) -> TrainingData:
    """Check ``df`` and turn it into tensors for :func:`reloop.learn.trainer.fit`.

    ``mask_bootstrap`` (with ``y_last``): rows whose logged ``model_version`` is the bootstrap
    policy's get mask 0, because their ``y_last`` is a constant prior, not a model's prediction.
    ``weight``: one non-negative loss weight per row.
    """
    if df.height == 0:
        raise TrainingDataError("the training table is empty")
    y = _labels(df, features.label)
    y_last = _y_last(df, features.y_last, loss) if need_y_last else None
    groups = (
        df.get_column(features.user_field).to_numpy() if features.user_field in df.columns else None
    )
    mask = None
    if need_y_last and mask_bootstrap and "model_version" in df.columns:
        served_by_model = df.get_column("model_version") != BOOTSTRAP_VERSION
        if not served_by_model.all():
            mask = torch.from_numpy(served_by_model.cast(pl.Float32).to_numpy(writable=True))
    w = None
    if weight is not None:
        weight = np.asarray(weight, dtype=np.float32)
        if weight.shape != (df.height,):
            raise TrainingDataError(
                f"weight has shape {weight.shape}; expected one weight per row ({df.height},)"
            )
        if not np.all(np.isfinite(weight)) or (weight < 0).any():
            raise TrainingDataError("weight must hold finite values >= 0")
        w = torch.from_numpy(weight.copy())
    return TrainingData(encoder.encode(df), y, y_last, groups, mask, w)


def check_validation_split(val: TrainingData, fraction: float) -> None:
    """Refuse a validation split that lacks a class: its AUC, on which training early-stops
    and which it reports, would be NaN. The message gives the split's size and class counts."""
    positives = int((val.y > 0.5).sum())
    negatives = len(val) - positives
    if positives and negatives:
        return
    rows = "1 row" if len(val) == 1 else f"{len(val)} rows"
    raise TrainingDataError(
        f"the validation split (last {fraction * 100:g}% = {rows}) holds {positives} "
        f"positive(s) and {negatives} negative(s); early stopping needs both: give more data "
        "or a larger train.val_fraction"
    )


def split_tail(
    df: pl.DataFrame, fraction: float, time_column: str | None = "event_time",
    parameter: str = "train.val_fraction",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split off the last ``fraction`` of rows (``parameter`` names the setting, for errors),
    e.g. the validation tail (``train.val_fraction``) or evaluate's holdout
    (``pipeline.holdout_fraction``).

    Rows are ordered by ``time_column`` when the frame has it (a stable sort, so ties keep their
    order), else kept in their given order. Holding out the most recent rows matches how the
    model is used: trained on the past, serving the future.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{parameter}={fraction!r} must be in (0, 1)")
    if time_column is not None and time_column in df.columns:
        df = df.sort(time_column, maintain_order=True)
    n_val = max(1, int(round(df.height * fraction)))
    if n_val >= df.height:
        raise TrainingDataError(
            f"cannot hold out {parameter}={fraction:g} of {df.height} rows and keep any to fit "
            "on: the table is too small"
        )
    return df.head(df.height - n_val), df.tail(n_val)
