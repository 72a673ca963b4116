"""The loop's history, period by period: each period's evaluation, decision and drift summary
read back from the artefacts the stages wrote, and the registry's production history.

It holds no state of its own: :func:`write_plots` (run by promote) rebuilds the ``dvc plots``
data from the artefacts at any time; ``reloop report`` prints and draws the same rows.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reloop.jsonio import read_json

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["COLUMNS", "evaluated_periods", "period_table", "rollbacks_after", "write_plots"]


#: The columns of a period row (``None`` where a stage has not run).
COLUMNS = ("period", "period_index", "incumbent_base", "incumbent_memory", "candidate_base",
           "candidate_memory", "oracle", "promoted", "drift_share", "candidate_memory_gain",
           "incumbent_memory_gain", "rolled_back_to")


def _gain(row: dict[str, Any], role: str) -> float | None:
    base, mem = row.get(f"{role}_base"), row.get(f"{role}_memory")
    return None if base is None or mem is None else mem - base


def rollbacks_after(history: list[dict[str, Any]], periods: list[str]) -> dict[str, str]:
    """``{period: model_id}`` for each rollback of the registry's production ``history``: the
    version production was rolled back to, keyed by the last of ``periods`` whose promotion
    event came before the rollback (a rollback has no period of its own)."""
    out: dict[str, str] = {}
    last = None
    for event in history:
        if event.get("action") == "rollback":
            if last is not None:
                out[last] = event["model_id"]
        elif event.get("period") in periods:
            last = event["period"]
    return out


def period_table(params: Params, starts: list[dt.date]) -> list[dict[str, Any]]:
    """Per period: incumbent and candidate AUC with and without memory, oracle AUC, decision,
    drift share (what ``make demo`` prints)."""
    from reloop.periods import DRIFT_SUMMARY_FILE, decision_path, drift_dir, evaluation_path

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
        summary = drift_dir(params, day) / DRIFT_SUMMARY_FILE
        if summary.is_file():
            row["drift_share"] = read_json(summary).get("share_drifted_columns")
        row["candidate_memory_gain"] = _gain(row, "candidate")
        row["incumbent_memory_gain"] = _gain(row, "incumbent")
        rows.append(row)
    from reloop.registry import Registry

    rolled = rollbacks_after(Registry(params.pipeline.registry_root).history(),
                             [r["period"] for r in rows])
    for row in rows:
        row["rolled_back_to"] = rolled.get(row["period"])
    return rows


def evaluated_periods(params: Params) -> list[dt.date]:
    """Start dates of every period with an evaluation on disk, in order."""
    from reloop.periods import EVALUATION_FILE, dated_dirs

    return [day for day, _ in dated_dirs(params.pipeline.evaluation_root, EVALUATION_FILE)]


def write_plots(params: Params) -> Path:
    """Rebuild ``pipeline.plots_file``: one row per evaluated period (the ``dvc plots`` data)."""
    from reloop.atomic import write_json

    rows = period_table(params, evaluated_periods(params))
    for i, row in enumerate(rows):
        row["period_index"] = i  # a numeric x axis for the plot templates
    return write_json(params.pipeline.plots_file,
                      [{k: row.get(k) for k in COLUMNS} for row in rows])
