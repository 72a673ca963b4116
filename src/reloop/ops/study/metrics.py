"""What one arm actually served in one period, measured against the labels.

The figures are *online* ones: the score serving logged for each impression (``score``, after
the error memory's compensation; ``score_base`` before it) against the click labels of the
period's joined table. In the built-in world they come with the oracle: the true click
probability of each shown item, whose mean is the period's expected CTR (the online A/B metric of
the ReLoop paper), beside the CTR a random pick and the oracle policy would have had on the same
requests, and the oracle AUC (the best any scorer could rank the shown items).

For ``logs.source: external`` the logged scores are your production's, the same in every arm, so
an arm is measured by what it *would* have served: the period's impressions are rescored, in
time order, by the arm's production version at the period's start, starting from the memory
snapshot stored with it (what ``reloop serve`` starts from), which learns each slot's labels
after scoring it (``evaluate.slots`` slots a day, the evaluate stage's protocol) and decays by
``memory.decay`` at each new day, as serving does.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import numpy as np

from reloop.jsonio import read_json

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["METRICS", "period_metrics"]

#: Per-period figures a study reports, with a short description (higher is better unless noted).
METRICS: dict[str, str] = {
    "auc": "online AUC of the served score",
    "gauc": "online gAUC of the served score",
    "logloss": "online logloss of the served score (lower is better)",
    "auc_base": "online AUC of the base model's score (before the memory)",
    "ctr": "observed CTR of the shown items",
    "ctr_expected": "expected CTR: mean true click probability of the shown items (world)",
    "ctr_random_pick": "CTR of a random pick among the same candidates (world)",
    "ctr_oracle_policy": "CTR of the oracle policy on the same candidates (world)",
    "auc_oracle": "AUC of the true probabilities on the shown items (world)",
}


def _served_scores(params: Params, start: dt.date, table: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(score, score_base)`` the arm would have served on ``table`` (external logs)."""
    import polars as pl

    from reloop.learn.train import load_checkpoint
    from reloop.memory.sketch import ErrorMemory
    from reloop.periods import SNAPSHOT_FILE
    from reloop.registry import Registry
    from reloop.stages.evaluate import served_scores
    from reloop.stages.memory import build_memory

    record = Registry(params.pipeline.registry_root).production_before(start.isoformat())
    if record is None:
        p = np.full(table.height, params.serving.bootstrap_score)
        return p, p.copy()
    ckpt = load_checkpoint(record.checkpoint_dir, params.features)
    snapshot = None if record.memory_dir is None else record.memory_dir / SNAPSHOT_FILE
    if snapshot is not None and snapshot.is_file():
        memory = ErrorMemory.load(snapshot, model_id=ckpt.model_id, config=params.memory)
    else:  # a version registered without one: serving starts from an empty memory too
        memory = build_memory(params, ckpt, table.head(0))
    rows = table.with_row_index("_row").sort("event_time", maintain_order=True)
    days = rows["event_time"].dt.date()
    score = np.empty(table.height)
    base = np.empty(table.height)
    for i, day in enumerate(days.unique(maintain_order=True).to_list()):
        if i:
            memory.decay()  # serving decays the memory as its clock enters a new day
        part = rows.filter(days == day)
        scores = served_scores(params, ckpt, memory, part.drop("_row"))
        index = part["_row"].cast(pl.Int64).to_numpy()
        score[index] = scores["memory"] if params.serving.use_memory else scores["base"]
        base[index] = scores["base"]
    return np.clip(score, 0.0, 1.0), np.clip(base, 0.0, 1.0)


def period_metrics(params: Params, start: str | dt.date) -> dict[str, Any]:
    """The figures of :data:`METRICS` for the period starting ``start`` (a JSON-ready dict)."""
    from reloop.data.join import read_joined
    from reloop.learn.metrics import evaluate
    from reloop.periods import as_date, decision_path

    start = as_date(start)
    table = read_joined(params, start)
    y = table[params.features.label].to_numpy()
    users = (table[params.features.user_field].to_numpy()
             if params.features.user_field in table.columns else None)
    if params.logs.source == "external":
        score, score_base = _served_scores(params, start, table)
    else:
        score, score_base = table["score"].to_numpy(), table["score_base"].to_numpy()
    served = evaluate(y, score, users) if table.height else {}
    out: dict[str, Any] = {
        "period": start.isoformat(),
        "rows": table.height,
        "clicks": int(y.sum()) if table.height else 0,
        "ctr": float(y.mean()) if table.height else float("nan"),
        "auc": served.get("auc", float("nan")),
        "gauc": served.get("gauc", float("nan")),
        "logloss": served.get("logloss", float("nan")),
        "auc_base": evaluate(y, score_base, None)["auc"] if table.height else float("nan"),
        "served_by": sorted(set(table["model_version"].to_list())) if table.height else [],
    }
    if params.logs.source == "simulator" and table.height:
        from reloop.sources.oracle import oracle_report

        oracle = oracle_report(params, start, table=table)
        out.update(
            ctr_expected=oracle["ctr_expected"],
            ctr_random_pick=oracle["ctr_random_pick"],
            ctr_oracle_policy=oracle["ctr_oracle_policy"],
            auc_oracle=oracle["oracle"]["auc"],
        )
    decision = decision_path(params, start)
    if decision.is_file():
        record = read_json(decision)
        out["decision"] = {"promoted": bool(record.get("promote")),
                           "candidate": record.get("candidate")}
    else:
        out["decision"] = None
    return out
