"""The retraining loop: one function per stage, and the order they run in for a period.

The same functions back the ``reloop stage`` / ``reloop run`` commands, the ``dvc.yaml`` stages
and the Airflow tasks; there is no second copy of any stage's logic. Each takes the validated
:class:`~reloop.config.Params` and the period's start date, reads and writes only that period's
partitions, and returns a small JSON-ready dict (what Airflow passes through XCom).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["STAGES", "StageEvent", "run_ingest", "run_join", "run_period", "run_stage",
           "run_validate", "stage_listener"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageEvent:
    """One stage of one period finished: its result, or the error it raised."""

    stage: str
    period: dt.date
    seconds: float
    result: dict[str, Any] | None = None
    error: BaseException | None = None


_listeners: list[Callable[[StageEvent], None]] = []


@contextlib.contextmanager
def stage_listener(callback: Callable[[StageEvent], None]) -> Iterator[None]:
    """Call ``callback`` with a :class:`StageEvent` each time :func:`run_stage` finishes a stage
    in this process, while the ``with`` block runs (``reloop backfill``'s progress lines: the
    DAG's tasks run in-process there)."""
    _listeners.append(callback)
    try:
        yield
    finally:
        _listeners.remove(callback)


def _notify(event: StageEvent) -> None:
    for callback in list(_listeners):
        try:
            callback(event)
        except Exception:  # a display must never fail a stage
            log.exception("stage listener %r failed", callback)


def check_previous_decided(params: Params, start: dt.date) -> None:
    """Refuse to start period ``start`` while the previous period is started but not decided.

    Each period is served by, and warm-starts from, what the previous period promoted, so periods
    must run in order (``pipeline.sequential``). "Started": its joined table exists or, for the
    built-in world and replays, ingest wrote its impressions.
    """
    from reloop.data.join import joined_dir
    from reloop.data.logs.store import partition_dir
    from reloop.stages.promote import decision_path

    if not params.pipeline.sequential:
        return
    prev = start - dt.timedelta(days=params.logs.period_days)
    if decision_path(params, prev).is_file():
        return
    started = joined_dir(params, prev).exists() or (
        params.logs.source != "external"
        and partition_dir(params.logs.root, "impressions", prev).exists())
    if started:
        raise RuntimeError(
            f"the previous period {prev} has started but has no decision yet "
            f"({decision_path(params, prev)}); periods run in order, each from the model the one "
            f"before promoted. Finish (or rerun) period {prev} first; with `airflow backfill "
            "create` pass --max-active-runs 1; set pipeline.sequential: false to skip a period "
            "on purpose"
        )


def run_ingest(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Make the period's raw logs exist, served by the model promoted before the period."""
    from reloop.data.logs.store import as_date
    from reloop.registry import Registry
    from reloop.stages.ingest import ingest_period
    from reloop.stages.memory import SNAPSHOT_FILE

    start = as_date(start)
    check_previous_decided(params, start)
    production = Registry(params.pipeline.registry_root).production_before(start.isoformat())
    checkpoint = memory = None
    if production is not None:
        checkpoint = production.checkpoint_dir
        if production.memory_dir is not None and (production.memory_dir / SNAPSHOT_FILE).is_file():
            memory = production.memory_dir / SNAPSHOT_FILE
    out = ingest_period(params, start, checkpoint=checkpoint, memory=memory)
    impressions = [day.get("impressions") for day in out["days"]]
    return {"source": out["source"], "period_start": out["period_start"],
            "served_by": None if production is None else production.model_id,
            "impressions": sum(impressions) if None not in impressions else None}


def run_validate(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Validate the period's raw impressions and feedback; raises if any expectation fails."""
    from reloop.data.validate.run import validate_period

    result = validate_period(params, start)
    return {"success": result["success"], "partitions": len(result["partitions"])}


def run_join(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Join scores with labels, then validate the joined table."""
    from reloop.data.join import join_period
    from reloop.data.validate.run import validate_joined

    stats = join_period(params, start)
    validate_joined(params, start)
    return {"rows": stats.get("rows"), "ctr": stats.get("ctr")}


def _deferred(module: str, name: str) -> Callable[[Params, str | dt.date], dict[str, Any]]:
    """``module.name``, imported only when the stage runs (torch, GX, Evidently are heavy)."""

    def stage(params: Params, start: str | dt.date) -> dict[str, Any]:
        return getattr(importlib.import_module(module), name)(params, start)

    stage.__name__ = stage.__qualname__ = name
    stage.__doc__ = f"The stage: :func:`{module}.{name}`."
    return stage


#: Every stage, in the order a period runs them. ``archive`` (per-period DVC versioning) is not
#: a ``dvc.yaml`` stage: under ``dvc repro`` DVC itself versions the artefacts.
STAGES: dict[str, Callable[[Params, str | dt.date], dict[str, Any]]] = {
    "ingest": run_ingest,
    "validate": run_validate,
    "join": run_join,
    "drift": _deferred("reloop.data.drift", "drift_report"),
    "train": _deferred("reloop.stages.train", "run_train"),
    "memory": _deferred("reloop.stages.memory", "run_memory"),
    "evaluate": _deferred("reloop.stages.evaluate", "run_evaluate"),
    "promote": _deferred("reloop.stages.promote", "run_promote"),
    "archive": _deferred("reloop.archive", "archive_period"),
}


def run_stage(name: str, params: Params, start: str | dt.date) -> dict[str, Any]:
    """Run one stage by name, holding the workspace lock (:mod:`reloop.lock`).

    ``start`` must be a period start (weekly periods start on Mondays), else a ``ValueError``.
    The result is strict JSON (NaN and infinities become ``None``): the DAG's tasks return it as
    their XCom, which Airflow refuses to store otherwise (a warm start's ``best_val_auc`` is NaN,
    having no validation split).
    """
    from reloop.atomic import json_ready
    from reloop.data.logs.store import check_period_start
    from reloop.lock import workspace_lock
    from reloop.numerics import pin_numerics

    pin_numerics()  # the DAG's tasks and study workers: before the stage imports torch

    try:
        fn = STAGES[name]
    except KeyError:
        raise ValueError(f"stage={name!r} is not a stage; expected one of {list(STAGES)}") from None
    start = check_period_start(start, params.logs.period_days)
    if params.logs.source == "simulator":  # refused before the lock is taken
        from reloop.sources.world import check_horizon

        check_horizon(params.simulator, start + dt.timedelta(days=params.logs.period_days - 1))
    with workspace_lock(params.pipeline.lock_file, params.pipeline.lock_timeout_s,
                        what=f"stage {name}, period {start}"):
        log.info("stage %s, period %s", name, start)
        t0 = time.perf_counter()
        try:
            result = json_ready(fn(params, start))
        except BaseException as err:
            _notify(StageEvent(name, start, time.perf_counter() - t0, error=err))
            raise
        _notify(StageEvent(name, start, time.perf_counter() - t0, result=result))
        return result


def run_period(params: Params, start: str | dt.date) -> dict[str, dict[str, Any]]:
    """Run every stage of one period in order; stops at the first failure."""
    return {name: run_stage(name, params, start) for name in STAGES}
