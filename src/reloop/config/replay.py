"""The ``replay`` section of ``params.yaml``: a public dataset replayed as logs."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field

from reloop.config.base import Section

__all__ = ['DATASETS', 'ReplayConfig']


#: Public datasets the replay can convert.
DATASETS = ("movielens-100k", "movielens-1m", "movietweetings", "avazu", "criteo")


class ReplayConfig(Section):
    """Public-dataset replay.

    * ``dataset``: which converter's output the ``replay`` source serves.
    * ``root``: converted events, ``<root>/<dataset>/events/date=YYYY-MM-DD/``.
    * ``downloads``: where ``reloop replay download`` puts the archives.
    * ``start``: the date the first pseudo-day of a dataset without real dates (Criteo) maps to.
    * ``criteo_rows_per_day``: rows per pseudo-day in file order (Kaggle ``train.txt``:
      45,840,617 rows over 7 days).
    * ``min_rating``: a MovieLens rating (1-5) >= this is a click.
    * ``movietweetings_min_rating``: a MovieTweetings rating (0-10) >= this is a click (8: about
      half of the 100K snapshot's ratings).
    * ``slot_minutes``: serving slots; labels become known (and enter the memory) between slots.
    """


    dataset: Literal["movielens-100k", "movielens-1m", "movietweetings", "avazu",
                     "criteo"] = "movielens-100k"
    root: str = "data/replay"
    downloads: str = "data/downloads"
    start: dt.date = dt.date(2026, 1, 1)
    criteo_rows_per_day: int = Field(default=6_548_660, ge=1)
    min_rating: int = Field(default=4, ge=1, le=5)
    movietweetings_min_rating: int = Field(default=8, ge=1, le=10)
    slot_minutes: int = Field(default=60, ge=1, le=1440)
