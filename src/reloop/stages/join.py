"""The ``join`` stage: the period's served scores joined with their click labels
(:mod:`reloop.data.join`), then the joined table validated.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["run"]


def run(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Join scores with labels, then validate the joined table."""
    from reloop.data.join import join_period
    from reloop.data.validate.run import validate_joined

    stats = join_period(params, start)
    validate_joined(params, start)
    return {"rows": stats.get("rows"), "ctr": stats.get("ctr")}
