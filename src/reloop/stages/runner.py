"""The stage runner: every front end runs a stage through :func:`run_stage`.

``reloop stage`` / ``reloop run``, the data commands (``reloop ingest``, ``validate``, ``join``),
the ``dvc.yaml`` stages, the Airflow tasks and ``reloop study`` all call :func:`run_stage`, which
checks the period start, takes the workspace lock (:mod:`reloop.lock`), refuses a period whose
predecessor is undecided, and calls ``reloop.stages.<name>.run(params, start)``.
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

from reloop.stages.graph import STAGE_NAMES

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["STAGES", "PeriodOrderError", "StageEvent", "check_previous_decided", "check_start",
           "period_workspace", "run_period", "run_stage", "stage_listener"]

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


class PeriodOrderError(ValueError):
    """A period asked for out of order: its previous period is undecided, skipped or failed.

    A ``ValueError``: the same request fails the same way until the previous period is run, so
    the DAG fails the task at once rather than retrying it
    (:func:`reloop.ops.airflow.run_stage_task`)."""


def check_previous_decided(params: Params, start: dt.date) -> None:
    """Refuse to start period ``start`` unless the previous period is decided.

    Each period is served by, and warm-starts from, what the previous period promoted, so periods
    must run in order (``pipeline.sequential``). Refused: the previous period is started but not
    decided ("started": its joined table exists or, for the built-in world and replays, ingest
    wrote its impressions), or it never ran although an earlier period is decided (a skipped
    period could not be run later: the days after it are sealed). The first period of a
    workspace may start on any period start. Whatever ``pipeline.sequential`` says, a period
    that overlaps a decided one (periods of 3 or 14 days have no fixed phase; a run out of step
    would train on days twice) is refused, naming the nearest start in step. Every refusal is a
    :class:`PeriodOrderError`.
    """
    from reloop.data.logs.store import partition_dir
    from reloop.periods import DECISION_FILE, dated_dirs, decision_path, joined_dir

    days = params.logs.period_days
    for other, _ in dated_dirs(params.pipeline.decisions_root, DECISION_FILE):
        if other != start and abs((other - start).days) < days:  # sequential or not
            aligned = other + dt.timedelta(days=round((start - other).days / days) * days)
            raise PeriodOrderError(
                f"period {start} overlaps period {other}, which is decided: periods of "
                f"logs.period_days={days} follow each other without overlap, from {other} on "
                f"(the nearest start is {aligned})")
    if not params.pipeline.sequential:
        return
    prev = start - dt.timedelta(days=days)
    if decision_path(params, prev).is_file():
        return
    started = joined_dir(params, prev).exists() or (
        params.logs.source != "external"
        and partition_dir(params.logs.root, "impressions", prev).exists())
    if started:
        raise PeriodOrderError(
            f"the previous period {prev} has started but has no decision yet "
            f"({decision_path(params, prev)}); periods run in order, each from the model the one "
            f"before promoted. Finish (or rerun) period {prev} first; with `airflow backfill "
            "create` pass --max-active-runs 1; set pipeline.sequential: false to skip a period "
            "on purpose"
        )
    decided = [d for d, _ in dated_dirs(params.pipeline.decisions_root, DECISION_FILE) if d < prev]
    quarantined = _quarantine_records(params, prev)
    if decided and quarantined:
        raise PeriodOrderError(
            f"the previous period {prev} failed validation (quarantined: "
            f"{', '.join(quarantined)}) and has no decision; periods run in order, each from the "
            f"model the one before promoted. Fix its logs (or validate.* thresholds) and rerun "
            f"{prev} (`reloop run --date {prev}`); set pipeline.sequential: false to skip a "
            "period on purpose"
        )
    if decided:
        raise PeriodOrderError(
            f"the previous period {prev} was never run, and period {decided[-1]} is decided: "
            f"periods run in order, each from the model the one before promoted. Run {prev} "
            f"first (`reloop run --date {prev}`, or `reloop backfill` over the gap); set "
            "pipeline.sequential: false to skip a period on purpose"
        )




def _quarantine_records(params: Params, start: dt.date) -> list[str]:
    """The quarantine records of the partitions the period reads: its days' impressions and
    feedback, and the next day's feedback (its clicks' attribution window reaches into it)."""
    from reloop.periods import period_dates, quarantine_path

    days = period_dates(start, params.logs.period_days)
    reads = [(t, d) for d in days for t in ("impressions", "feedback")]
    reads.append(("feedback", days[-1] + dt.timedelta(days=1)))
    return [str(path) for table, day in reads
            if (path := quarantine_path(params.logs.quarantine_root, table, day)).is_file()]


def _stage(name: str) -> Callable[[Params, str | dt.date], dict[str, Any]]:
    """``reloop.stages.<name>.run``, imported only when the stage runs (torch, GX and Evidently
    are heavy; the DAG file imports this table)."""

    def stage(params: Params, start: str | dt.date) -> dict[str, Any]:
        return importlib.import_module(f"reloop.stages.{name}").run(params, start)

    stage.__name__ = stage.__qualname__ = name
    stage.__doc__ = f"The {name} stage: :func:`reloop.stages.{name}.run`."
    return stage


#: Every stage, in the order a period runs them (:data:`reloop.stages.graph.STAGE_GRAPH`).
STAGES: dict[str, Callable[[Params, str | dt.date], dict[str, Any]]] = {
    name: _stage(name) for name in STAGE_NAMES
}
def check_start(params: Params, start: str | dt.date, what: str = "period start") -> dt.date:
    """:func:`reloop.periods.check_period_start` for the workspace's ``logs.period_days``; for
    the built-in world a bad Monday's suggestion is never before ``simulator.start``."""
    from reloop.periods import check_period_start

    return check_period_start(start, params.logs.period_days, what, earliest=(
        params.simulator.start if params.logs.source == "simulator" else None))


