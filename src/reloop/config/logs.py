"""The ``logs`` section of ``params.yaml``: where raw logs live and how long a period is.

Kept free of heavy imports and of :mod:`reloop.config` so the root config can import it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reloop.config.base import Section

__all__ = ["LogsConfig"]


class LogsConfig(Section):
    """Locations of the raw logs and derived records, and the period length.

    * ``root``: raw ``impressions/`` and ``feedback/`` partitions (append-only).
    * ``oracle_root``: the built-in world's true click probabilities, one partition per day.
      Only the oracle-AUC report reads it; training never does.
    * ``quarantine_root``: one JSON record per quarantined partition (raw data stays in place).
    * ``source``: where day D's logs come from: ``simulator`` (the built-in world), ``replay``
      (a converted public dataset, scored by the production model at replay time) or
      ``external`` (your own logs; ingest only checks that the partitions arrived).
    * ``period_days``: days per period (1 = daily, 7 = weekly). A period starting on date D reads
      the daily partitions D .. D + period_days - 1.
    * ``require_seal``: readers (ingest of ``external`` logs, validation, the join) use only
      sealed days (:mod:`reloop.data.logs.seal`) and refuse an unsealed one with an error naming it.
      ``false`` reads whatever part files are present (a producer may still be writing them).
    """


    root: str = "data/logs"
    oracle_root: str = "data/world"
    quarantine_root: str = "data/quarantine"
    source: Literal["simulator", "replay", "external"] = "simulator"
    period_days: int = Field(default=1, ge=1, le=31)
    require_seal: bool = True
