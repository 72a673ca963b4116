"""The ``memory`` stage: build the candidate's ReLoop2 snapshot from the latest labelled window."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from reloop.config import Params

__all__ = ["SNAPSHOT_FILE", "build_memory", "snapshot_dir", "run_memory"]

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "memory.safetensors"


def snapshot_dir(params: Params, start: str | dt.date) -> Path:
    from reloop.data.logs.store import as_date

    return Path(params.pipeline.memory_root) / f"date={as_date(start).isoformat()}"


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


def run_memory(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Write ``<memory_root>/date=D/memory.safetensors`` for the period's candidate.

    The snapshot is what serving starts the next period with if the candidate is promoted. It
    holds the last ``pipeline.memory_window_rows`` labelled rows of the period's fit part
    (``pipeline.snapshot_rows: fit``) or of its held-out tail (``holdout``: rows the candidate
    never trained on, so their errors are the ones it makes when serving). ``evaluate`` builds
    its own memories (``evaluate.prefill``), never from held-out rows it scores.
    """
    from reloop.atomic import sweep_leftovers
    from reloop.data.logs.store import as_date
    from reloop.learn.train import load_checkpoint
    from reloop.stages.train import candidate_dir, period_splits

    start = as_date(start)
    ckpt = load_checkpoint(candidate_dir(params, start), params.features)
    fit_part, holdout = period_splits(params, start)
    rows = holdout if params.pipeline.snapshot_rows == "holdout" else fit_part
    window = rows.tail(params.pipeline.memory_window_rows)
    memory = build_memory(params, ckpt, window)
    sweep_leftovers(snapshot_dir(params, start) / SNAPSHOT_FILE)  # of a killed run (locked)
    path = memory.save(snapshot_dir(params, start) / SNAPSHOT_FILE)
    log.info("memory snapshot for %s from %d rows: %s", ckpt.model_id, window.height, path)
    return {"snapshot": str(path), "model_id": ckpt.model_id, "rows": window.height}
