"""The ``memory`` stage: the period's ReLoop2 snapshots, for serving and for ``evaluate``."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from reloop.config import Params
from reloop.periods import SNAPSHOT_FILE, snapshot_dir

__all__ = [
    "EVALUATE_SNAPSHOTS",
    "SNAPSHOT_FILE",
    "build_memory",
    "evaluate_window",
    "run",
]

log = logging.getLogger(__name__)

#: The memories ``evaluate`` starts each model from, beside :data:`SNAPSHOT_FILE`.
EVALUATE_SNAPSHOTS = {
    "candidate": "evaluate-candidate.safetensors",
    "incumbent": "evaluate-incumbent.safetensors",
}


def build_memory(params: Params, checkpoint: Any, window: Any) -> Any:
    """An :class:`~reloop.memory.ErrorMemory` for ``checkpoint`` holding the rows of ``window``.

    Each row's error is the checkpoint's own: ``y_base`` is its prediction for the row.
    """
    import torch

    from reloop.learn.train import predict
    from reloop.memory.sketch import ErrorMemory

    memory = ErrorMemory(checkpoint.model.hidden_dim, params.memory, model_id=checkpoint.model_id)
    if window.height:
        probs, hidden = predict(checkpoint.model, checkpoint.encoder.encode(window),
                                return_hidden=True)
        y = torch.from_numpy(window[params.features.label].cast(float).to_numpy(writable=True))
        memory.write(hidden, y, probs)
    return memory


def evaluate_window(params: Params, fit_part: Any) -> Any:
    """The rows ``evaluate``'s memories start from: ``evaluate.prefill`` of the fit part.

    ``window``: its last ``pipeline.memory_window_rows`` rows; ``none``: no row (the memories
    start empty), so that both models are judged only on rows neither trained on.
    """
    if params.evaluate.prefill == "window":
        return fit_part.tail(params.pipeline.memory_window_rows)
    return fit_part.head(0)


def run(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Write the period's snapshots into ``<memory_root>/date=D/``.

    * :data:`SNAPSHOT_FILE`: what serving starts the next period with if the candidate is
      promoted. It holds the last ``pipeline.memory_window_rows`` labelled rows of the period's
      fit part (``pipeline.snapshot_rows: fit``) or of its held-out tail (``holdout``: rows the
      candidate never trained on, so their errors are the ones it makes when serving).
    * :data:`EVALUATE_SNAPSHOTS`: the memories ``evaluate`` starts the candidate and the
      incumbent (the production model before the period, if any) from, both holding
      :func:`evaluate_window` (never held-out rows ``evaluate`` scores), each model's own
      errors.
    """
    from reloop.atomic import sweep_leftovers
    from reloop.learn.train import load_checkpoint
    from reloop.periods import as_date, candidate_dir
    from reloop.registry import Registry
    from reloop.stages.train import period_splits

    start = as_date(start)
    folder = snapshot_dir(params, start)
    ckpt = load_checkpoint(candidate_dir(params, start), params.features)
    fit_part, holdout = period_splits(params, start)
    rows = holdout if params.pipeline.snapshot_rows == "holdout" else fit_part
    window = rows.tail(params.pipeline.memory_window_rows)
    record = Registry(params.pipeline.registry_root).production_before(start.isoformat())
    models = {"candidate": ckpt}
    if record is not None:
        models["incumbent"] = load_checkpoint(record.checkpoint_dir, params.features)
    for name in (SNAPSHOT_FILE, *EVALUATE_SNAPSHOTS.values()):
        sweep_leftovers(folder / name)  # of a killed run (locked)
    path = build_memory(params, ckpt, window).save(folder / SNAPSHOT_FILE)
    log.info("memory snapshot for %s from %d rows: %s", ckpt.model_id, window.height, path)
    prefill = evaluate_window(params, fit_part)
    for role, name in EVALUATE_SNAPSHOTS.items():
        if role in models:
            build_memory(params, models[role], prefill).save(folder / name)
        else:  # no incumbent: a file of an earlier run must not be taken for this one's
            (folder / name).unlink(missing_ok=True)
    return {"snapshot": str(path), "model_id": ckpt.model_id, "rows": window.height,
            "evaluate_rows": prefill.height,
            "incumbent_id": models["incumbent"].model_id if "incumbent" in models else None}
