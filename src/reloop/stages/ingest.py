"""The ``ingest`` stage: make day D's raw logs exist, whatever the source.

* ``logs.source: simulator``: simulate the period's days with the built-in world, served by the
  given production checkpoint and memory snapshot (none: the bootstrap policy).
* ``logs.source: replay``: replay the period's days of the converted public dataset, served the
  same way.
* ``logs.source: external``: your own logs; check that every impressions and feedback partition
  of the period has arrived (and is readable), and report their files. With ``logs.require_seal``
  every day must be sealed by its producer and agree with its seal (:mod:`reloop.data.logs.seal`):
  ingest refuses an unsealed day instead of waiting for it.

The same function backs ``reloop ingest``, the DVC stage and the Airflow task.

A period's ingest is all or nothing: everything that can be checked is checked for every day of
the period before anything is written (the start is a period start, i.e. a Monday for weekly
periods; the simulator's days are not before ``simulator.start``; the replay's days lie in the
converted range). Raw logs are append-only and a rerun rewrites identical content as a no-op, so
a period that still fails part-way (e.g. a full disk) completes on a rerun. A period whose every
day is already sealed is not served again: its logs are what was served, and are kept (a rerun
after a change to ``memory`` or ``simulator`` settings, e.g. a ``dvc exp run``, used to serve
the days again and then refuse the different logs).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reloop.data.logs.seal import check_period_sealed
from reloop.data.logs.store import check_readable, part_files
from reloop.periods import check_period_start, date_part, period_dates

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["ingest_period", "run"]

log = logging.getLogger(__name__)


def run(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Make the period's raw logs exist, served by the model promoted before the period."""
    from reloop.periods import SNAPSHOT_FILE, as_date
    from reloop.registry import Registry

    start = as_date(start)
    production = Registry(params.pipeline.registry_root).production_before(start.isoformat())
    checkpoint = memory = None
    if production is not None:
        checkpoint = production.checkpoint_dir
        if production.memory_dir is not None and (production.memory_dir / SNAPSHOT_FILE).is_file():
            memory = production.memory_dir / SNAPSHOT_FILE
    out = ingest_period(params, start, checkpoint=checkpoint, memory=memory)
    # the stage's declared outputs exist whatever the source (dvc repro refuses a missing one);
    # only the built-in world writes true click probabilities into the oracle folder
    Path(params.logs.oracle_root).mkdir(parents=True, exist_ok=True)
    impressions = [day.get("impressions") for day in out["days"]]
    return {"source": out["source"], "period_start": out["period_start"],
            "served_by": None if production is None else production.model_id,
            "impressions": sum(impressions) if None not in impressions else None}


def ingest_period(
    params: Params,
    start: str | dt.date,
    *,
    checkpoint: str | Path | None = None,
    memory: str | Path | None = None,
    memory_out: str | Path | None = None,
) -> dict[str, Any]:
    """Ingest the period starting ``start``; returns a JSON-ready summary (one entry per day).

    ``memory_out`` saves the serving memory after the period (simulator and replay only): the
    state the incumbent keeps serving with if no new model is promoted.
    """
    days = period_dates(check_period_start(start, params.logs.period_days),
                        params.logs.period_days)
    source = params.logs.source
    if source == "external":
        if checkpoint is not None or memory is not None:
            log.info("logs.source is external: the checkpoint and memory are not used by ingest")
        return {"source": source, "period_start": days[0].isoformat(),
                "days": _logged_days(params, days)}

    from reloop.periods import seal_path
    from reloop.serving.scorer import load_scorer

    _check_days(params, days)  # before anything is written
    scorer = load_scorer(params, checkpoint, memory)  # verified even when not needed below
    if (memory_out is None and params.logs.require_seal
            and all(seal_path(params.logs.root, day).is_file() for day in days)):
        # every day was served and sealed: the logs are facts, not re-served (a changed
        # memory.* or simulator.* setting applies from the next day not yet logged)
        log.info("period %s: every day is logged and sealed; its logs are kept as they are",
                 days[0])
        return {"source": source, "period_start": days[0].isoformat(), "kept": True,
                "model_version": scorer.model_version, "days": _logged_days(params, days)}
    if source == "simulator":
        from reloop.sources.simulator import simulate_day

        out = [simulate_day(params, day, scorer) for day in days]
    else:
        from reloop.sources.replay import replay_day

        out = [replay_day(params, day, scorer) for day in days]
    summary: dict[str, Any] = {"source": source, "period_start": days[0].isoformat(),
                               "model_version": scorer.model_version, "days": out}
    if memory_out is not None:
        saved = scorer.save_memory(memory_out)
        summary["memory_out"] = None if saved is None else str(saved)
    return summary


def _logged_days(params: Params, days: list[dt.date]) -> list[dict[str, Any]]:
    """Each day's impressions and files, as logged. With ``logs.require_seal`` every day must
    be sealed and agree with its seal (else an error naming it)."""
    import pyarrow.parquet as pq

    sealed = None
    if params.logs.require_seal:  # refuses an unsealed day or one that disagrees with its seal
        sealed = check_period_sealed(params.logs.root, days, params.join.window_minutes)
    out = []
    for day in days:
        if sealed is not None:
            shown = [f for f in sealed.impressions if f.parent.name == date_part(day)]
            clicks = [f for f in sealed.feedback if f.parent.name == date_part(day)]
        else:
            shown = part_files(params.logs.root, "impressions", day)
            clicks = part_files(params.logs.root, "feedback", day)
        check_readable(shown + clicks)
        out.append({"date": day.isoformat(),
                    "impressions": sum(pq.ParquetFile(f).metadata.num_rows for f in shown),
                    "files": [str(f) for f in shown + clicks]})
    return out


def _check_days(params: Params, days: list[dt.date]) -> None:
    """Raise, naming the day, if a day of the period cannot be simulated or replayed."""
    if params.logs.source == "simulator":
        from reloop.sources.world import day_index

        for day in days:
            day_index(params.simulator, day)
    else:
        from reloop.sources.replay import check_replay_days

        check_replay_days(params, days)
