"""The ``train`` stage of one period: warm-start from production, fit, write the candidate."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from reloop.config import Params
from reloop.periods import candidate_dir

if TYPE_CHECKING:
    from reloop.learn.train import Checkpoint, TrainedModel

__all__ = ["TrainingWindow", "align_window", "fit_candidate", "fit_info", "period_splits", "run",
           "training_window"]

log = logging.getLogger(__name__)


def period_splits(params: Params, start: str | dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The period's joined table in time order, split into (fit part, held-out tail).

    The tail (``pipeline.holdout_fraction``) is what ``evaluate`` scores; nothing in ``train`` or
    ``memory`` reads it.
    """
    from reloop.data.join import read_joined
    from reloop.learn.data import split_tail

    table = read_joined(params, start)
    return split_tail(table, params.pipeline.holdout_fraction, time_column="event_time",
                      parameter="pipeline.holdout_fraction")


def _file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@dataclass(frozen=True)
class TrainingWindow:
    """What the period's candidate is fit on.

    * ``train``: the earlier periods of the window, whole (their held-out tails included: the
      freshest rows of a period are learned from one period later), then the current period's
      fit rows before its validation tail; in time order.
    * ``val``: the current period's validation tail (``train.val_fraction`` of its fit rows).
    * ``weight``: per ``train`` row, ``train.window_decay ** k`` for a row ``k`` periods old.
    * ``periods``: the period starts used, oldest first.
    """

    train: pl.DataFrame
    val: pl.DataFrame
    weight: np.ndarray | None
    periods: list[str]


def training_window(params: Params, start: str | dt.date) -> TrainingWindow:
    """The candidate's training rows for the period starting ``start`` (:class:`TrainingWindow`).

    The window holds the current period and up to ``train.window_periods - 1`` earlier periods
    whose joined tables exist and passed validation; it stops at the first without one (the
    start of the history, or a table the join stage's validation refused).
    """
    from reloop.data.join import has_joined, read_joined
    from reloop.learn.data import split_tail
    from reloop.periods import as_date

    start = as_date(start)
    cfg = params.train
    fit_part, _ = period_splits(params, start)
    current, val = split_tail(fit_part, cfg.val_fraction, time_column="event_time")
    parts, ages = [current], [0]
    for k in range(1, cfg.window_periods):
        earlier = start - dt.timedelta(days=k * params.logs.period_days)
        if not has_joined(params, earlier):
            break
        parts.insert(0, read_joined(params, earlier))
        ages.insert(0, k)
    periods = [(start - dt.timedelta(days=k * params.logs.period_days)).isoformat()
               for k in ages]
    if len(parts) > 1:
        parts = align_window(params, parts, periods)
        current, val = parts[-1], val.select(parts[-1].columns).cast(parts[-1].schema)
    train = pl.concat(parts, how="vertical") if len(parts) > 1 else current
    weight = None
    if cfg.window_decay != 1.0 and len(parts) > 1:
        weight = np.concatenate([np.full(p.height, cfg.window_decay ** k, dtype=np.float32)
                                 for p, k in zip(parts, ages, strict=True)])
    return TrainingWindow(train, val, weight, periods)


def align_window(params: Params, parts: list[pl.DataFrame],
                 periods: list[str]) -> list[pl.DataFrame]:
    """The window's joined tables (oldest first) in the columns the loop reads and one type per
    column, or a ``ValueError`` naming the column, its types and the periods.

    Columns beyond the configured ones (``validate.allow_extra_columns``) are left out: a period
    may add or drop one. A field whose logs changed type keeps its meaning where the model sees
    the same thing: a categorical field is hashed as text, so integers and strings become text
    (``3`` and ``"3"`` are one value); a numeric field becomes Float64; the loop's own columns
    take a type that holds every period's values (times in ns and us: us). Anything else (a
    boolean field that became integers: ``true`` and ``1`` hash apart) is refused.
    """
    from reloop.config.features import CategoricalField
    from reloop.data.logs.store import reconcile_types
    from reloop.data.validate.suites import joined_columns

    fields = {f.name: f for f in params.features.fields}
    names = [c.name for c in joined_columns(params) if c.name in parts[-1].columns]
    for part, period in zip(parts, periods, strict=True):
        missing = [c for c in names if c not in part.columns]
        if missing:
            raise ValueError(f"the joined table of period {period} lacks {missing}, which the "
                             f"table of {periods[-1]} has: train.window_periods spans both")
    parts = [p.select(names) for p in parts]
    casts: dict[str, pl.DataType] = {}
    for name in names:
        types = {p.schema[name] for p in parts}
        if len(types) == 1:
            continue
        field = fields.get(name)
        if isinstance(field, CategoricalField) and not any(t.is_float() for t in types) and (
                pl.Boolean not in types):
            casts[name] = pl.String
        elif field is not None and not isinstance(field, CategoricalField) and all(
                t.is_numeric() for t in types):
            casts[name] = pl.Float64
        elif field is None and (common := reconcile_types(*types)) is not None:
            # the loop's own columns: times in ns and us, say
            casts[name] = common
        else:
            seen = ", ".join(f"{p.schema[name]} in {period}" for p, period in
                             zip(parts, periods, strict=True))
            raise ValueError(
                f"column {name!r} changed type within the training window ({seen}): the "
                f"model would read its values as other values; write it with one type (reloop "
                f"never rewrites raw logs), or set train.window_periods to 1 until the window "
                f"holds only the new type")
    return [p.with_columns(pl.col(n).cast(t) for n, t in casts.items()) for p in parts]


