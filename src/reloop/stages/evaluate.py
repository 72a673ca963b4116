"""The ``evaluate`` stage: candidate vs incumbent on the period's held-out, time-ordered tail.

Each model is scored twice on the tail: by its base prediction alone, and as served, i.e.
compensated by an error memory that starts from the snapshot the ``memory`` stage wrote for it
(``evaluate.prefill``: the fit part's latest labelled window, or empty) and is written slot by
slot as the tail's labels arrive, the way serving writes labels online (the ReLoop2 protocol: a
slot is scored before its own labels are written). The incumbent's snapshot holds the same
window, so both are compared with equally fresh memories. The memories compensate with
``params.yaml``'s ``memory.lambda`` and ``memory.gamma``, as serving does. Reported per model
and scorer: AUC, gAUC, logloss; for the pair, a paired bootstrap CI of the AUC difference; in
the built-in world, the oracle AUC on the same rows.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np

from reloop.config import Params
from reloop.jsonio import read_json
from reloop.periods import evaluation_path

__all__ = ["load_evaluate_memory", "read_evaluation", "run", "served_scores"]

log = logging.getLogger(__name__)


def read_evaluation(params: Params, start: str | dt.date) -> dict[str, Any]:
    path = evaluation_path(params, start)
    if not path.is_file():
        raise FileNotFoundError(f"no evaluation for this period at {path}; run evaluate first")
    return read_json(path)


def load_evaluate_memory(params: Params, start: dt.date, role: str, checkpoint: Any,
                         rows: int) -> Any:
    """The ``memory`` stage's snapshot of ``role`` (candidate/incumbent) for ``checkpoint``.

    Refuses, with the command that rebuilds it, a missing snapshot, one of another model, or one
    that does not hold the ``rows`` rows ``evaluate.prefill`` asks for (parameters changed since
    the ``memory`` stage ran).
    """
    from reloop.memory.sketch import ErrorMemory
    from reloop.memory.snapshot import SnapshotError
    from reloop.periods import snapshot_dir
    from reloop.stages.memory import EVALUATE_SNAPSHOTS

    path = snapshot_dir(params, start) / EVALUATE_SNAPSHOTS[role]
    rerun = f"run `reloop stage memory --date {start.isoformat()}` first"
    if not path.is_file():
        raise FileNotFoundError(f"no {role} memory snapshot for evaluate at {path}; {rerun}")
    try:
        memory = ErrorMemory.load(path, model_id=checkpoint.model_id, config=params.memory)
    except SnapshotError as err:
        raise type(err)(f"{err}; {rerun}") from None
    if memory.n_written_ != rows:
        raise SnapshotError(
            f"{path} holds {memory.n_written_} rows, but evaluate.prefill="
            f"{params.evaluate.prefill!r} starts the {role} from {rows}; {rerun}"
        )
    return memory


def served_scores(params: Params, checkpoint: Any, memory: Any, holdout: Any) -> dict[str, Any]:
    """Base and served (memory-compensated) probabilities of ``checkpoint`` on ``holdout``.

    ``memory`` (``checkpoint``'s :class:`~reloop.memory.ErrorMemory`) compensates each of
    ``evaluate.slots`` slots (fewer when ``holdout`` has fewer rows), then learns its labels.
    """
    import torch

    from reloop.learn.train import predict
    from reloop.memory.stream import slot_bounds

    base, hidden = predict(checkpoint.model, checkpoint.encoder.encode(holdout),
                           return_hidden=True)
    y = torch.from_numpy(holdout[params.features.label].cast(float).to_numpy(writable=True))
    served = torch.empty_like(base, dtype=torch.float64)
    slots = min(params.evaluate.slots, holdout.height)
    for lo, hi in (slot_bounds(holdout.height, slots) if slots >= 2 else [(0, holdout.height)]):
        served[lo:hi] = memory.compensate(hidden[lo:hi], base[lo:hi])
        memory.write(hidden[lo:hi], y[lo:hi], base[lo:hi])
    return {"base": base.double().numpy(), "memory": served.numpy()}


def run(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Write ``<evaluation_root>/date=D/evaluation.json``; returns its headline figures."""
    from reloop.atomic import write_json
    from reloop.evaluation.bootstrap import (
        paired_bootstrap_auc_diff,
        paired_bootstrap_logloss_diff,
    )
    from reloop.learn.metrics import evaluate
    from reloop.learn.train import load_checkpoint
    from reloop.periods import as_date, candidate_dir
    from reloop.registry import Registry
    from reloop.stages.memory import evaluate_window
    from reloop.stages.train import period_splits

    start = as_date(start)
    fit_part, holdout = period_splits(params, start)
    window = evaluate_window(params, fit_part)
    y = holdout[params.features.label].to_numpy()
    users = holdout[params.features.user_field] if params.features.user_field in holdout.columns \
        else None

    candidate = load_checkpoint(candidate_dir(params, start), params.features)
    record = Registry(params.pipeline.registry_root).production_before(start.isoformat())
    incumbent = None if record is None else load_checkpoint(record.checkpoint_dir,
                                                            params.features)
    scores = {}
    for role, ckpt in (("candidate", candidate), ("incumbent", incumbent)):
        if ckpt is not None:
            memory = load_evaluate_memory(params, start, role, ckpt, window.height)
            scores[role] = served_scores(params, ckpt, memory, holdout)

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
