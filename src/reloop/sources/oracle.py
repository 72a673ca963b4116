"""The oracle report: how well the logged scores and the true probabilities rank a period.

Only the built-in world has an oracle (``<logs.oracle_root>/oracle/date=D/``). The oracle AUC is
the AUC of the true click probabilities against the period's joined labels: the best any model
could reach on that period. Nothing else reads the oracle; training never does.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import polars as pl

from reloop.data.logs.store import scan_partitions
from reloop.periods import as_date, period_dates

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["oracle_report", "read_oracle"]


def read_oracle(params: Params, start: str | dt.date) -> pl.DataFrame:
    """The oracle rows (``request_id``, ``p_true``, ``p_random``, ``p_best``) of the period."""
    days = period_dates(start, params.logs.period_days)
    return scan_partitions(params.logs.oracle_root, "oracle", days).collect()


def oracle_report(
    params: Params, start: str | dt.date, table: pl.DataFrame | None = None
) -> dict[str, Any]:
    """AUC / gAUC / logloss of the true probability, the served score and the base score against
    the period's joined labels (``table`` defaults to the joined table of ``start``)."""
    from reloop.data.join import read_joined
    from reloop.learn.metrics import evaluate

    start = as_date(start)
    if table is None:
        table = read_joined(params, start)
    oracle = read_oracle(params, start)
    df = table.select("request_id", "user_id", "y", "score", "score_base").join(
        oracle, on="request_id", how="left"
    )
    missing = int(df["p_true"].null_count())
    if missing:
        raise ValueError(
            f"{missing} joined impressions of the period starting {start} have no oracle row"
        )
    y, users = df["y"].to_numpy(), df["user_id"].to_numpy()
    return {
        "period_start": start.isoformat(),
        "rows": df.height,
        "ctr": float(df["y"].mean()),
        # the online A/B metric of the ReLoop paper: mean true click probability of what was
        # shown, beside a random pick's and the oracle policy's on the same requests
        "ctr_expected": float(df["p_true"].mean()),
        "ctr_random_pick": float(df["p_random"].mean()),
        "ctr_oracle_policy": float(df["p_best"].mean()),
        "oracle": evaluate(y, df["p_true"].to_numpy(), users),
        "served": evaluate(y, df["score"].to_numpy(), users),
        "base": evaluate(y, df["score_base"].to_numpy(), users),
    }
