"""The ``promote`` stage: apply the gate, register the candidate, move the production pointer."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from reloop.config import Params

__all__ = ["decision_path", "run_promote"]

log = logging.getLogger(__name__)


def decision_path(params: Params, start: str | dt.date) -> Path:
    from reloop.logs.store import as_date

    return Path(params.pipeline.decisions_root) / f"date={as_date(start).isoformat()}" / (
        "decision.json"
    )


def run_promote(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Decide on the period's candidate and, if it passes, make it production (atomically).

    The candidate checkpoint is loaded (checksums verified) before anything is registered, so a
    corrupt candidate is never promoted. The candidate is registered whatever the decision, with
    its lineage and evaluation, so rejected versions stay inspectable. Rerunning a period that
    already promoted its candidate changes nothing.
    """
    from reloop.evaluate.stage import read_evaluation
    from reloop.logs.atomic import write_json
    from reloop.logs.store import as_date
    from reloop.memory.stage import snapshot_dir
    from reloop.promote.gate import decide
    from reloop.registry import Registry
    from reloop.train import load_checkpoint
    from reloop.train.stage import candidate_dir

    start = as_date(start)
    period = start.isoformat()
    evaluation = read_evaluation(params, start)
    ckpt = load_checkpoint(candidate_dir(params, start), params.features)
    if ckpt.model_id != evaluation["candidate"]["model_id"]:
        raise RuntimeError(
            f"candidate {ckpt.model_id} is not the model evaluated for {period} "
            f"({evaluation['candidate']['model_id']}); rerun evaluate first"
        )
    key = "memory" if params.promote.compare == "memory" else "base"
    incumbent = evaluation.get("incumbent")
    decision = decide(
        evaluation["candidate"][key],
        None if incumbent is None else incumbent[key],
        evaluation.get("auc_diff", {}).get(key),
        min_auc_gain=params.promote.min_auc_gain,
        max_logloss_regression=params.promote.max_logloss_regression,
        require_ci_excludes_zero=params.promote.require_ci_excludes_zero,
    )
    registry = Registry(params.pipeline.registry_root)
    with registry.lock():
        registry.register(
            ckpt.model_id,
            ckpt.path,
            {
                "period": period,
                "parent_id": ckpt.parent_id,
                "params": params.model_dump(mode="json", by_alias=True),
                "data": ckpt.info.get("data", {}),
                "evaluation": {k: evaluation[k] for k in ("candidate", "incumbent", "auc_diff")
                               if k in evaluation},
                "decision": decision.as_dict(),
            },
            memory_dir=snapshot_dir(params, start),
        )
        current = registry.production()
        if decision.promote and (current is None or current.model_id != ckpt.model_id):
            registry.promote(ckpt.model_id, period=period, reason="; ".join(decision.reasons))
    record = {
        "period": period,
        "candidate": ckpt.model_id,
        "incumbent": None if incumbent is None else incumbent["model_id"],
        "compare": key,
        **decision.as_dict(),
    }
    write_json(decision_path(params, start), record)
    from reloop.pipeline.report import write_plots

    plots = write_plots(params)
    log.info("period %s: %s %s", period, "promoted" if decision.promote else "kept incumbent",
             ckpt.model_id)
    return {"promoted": decision.promote, "model_id": ckpt.model_id,
            "decision": str(decision_path(params, start)), "plots": str(plots)}
