"""Periods and the paths of their artefacts: the one place a ``date=YYYY-MM-DD`` path is spelled.

A period is ``logs.period_days`` consecutive days named by its first day. Every per-period
artefact lives under ``<root>/date=<first day>/``, and each has one function here that gives its
path: the stage that writes it and every reader (promote, archive, report, restore, serving) call
that function, never a path of their own.

=================  ==========================================  ====================
artefact           path                                        written by
=================  ==========================================  ====================
raw log partition  ``<logs.root>/<table>/date=D/``              ingest, serving
day seal           ``<logs.root>/_seals/date=D.json``           the log's producer
quarantine record  ``<logs.quarantine_root>/<table>/date=D.json``  validate
validation report  ``<validate.out_root>/date=D/<table>.json``  validate
joined table       ``<join.out_root>/date=D/``                  join
drift report       ``<drift.out_root>/date=D/``                 drift
candidate model    ``<pipeline.models_root>/date=D/``           train
memory snapshot    ``<pipeline.memory_root>/date=D/``           memory
evaluation         ``<pipeline.evaluation_root>/date=D/evaluation.json``  evaluate
decision           ``<pipeline.decisions_root>/date=D/decision.json``     promote
=================  ==========================================  ====================

Importing this module has no side effects, and it imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = [
    "DATE_KEY",
    "DECISION_FILE",
    "DRIFT_SUMMARY_FILE",
    "EVALUATION_FILE",
    "SNAPSHOT_FILE",
    "as_date",
    "candidate_dir",
    "check_period_start",
    "date_part",
    "dated_dirs",
    "decision_path",
    "drift_dir",
    "evaluation_path",
    "joined_dir",
    "parse_date_part",
    "partition_dir",
    "period_dates",
    "period_start",
    "quarantine_path",
    "seal_path",
    "snapshot_dir",
    "validation_dir",
]

EVALUATION_FILE = "evaluation.json"
#: The memory snapshot file in a snapshot folder (and in a registry version's memory folder).
SNAPSHOT_FILE = "memory.safetensors"
DECISION_FILE = "decision.json"
#: The drift report's figures in a drift folder (beside its HTML report).
DRIFT_SUMMARY_FILE = "summary.json"
#: Where day seals live under the logs root.
SEALS_DIR = "_seals"
#: The partition key of every per-period and per-day folder (hive style: ``date=YYYY-MM-DD``).
DATE_KEY = "date"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_PART = re.compile(rf"^{DATE_KEY}=(\d{{4}}-\d{{2}}-\d{{2}})$")


# --------------------------------------------------------------------------------------------
# dates
# --------------------------------------------------------------------------------------------


#: the dates reloop handles: wide enough for any log, narrow enough that the day arithmetic of
#: periods, attribution windows and seals (the day before, the day after) cannot overflow
FIRST_DATE = dt.date(1900, 1, 1)
END_DATE = dt.date(9000, 1, 1)  # exclusive


def as_date(value: str | dt.date, what: str = "date") -> dt.date:
    """``value`` as a :class:`datetime.date`; strings must be ISO ``YYYY-MM-DD``, and the date
    within :data:`FIRST_DATE` .. :data:`END_DATE` (exclusive)."""
    if isinstance(value, dt.datetime):
        day = value.date()
    elif isinstance(value, dt.date):
        day = value
    else:
        day = None
        if _ISO_DATE.match(str(value)):  # fromisoformat alone also reads 20260102, 2026-W01-5
            with contextlib.suppress(ValueError):
                day = dt.date.fromisoformat(str(value))
        if day is None:
            raise ValueError(f"{what}={value!r} is not a valid ISO date (YYYY-MM-DD)")
    if not FIRST_DATE <= day < END_DATE:
        raise ValueError(f"{what}={value!s} is outside the dates reloop handles "
                         f"({FIRST_DATE} .. {END_DATE - dt.timedelta(days=1)})")
    return day


def period_dates(start: str | dt.date, days: int) -> list[dt.date]:
    """The ``days`` consecutive dates from ``start``."""
    if days < 1:
        raise ValueError(f"days={days} must be >= 1")
    first = as_date(start)
    return [first + dt.timedelta(days=i) for i in range(days)]


def period_start(day: str | dt.date, period_days: int) -> dt.date:
    """The start of the period of ``period_days`` days that holds ``day``.

    Weekly periods (``period_days`` a multiple of 7) start on Mondays, as the DAG schedules them:
    the Monday on or before ``day``. Other periods have no fixed phase: ``day`` itself.
    """
    day = as_date(day)
    if period_days % 7:
        return day
    return day - dt.timedelta(days=day.weekday())


def check_period_start(day: str | dt.date, period_days: int, what: str = "period start",
                       earliest: dt.date | None = None) -> dt.date:
    """``day`` as a date; a :class:`ValueError` naming it, its weekday and the Monday to use when
    it is not a period start (:func:`period_start`): the Monday on or before it, or, when that
    is before ``earliest`` (the built-in world's first day), the first Monday on or after
    ``earliest``."""
    day = as_date(day, what)
    start = period_start(day, period_days)
    if start != day:
        use = f"{start.isoformat()}, the Monday on or before it"
        if earliest is not None and start < earliest:
            first = earliest + dt.timedelta(days=-earliest.weekday() % 7)
            use = (f"{first.isoformat()}, the first Monday on or after the first day "
                   f"{earliest.isoformat()} (simulator.start)")
        raise ValueError(
            f"{what} {day.isoformat()} is a {day:%A}; periods of logs.period_days={period_days} "
            f"start on Mondays (as the DAG schedules them): use {use}"
        )
    return day


# --------------------------------------------------------------------------------------------
# the partition key
# --------------------------------------------------------------------------------------------


def date_part(day: str | dt.date) -> str:
    """The partition folder name of ``day``: ``date=YYYY-MM-DD`` (hive style)."""
    return f"{DATE_KEY}={as_date(day).isoformat()}"


def parse_date_part(name: str) -> dt.date | None:
    """The date of a ``date=YYYY-MM-DD`` name, or ``None`` for any other name."""
    m = _DATE_PART.match(name)
    return dt.date.fromisoformat(m.group(1)) if m else None


def dated_dirs(root: str | Path, containing: str | None = None) -> list[tuple[dt.date, Path]]:
    """``(date, dir)`` of every ``<root>/date=YYYY-MM-DD/`` directory (holding the file
    ``containing``, when given), sorted by date. A missing root has none."""
    base = Path(root)
    if not base.is_dir():
        return []
    out = []
    for child in base.iterdir():
        day = parse_date_part(child.name)
        if day and child.is_dir() and (containing is None or (child / containing).is_file()):
            out.append((day, child))
    return sorted(out)


# --------------------------------------------------------------------------------------------
# one function per artefact
# --------------------------------------------------------------------------------------------


def partition_dir(root: str | Path, table: str, day: str | dt.date) -> Path:
    """A raw log partition: ``<logs.root>/<table>/date=D``."""
    return Path(root) / table / date_part(day)


def seal_path(root: str | Path, day: str | dt.date) -> Path:
    """Day ``day``'s seal: ``<logs.root>/_seals/date=D.json``."""
    return Path(root) / SEALS_DIR / f"{date_part(day)}.json"


def quarantine_path(root: str | Path, table: str, day: str | dt.date) -> Path:
    """Why a partition failed validation: ``<logs.quarantine_root>/<table>/date=D.json``."""
    return Path(root) / table / f"{date_part(day)}.json"


def validation_dir(params: Params, day: str | dt.date) -> Path:
    """The validate stage's reports of a day's raw partitions: ``<validate.out_root>/date=D``."""
    return Path(params.validate_.out_root) / date_part(day)


def joined_dir(params: Params, start: str | dt.date) -> Path:
    """The period's joined table: ``<join.out_root>/date=D``."""
    return Path(params.join.out_root) / date_part(start)


def drift_dir(params: Params, start: str | dt.date) -> Path:
    """The period's drift report: ``<drift.out_root>/date=D``."""
    return Path(params.drift.out_root) / date_part(start)


def candidate_dir(params: Params, start: str | dt.date) -> Path:
    """The period's candidate model: ``<pipeline.models_root>/date=D``."""
    return Path(params.pipeline.models_root) / date_part(start)


def snapshot_dir(params: Params, start: str | dt.date) -> Path:
    """The period's error-memory snapshot: ``<pipeline.memory_root>/date=D``."""
    return Path(params.pipeline.memory_root) / date_part(start)


def evaluation_path(params: Params, start: str | dt.date) -> Path:
    """The period's evaluation: ``<pipeline.evaluation_root>/date=D/evaluation.json``."""
    return Path(params.pipeline.evaluation_root) / date_part(start) / EVALUATION_FILE


def decision_path(params: Params, start: str | dt.date) -> Path:
    """The period's promotion decision: ``<pipeline.decisions_root>/date=D/decision.json``."""
    return Path(params.pipeline.decisions_root) / date_part(start) / DECISION_FILE
