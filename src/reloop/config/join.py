"""The ``join`` section of ``params.yaml``: how logged scores meet their labels."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reloop.config.base import Section

__all__ = ["JoinConfig"]


class JoinConfig(Section):
    """* ``window_minutes``: attribution window; a click counts for an impression when it arrives
      within this long after it (inclusive). It may reach into the next day's feedback partition.
      The built-in world's online memory writes use the same window.
    * ``y_last``: which logged score becomes the training table's ``y_last``: ``score`` (served,
      after compensation) or ``score_base`` (the base model's).
    * ``out_root``: joined tables, ``<out_root>/date=YYYY-MM-DD/{train.parquet,stats.json}``.
    * ``allow_missing_next_feedback``: join even when the next day's feedback partition (which the
      window reaches into) has not arrived; the stats then say the labels may be incomplete.
    """


    window_minutes: float = Field(default=60.0, ge=0.0, le=1440.0)
    y_last: Literal["score", "score_base"] = "score"
    out_root: str = "data/joined"
    allow_missing_next_feedback: bool = False
