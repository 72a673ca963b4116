"""The ``drift`` stage: an Evidently report of the period's joined table against its reference
periods (:mod:`reloop.data.drift`).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["run"]


#: what the stage returns (the CLI prints it, the DAG keeps it as its XCom): the headline of
#: the summary; its per-column figures and category codes stay in ``summary.json``
HEADLINE = ("period_start", "reference", "columns_checked", "share_drifted_columns",
            "drifted_columns", "dataset_drift", "score_drift", "label_drift",
            "score_drift_pvalue", "label_drift_pvalue", "ctr_current", "ctr_reference",
            "summary", "report_html")


def run(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Write the period's drift report; returns its headline (:data:`HEADLINE`)."""
    from reloop.data.drift import drift_report

    summary = drift_report(params, start)
    return {k: summary[k] for k in HEADLINE if k in summary}
