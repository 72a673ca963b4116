"""The ``drift`` section of ``params.yaml``: Evidently drift reports."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, model_validator

from reloop.config.base import Section, Seed

__all__ = ["DriftConfig"]


class DriftConfig(Section):
    """* ``reference``: ``previous`` (the period before) or ``fixed`` (the baseline period starting
      at ``baseline_start``, ``baseline_days`` long).
    * ``exclude``: columns left out of feature drift (ids: per-value drift of millions of ids says
      nothing).
    * ``sample_rows``: rows sampled from each side (0 = all), seeded by ``seed``.
    * ``drift_share``: share of drifted columns at which Evidently calls the dataset drifted.
    * ``score_method`` / ``label_method``: Evidently stat tests for the score and the label; the
      summary reports their p-values.
    """


    out_root: str = "reports/drift"
    reference: Literal["previous", "fixed"] = "previous"
    baseline_start: dt.date | None = None
    baseline_days: int = Field(default=1, ge=1)
    exclude: tuple[str, ...] = ("user_id", "item_id")
    sample_rows: int = Field(default=50_000, ge=0)
    drift_share: float = Field(default=0.5, gt=0.0, le=1.0)
    score_method: str = "ks"
    label_method: str = "z"
    seed: Seed = 0

    @model_validator(mode="after")
    def _baseline(self) -> DriftConfig:
        if self.reference == "fixed" and self.baseline_start is None:
            raise ValueError("reference='fixed' needs baseline_start (YYYY-MM-DD)")
        return self
