"""The ``validate`` section of ``params.yaml``: Great Expectations thresholds."""

from __future__ import annotations

from pydantic import Field, model_validator

from reloop.config.base import Section

__all__ = ["ValidateConfig"]


class ValidateConfig(Section):
    """Thresholds of the expectation suites (``docs/data.md`` lists every expectation).

    * ``out_root``: ``<out_root>/date=YYYY-MM-DD/<table>.json`` plus its HTML page.
    * ``min_rows`` / ``max_rows``: impressions per daily partition (an empty day fails, except
      a replay's day without events);
      ``max_feedback_rows`` bounds a feedback partition.
    * ``max_duplicate_fraction``: share of impression rows whose ``request_id`` repeats that is
      tolerated (the join resolves and counts them); above it the partition is quarantined.
    * ``allow_extra_columns``: accept columns the schema does not name.
    * ``ctr_min`` / ``ctr_max``: absolute bounds on the joined table's CTR.
    * ``ctr_history`` / ``ctr_tolerance``: the CTR must also lie within
      ``mean * (1 -/+ ctr_tolerance)`` of the mean CTR of up to ``ctr_history`` recent periods
      (from their join stats), when any exist.
    * ``data_docs``: write each result's HTML page beside its JSON (``<table>.html``; the
      joined table's ``validation.html``): every expectation, its column, arguments, success
      and observed value, failures highlighted; self-contained, so it renders offline
      (:mod:`reloop.data.validate.page`). GX's own Data Docs are not built.
    """


    out_root: str = "reports/validation"
    min_rows: int = Field(default=1, ge=0)
    max_rows: int = Field(default=100_000_000, ge=1)
    max_feedback_rows: int = Field(default=100_000_000, ge=1)
    max_duplicate_fraction: float = Field(default=0.001, ge=0.0, le=1.0)
    allow_extra_columns: bool = False
    ctr_min: float = Field(default=0.0001, ge=0.0, le=1.0)
    ctr_max: float = Field(default=0.5, ge=0.0, le=1.0)
    ctr_history: int = Field(default=7, ge=0)
    ctr_tolerance: float = Field(default=0.8, gt=0.0)  # model-served days beat bootstrap CTR ~60%
    data_docs: bool = True

    @model_validator(mode="after")
    def _bounds(self) -> ValidateConfig:
        if self.min_rows > self.max_rows:
            raise ValueError(f"min_rows={self.min_rows} exceeds max_rows={self.max_rows}")
        if self.ctr_min > self.ctr_max:
            raise ValueError(f"ctr_min={self.ctr_min} exceeds ctr_max={self.ctr_max}")
        return self
