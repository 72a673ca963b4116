"""The ``archive`` stage: every artefact of the period committed to the DVC archive repository
(:mod:`reloop.archive`), so any past period can be listed and restored.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["run"]


def run(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Commit the period to the archive (a no-op with ``archive.enabled: false``)."""
    from reloop.archive import archive_period

    return archive_period(params, start)
