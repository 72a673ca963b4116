"""The ``train`` stage of one period: warm-start from production, fit, write the candidate."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from pathlib import Path
from typing import Any

import polars as pl

from reloop.config import Params

__all__ = ["candidate_dir", "period_splits", "run_train"]

log = logging.getLogger(__name__)


def candidate_dir(params: Params, start: str | dt.date) -> Path:
    from reloop.logs.store import as_date

    return Path(params.pipeline.models_root) / f"date={as_date(start).isoformat()}"


def period_splits(params: Params, start: str | dt.date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The period's joined table in time order, split into (fit part, held-out tail).

    The tail (``pipeline.holdout_fraction``) is what ``evaluate`` scores; nothing in ``train`` or
    ``memory`` reads it.
    """
    from reloop.join.join import read_joined
    from reloop.train.data import split_tail

    table = read_joined(params, start)
    return split_tail(table, params.pipeline.holdout_fraction, time_column="event_time")


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_train(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Train the candidate for the period starting at ``start`` and write its checkpoint.

    Warm-starts from the production model when ``train.warm_start`` and one exists (cold start on
    the first period). Deterministic given the data and ``train.seed``, so a rerun writes a
    byte-identical checkpoint (wall-clock timings are logged, never stored).
    """
    from reloop.join.join import joined_dir
    from reloop.logs.store import as_date
    from reloop.registry import Registry
    from reloop.train import load_checkpoint, save_checkpoint, split_tail, train_model

    start = as_date(start)
    fit_part, holdout = period_splits(params, start)
    train_df, val_df = split_tail(fit_part, params.train.val_fraction, time_column="event_time")
    production = Registry(params.pipeline.registry_root).production_before(start.isoformat())
    incumbent = None
    if production is not None and params.train.warm_start:
        incumbent = load_checkpoint(production.checkpoint_dir, params.features)
    trained = train_model(params, train_df, val_df, init_from=incumbent)
    history = [{k: v for k, v in r.items() if k != "seconds"} for r in trained.result.history]
    log.info("trained %s epochs in %.1fs", len(history), trained.result.train_seconds)
    table_file = joined_dir(params, start) / "train.parquet"
    ckpt = save_checkpoint(
        candidate_dir(params, start),
        trained.model,
        params.model,
        trained.encoder,
        parent_id=trained.parent_id,
        info={
            "period": start.isoformat(),
            "train": params.train.model_dump(mode="json"),
            "history": history,
            "best_epoch": trained.result.best_epoch,
            "best_val_auc": trained.result.best_val_auc,
            "rows": {"train": train_df.height, "val": val_df.height, "holdout": holdout.height},
            "data": {"joined_sha256": _file_sha256(table_file)},
        },
        overwrite=True,
    )
    return {
        "checkpoint": str(ckpt.path),
        "model_id": ckpt.model_id,
        "parent_id": ckpt.parent_id,
        "best_val_auc": trained.result.best_val_auc,
    }
