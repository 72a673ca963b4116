"""The ``validate`` stage: Great Expectations suites over the period's raw impressions and
feedback (:mod:`reloop.data.validate`). A failed partition is quarantined and the stage fails.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["run"]


def run(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Validate the period's raw impressions and feedback; raises if any expectation fails."""
    from reloop.data.validate.run import validate_period

    result = validate_period(params, start)
    return {"success": result["success"], "partitions": len(result["partitions"])}