def fit_candidate(
    params: Params, window: TrainingWindow, incumbent: Checkpoint | None
) -> tuple[TrainedModel, pl.DataFrame, pl.DataFrame | None]:
    """Fit a candidate on ``window``: cold, or warm-started from ``incumbent``.

    A cold start early-stops on the window's validation tail. A warm start does too, unless
    ``train.warm_epochs`` is set: then it trains that many epochs on every fit row, validation
    tail included (weight 1, like the current period's rows), or ``train.warm_max_steps``
    optimizer steps if that comes first. Returns the trained model and the rows it was fit and
    early-stopped on (``None``: no early stopping).
    """
    from reloop.learn.train import train_model

    train_df, val_df, weight = window.train, window.val, window.weight
    max_epochs = max_steps = None
    if incumbent is not None and params.train.warm_epochs is not None:
        train_df = pl.concat([window.train, window.val], how="vertical")
        if weight is not None:
            weight = np.concatenate([weight, np.ones(window.val.height, dtype=np.float32)])
        val_df, max_epochs = None, params.train.warm_epochs
        max_steps = params.train.warm_max_steps
    trained = train_model(params, train_df, val_df, init_from=incumbent, weight=weight,
                          max_epochs=max_epochs, max_steps=max_steps)
    return trained, train_df, val_df


def fit_info(params: Params, trained: TrainedModel, train_df: pl.DataFrame,
             val_df: pl.DataFrame | None) -> dict[str, Any]:
    """What a checkpoint records of its fit: the train section, the epochs (without their
    wall-clock seconds, so a rerun on the same data writes a byte-identical checkpoint), the best
    epoch and the rows."""
    return {
        "train": params.train.model_dump(mode="json"),
        "history": [{k: v for k, v in r.items() if k != "seconds"}
                    for r in trained.result.history],
        "best_epoch": trained.result.best_epoch,
        "best_val_auc": trained.result.best_val_auc,
        "rows": {"train": train_df.height, "val": 0 if val_df is None else val_df.height},
    }


def run(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Train the candidate for the period starting at ``start`` and write its checkpoint.

    Warm-starts from the production model when ``train.warm_start`` and one exists (cold start on
    the first period); :func:`fit_candidate` says how each is fit. Deterministic given the data
    and ``train.seed``, so a rerun writes a byte-identical checkpoint (wall-clock timings are
    logged, never stored).
    """
    from reloop.atomic import sweep_leftovers
    from reloop.data.join import TABLE_FILE
    from reloop.learn.train import load_checkpoint, save_checkpoint
    from reloop.periods import as_date, joined_dir
    from reloop.registry import Registry

    start = as_date(start)
    window = training_window(params, start)
    production = Registry(params.pipeline.registry_root).production_before(start.isoformat())
    incumbent = None
    if production is not None and params.train.warm_start:
        incumbent = load_checkpoint(production.checkpoint_dir, params.features)
    trained, train_df, val_df = fit_candidate(params, window, incumbent)
    info = fit_info(params, trained, train_df, val_df)
    log.info("trained %s epochs (%d steps) on %d rows (%s) in %.1fs", len(info["history"]),
             trained.result.steps, train_df.height, ", ".join(window.periods),
             trained.result.train_seconds)
    _, holdout = period_splits(params, start)
    table_file = joined_dir(params, start) / TABLE_FILE
    sweep_leftovers(candidate_dir(params, start))  # of a killed train (we hold the lock)
    ckpt = save_checkpoint(
        candidate_dir(params, start),
        trained.model,
        params.model,
        trained.encoder,
        parent_id=trained.parent_id,
        info={
            "period": start.isoformat(),
            **info,
            "rows": {**info["rows"], "holdout": holdout.height},
            "window": window.periods,
            "data": {"joined_sha256": _file_sha256(table_file)},
        },
        overwrite=True,
    )
    return {
        "checkpoint": str(ckpt.path),
        "model_id": ckpt.model_id,
        "parent_id": ckpt.parent_id,
        "best_val_auc": trained.result.best_val_auc,
        "rows": train_df.height,
        "epochs": len(info["history"]),
    }
