"""The ``drift`` stage: an Evidently report of the period's joined table against its reference
periods (:mod:`reloop.data.drift`).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["run"]


def run(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Write the period's drift report; returns its summary."""
    from reloop.data.drift import drift_report

    return drift_report(params, start)
