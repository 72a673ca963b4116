"""Per-period summaries of the loop: the table ``reloop report`` and ``make demo`` print, and the
``dvc plots`` data.

Both are read back from the artefacts the stages wrote (evaluation, decision, drift summary), so
they can be rebuilt at any time and hold no state of their own.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reloop.jsonio import read_json

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["evaluated_periods", "period_table", "write_plots"]

#: The columns of a period row (``None`` where a stage has not run).
COLUMNS = ("period", "period_index", "incumbent_base", "incumbent_memory", "candidate_base",
           "candidate_memory", "oracle", "promoted", "drift_share")


def period_table(params: Params, starts: list[dt.date]) -> list[dict[str, Any]]:
    """Per period: incumbent and candidate AUC with and without memory, oracle AUC, decision,
    drift share (what ``make demo`` prints)."""
    from reloop.drift.report import drift_dir
    from reloop.evaluate.stage import evaluation_path
    from reloop.promote.stage import decision_path

    rows = []
    for day in starts:
        row: dict[str, Any] = {"period": day.isoformat()}
        ev_path, dec_path = evaluation_path(params, day), decision_path(params, day)
        if ev_path.is_file():
            ev = read_json(ev_path)
            for role in ("incumbent", "candidate"):
                for kind in ("base", "memory"):
                    res = ev.get(role) or {}
                    row[f"{role}_{kind}"] = (res.get(kind) or {}).get("auc")
            row["oracle"] = ((ev.get("oracle") or {}).get("oracle") or {}).get("auc")
        if dec_path.is_file():
            row["promoted"] = read_json(dec_path).get("promote")
        summary = drift_dir(params, day) / "summary.json"
        if summary.is_file():
            row["drift_share"] = read_json(summary).get("share_drifted_columns")
        rows.append(row)
    return rows


def evaluated_periods(params: Params) -> list[dt.date]:
    """Start dates of every period with an evaluation on disk, in order."""
    from reloop.logs.store import dated_dirs

    return [day for day, _ in dated_dirs(params.pipeline.evaluation_root, "evaluation.json")]


def write_plots(params: Params) -> Path:
    """Rebuild ``pipeline.plots_file``: one row per evaluated period (the ``dvc plots`` data)."""
    from reloop.logs.atomic import write_json

    rows = period_table(params, evaluated_periods(params))
    for i, row in enumerate(rows):
        row["period_index"] = i  # a numeric x axis for the plot templates
    return write_json(params.pipeline.plots_file,
                      [{k: row.get(k) for k in COLUMNS} for row in rows])