@contextlib.contextmanager
def period_workspace(params: Params, start: str | dt.date, what: str) -> Iterator[dt.date]:
    """Check that ``start`` is a period start (and, for the built-in world, inside its horizon),
    then hold the workspace lock (:mod:`reloop.lock`) while the block runs; yields the start.

    :func:`run_stage` runs every stage inside it; the data commands that call a library function
    with options of their own (``reloop ingest --checkpoint``, ``reloop validate --table``,
    ``reloop simulate``) run inside it too, so no front end writes beside a running stage.
    """
    from reloop.lock import workspace_lock

    start = check_start(params, start)
    if params.logs.source == "simulator":  # refused before the lock is taken
        from reloop.sources.world import check_horizon

        check_horizon(params.simulator, start + dt.timedelta(days=params.logs.period_days - 1))
    with workspace_lock(params.pipeline.lock_file, params.pipeline.lock_timeout_s,
                        what=f"{what}, period {start}"):
        yield start


def check_loop_columns(params: Params) -> None:
    """Refuse (``ValueError``, naming the setting) ``features`` column names the loop cannot
    honour. Its joined tables name the label ``y`` and the previous score ``y_last``
    (``features.label`` / ``features.y_last`` are for ``reloop train --data`` on a table of your
    own), and ``features.user_field`` must be a logged column, or gAUC would silently vanish."""
    from reloop.data.logs.schema import impression_columns

    f = params.features
    for key, value, fixed in (("label", f.label, "y"), ("y_last", f.y_last, "y_last")):
        if value != fixed:
            raise ValueError(
                f"features.{key}={value!r}: the loop's joined tables name this column "
                f"{fixed!r}; the setting is for `reloop train --data` on a table of your own. "
                f"Leave it at {fixed!r}")
    logged = [c.name for c in impression_columns(f)]
    if f.user_field not in logged:
        raise ValueError(f"features.user_field={f.user_field!r} is not a logged column; expected "
                         f"one of {logged} (it groups rows for gAUC)")


def run_stage(name: str, params: Params, start: str | dt.date) -> dict[str, Any]:
    """Run one stage by name for the period ``start``, inside :func:`period_workspace`.

    ``start`` must be a period start (weekly periods start on Mondays), else a ``ValueError``.
    ``ingest`` first checks that the previous period is decided (:func:`check_previous_decided`).
    The result is strict JSON (NaN and infinities become ``None``): the DAG's tasks return it as
    their XCom, which Airflow refuses to store otherwise (a warm start's ``best_val_auc`` is NaN,
    having no validation split).
    """
    from reloop.atomic import json_ready
    from reloop.numerics import pin_numerics

    pin_numerics()  # the DAG's tasks and study workers: before the stage imports torch

    try:
        fn = STAGES[name]
    except KeyError:
        raise ValueError(f"stage={name!r} is not a stage; expected one of {list(STAGES)}") from None
    check_loop_columns(params)
    with period_workspace(params, start, f"stage {name}") as start:
        log.info("stage %s, period %s", name, start)
        t0 = time.perf_counter()
        try:
            if name == "ingest":  # a period begins: its predecessor must be decided
                check_previous_decided(params, start)
            result = json_ready(fn(params, start))
        except BaseException as err:
            _notify(StageEvent(name, start, time.perf_counter() - t0, error=err))
            raise
        _notify(StageEvent(name, start, time.perf_counter() - t0, result=result))
        return result


def run_period(params: Params, start: str | dt.date) -> dict[str, dict[str, Any]]:
    """Run every stage of one period in order; stops at the first failure."""
    return {name: run_stage(name, params, start) for name in STAGES}
