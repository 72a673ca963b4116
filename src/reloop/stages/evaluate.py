"""The ``evaluate`` stage: candidate vs incumbent on the period's held-out, time-ordered tail.

Each model is scored twice on the tail: by its base prediction alone, and as served, i.e.
compensated by an error memory that starts from the latest labelled window (the snapshot the
``memory`` stage builds) and is written slot by slot as the tail's labels arrive, the way serving
writes labels online (the ReLoop2 protocol: a slot is scored before its own labels are written).
The incumbent gets a memory built the same way from the same window, so both are compared with
equally fresh memories. Reported per model and scorer: AUC, gAUC, logloss; for the pair, a paired
bootstrap CI of the AUC difference; in the built-in world, the oracle AUC on the same rows.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np

from reloop.config import Params
from reloop.jsonio import read_json

__all__ = ["evaluation_path", "read_evaluation", "run_evaluate", "score_model"]

log = logging.getLogger(__name__)


def evaluation_path(params: Params, start: str | dt.date) -> Path:
    from reloop.data.logs.store import as_date

    return (
        Path(params.pipeline.evaluation_root) / f"date={as_date(start).isoformat()}"
        / "evaluation.json"
    )


def read_evaluation(params: Params, start: str | dt.date) -> dict[str, Any]:
    path = evaluation_path(params, start)
    if not path.is_file():
        raise FileNotFoundError(f"no evaluation for this period at {path}; run evaluate first")
    return read_json(path)


def score_model(params: Params, checkpoint: Any, window: Any, holdout: Any) -> dict[str, Any]:
    """Base and served (memory-compensated) probabilities of ``checkpoint`` on ``holdout``."""
    import torch

    from reloop.learn.train import predict
    from reloop.memory.stream import slot_bounds
    from reloop.stages.memory import build_memory

    memory = build_memory(params, checkpoint, window)
    base, hidden = predict(checkpoint.model, checkpoint.encoder.encode(holdout),
                           return_hidden=True)
    y = torch.from_numpy(holdout[params.features.label].cast(float).to_numpy(writable=True))
    served = torch.empty_like(base, dtype=torch.float64)
    for lo, hi in slot_bounds(holdout.height, params.evaluate.slots):
        served[lo:hi] = memory.compensate(hidden[lo:hi], base[lo:hi])
        memory.write(hidden[lo:hi], y[lo:hi], base[lo:hi])
    return {"base": base.double().numpy(), "memory": served.numpy()}


def run_evaluate(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Write ``<evaluation_root>/date=D/evaluation.json``; returns its headline figures."""
    from reloop.atomic import write_json
    from reloop.data.logs.store import as_date
    from reloop.evaluation.bootstrap import (
        paired_bootstrap_auc_diff,
        paired_bootstrap_logloss_diff,
    )
    from reloop.learn.metrics import evaluate
    from reloop.learn.train import load_checkpoint
    from reloop.registry import Registry
    from reloop.stages.train import candidate_dir, period_splits

    start = as_date(start)
    fit_part, holdout = period_splits(params, start)
    window = (fit_part.tail(params.pipeline.memory_window_rows)
              if params.evaluate.prefill == "window" else fit_part.head(0))
    y = holdout[params.features.label].to_numpy()
    users = holdout[params.features.user_field] if params.features.user_field in holdout.columns \
        else None

    candidate = load_checkpoint(candidate_dir(params, start), params.features)
    record = Registry(params.pipeline.registry_root).production_before(start.isoformat())
    incumbent = None if record is None else load_checkpoint(record.checkpoint_dir,
                                                            params.features)
    scores = {"candidate": score_model(params, candidate, window, holdout)}
    if incumbent is not None:
        scores["incumbent"] = score_model(params, incumbent, window, holdout)

    out: dict[str, Any] = {"period": start.isoformat(), "holdout_rows": holdout.height,
                           "window_rows": window.height, "prefill": params.evaluate.prefill}
    for role, ckpt in (("candidate", candidate), ("incumbent", incumbent)):
        if ckpt is None:
            out[role] = None
            continue
        out[role] = {"model_id": ckpt.model_id} | {
            kind: evaluate(y, np.clip(p, 0.0, 1.0), users) for kind, p in scores[role].items()
        }
    if incumbent is not None:
        ci = {"n_boot": params.evaluate.bootstrap, "confidence": params.evaluate.confidence,
              "seed": params.evaluate.seed}
        out["auc_diff"] = {
            kind: paired_bootstrap_auc_diff(
                y, scores["candidate"][kind], scores["incumbent"][kind], **ci)
            for kind in ("base", "memory")
        }
        out["logloss_diff"] = {
            kind: paired_bootstrap_logloss_diff(
                y, np.clip(scores["candidate"][kind], 0.0, 1.0),
                np.clip(scores["incumbent"][kind], 0.0, 1.0), **ci)
            for kind in ("base", "memory")
        }
    if params.logs.source == "simulator":
        from reloop.sources.oracle import oracle_report

        out["oracle"] = oracle_report(params, start, table=holdout)
    write_json(evaluation_path(params, start), out)
    headline = {f"{role}_{kind}_auc": out[role][kind]["auc"]
                for role in ("candidate", "incumbent") if out[role] for kind in ("base", "memory")}
    log.info("evaluation %s: %s", start, headline)
    return {"evaluation": str(evaluation_path(params, start)), **headline}
