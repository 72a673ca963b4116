"""Quarantine records: a partition that failed validation is marked, never moved or modified.

``<logs.quarantine_root>/<table>/date=YYYY-MM-DD.json`` holds why the partition failed (each
failed expectation and its observed value) and where the full validation result is. The join
refuses a quarantined partition. A later validation of the same partition that passes (e.g. after
thresholds were changed on purpose) removes the record and logs that it did.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from reloop.atomic import write_json
from reloop.periods import as_date, quarantine_path

__all__ = [
    "QuarantinedError",
    "clear_quarantine",
    "quarantine_record",
    "record_quarantine",
]

log = logging.getLogger(__name__)


class QuarantinedError(ValueError):
    """A stage was asked to use a quarantined partition."""


def record_quarantine(
    root: str | Path, table: str, day: str | dt.date, record: dict[str, Any]
) -> Path:
    """Write (or replace) the quarantine record of one partition."""
    return write_json(quarantine_path(root, table, day), {"table": table,
                                                          "date": as_date(day).isoformat(),
                                                          **record})


def quarantine_record(root: str | Path, table: str, day: str | dt.date) -> dict[str, Any] | None:
    """The record if the partition is quarantined, else ``None``."""
    path = quarantine_path(root, table, day)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {"table": table, "date": as_date(day).isoformat(), "unreadable_record": str(path)}


def clear_quarantine(root: str | Path, table: str, day: str | dt.date) -> bool:
    """Remove the record of a partition that now passes; returns whether there was one."""
    path = quarantine_path(root, table, day)
    if path.is_file():
        path.unlink()
        log.info("partition %s/date=%s passed validation; quarantine record %s removed",
                 table, as_date(day), path)
        return True
    return False
