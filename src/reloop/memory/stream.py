"""ReLoop2's streaming evaluation protocol (paper Sec. 4), for any checkpoint and labelled data.

A time-ordered labelled stream is cut into ``n_slots`` equal, contiguous slots. Slot 1 is scored
by the base model alone (the memories are empty); every later slot is scored with compensation
from memories holding the earlier slots, which are written only after the slot has been scored,
so no label is ever used to score its own sample. At each slot boundary the memories are first
decayed by ``config.decay`` (1 keeps everything, the paper's protocol) and then the slot just
scored is written.

Three scorers are compared: ``base``, ``sketch`` (base + :class:`ErrorMemory`) and ``exact``
(base + :class:`ExactMemory`, optional: it costs O(window) per query). Per slot and overall, each
gets AUC, logloss and, when user ids are given, gAUC (:func:`reloop.learn.metrics.evaluate`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import Tensor

from reloop.config.memory import MemoryConfig
from reloop.learn.metrics import evaluate
from reloop.memory.exact import ExactMemory
from reloop.memory.sketch import ErrorMemory

__all__ = ["StreamReport", "slot_bounds", "stream_eval", "stream_eval_checkpoint"]

log = logging.getLogger(__name__)


@dataclass
class StreamReport:
    """Per-slot and overall metrics of every scorer.

    ``slots``: one dict per slot (``slot``, ``rows``, then one metrics dict per scorer).
    ``overall``: metrics over the whole stream; ``compensated``: over slots 2..n only (where the
    memory can act). ``gain``: the ``compensated`` AUC/gAUC of each memory minus the base's.
    """

    n_slots: int
    rows: int
    scorers: list[str]
    slots: list[dict[str, Any]]
    overall: dict[str, dict[str, float]]
    compensated: dict[str, dict[str, float]]
    gain: dict[str, dict[str, float]]
    config: dict[str, Any]
    model_id: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN metrics become ``None``)."""

        def clean(x: Any) -> Any:
            if isinstance(x, float) and math.isnan(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list):
                return [clean(v) for v in x]
            return x

        return clean(asdict(self))


def slot_bounds(n_rows: int, n_slots: int) -> list[tuple[int, int]]:
    """``n_slots`` contiguous ``[start, stop)`` row ranges of near-equal size covering the rows."""
    if n_slots < 2:
        raise ValueError(f"n_slots={n_slots} must be >= 2 (slot 1 is scored by the base alone)")
    if n_rows < n_slots:
        raise ValueError(f"the stream has {n_rows} rows, fewer than n_slots={n_slots}")
    edges = np.linspace(0, n_rows, n_slots + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _metrics(y: np.ndarray, p: np.ndarray, groups: np.ndarray | None) -> dict[str, float]:
    out = evaluate(y, p, groups)
    if groups is None:
        out["gauc"] = math.nan
    return out


def stream_eval(
    hidden: Tensor,
    y_base: Tensor,
    y: Tensor,
    groups: np.ndarray | pl.Series | None = None,
    *,
    n_slots: int = 10,
    config: MemoryConfig | None = None,
    exact: bool = True,
    sketch: bool = True,
    model_id: str | None = None,
) -> StreamReport:
    """Run the protocol on precomputed, time-ordered hidden vectors and base predictions.

    ``hidden`` ``(N, d)``, ``y_base`` ``(N,)`` base probabilities, ``y`` ``(N,)`` 0/1 labels,
    ``groups`` ``(N,)`` user ids for gAUC (optional). ``sketch``/``exact`` choose the memories
    scored beside the base.
    """
    cfg = config if config is not None else MemoryConfig()
    hidden = torch.as_tensor(hidden)
    y_base = torch.as_tensor(y_base, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)
    n = hidden.shape[0]
    if y_base.shape != (n,) or y.shape != (n,):
        raise ValueError(
            f"hidden has {n} rows but y_base has shape {tuple(y_base.shape)} and y "
            f"{tuple(y.shape)}"
        )
    g = None if groups is None else np.asarray(groups)
    if g is not None and g.shape[0] != n:
        raise ValueError(f"groups has {g.shape[0]} values but the stream has {n} rows")
    bounds = slot_bounds(n, n_slots)
    memories: dict[str, ErrorMemory | ExactMemory] = {}
    if sketch:
        memories["sketch"] = ErrorMemory(hidden.shape[1], cfg, model_id=model_id)
    if exact:
        memories["exact"] = ExactMemory(hidden.shape[1], cfg, model_id=model_id)
    scorers = ["base", *memories]
    preds = {name: np.empty(n, dtype=np.float64) for name in scorers}
    seconds = {f"{name}_{op}": 0.0 for name in memories for op in ("read", "write")}
    y_np = y.numpy()
    slots: list[dict[str, Any]] = []
    for i, (a, b) in enumerate(bounds, start=1):
        h_s, yb_s, y_s = hidden[a:b], y_base[a:b], y[a:b]
        preds["base"][a:b] = yb_s.numpy()
        for name, mem in memories.items():
            t0 = time.perf_counter()
            preds[name][a:b] = mem.compensate(h_s, yb_s).numpy()
            seconds[f"{name}_read"] += time.perf_counter() - t0
        row: dict[str, Any] = {"slot": i, "rows": b - a}
        for name in scorers:
            row[name] = _metrics(y_np[a:b], preds[name][a:b], None if g is None else g[a:b])
        slots.append(row)
        log.info(
            "slot %d/%d (%d rows): %s",
            i, n_slots, b - a,
            ", ".join(f"{s} auc={row[s]['auc']:.4f}" for s in scorers),
        )
        if i < n_slots:
            for name, mem in memories.items():
                t0 = time.perf_counter()
                mem.decay(cfg.decay)
                mem.write(h_s, y_s, yb_s)
                seconds[f"{name}_write"] += time.perf_counter() - t0
    first = bounds[1][0]
    overall = {s: _metrics(y_np, preds[s], g) for s in scorers}
    comp = {
        s: _metrics(y_np[first:], preds[s][first:], None if g is None else g[first:])
        for s in scorers
    }
    gain = {
        s: {m: comp[s][m] - comp["base"][m] for m in ("auc", "gauc", "logloss")}
        for s in memories
    }
    return StreamReport(
        n_slots=n_slots,
        rows=n,
        scorers=scorers,
        slots=slots,
        overall=overall,
        compensated=comp,
        gain=gain,
        config=cfg.model_dump(mode="json", by_alias=True),
        model_id=model_id,
        seconds=seconds,
    )


def stream_eval_checkpoint(
    checkpoint: Any,
    data: pl.DataFrame | str | Path,
    *,
    n_slots: int = 10,
    config: MemoryConfig | None = None,
    exact: bool = True,
    time_column: str | None = "event_time",
    label: str = "y",
    user_field: str | None = "user_id",
    batch_size: int = 65536,
) -> StreamReport:
    """The protocol for a trained checkpoint on labelled data (a polars frame or parquet path).

    ``checkpoint`` is a :class:`reloop.learn.train.Checkpoint` or a checkpoint directory. Rows are
    sorted by ``time_column`` when the data have it (stable), else used in their given order.
    Labels are read from ``label`` (``features.label``); gAUC groups rows by ``user_field``
    (``features.user_field``) when that column is present.
    """
    from reloop.learn.train import load_checkpoint, predict

    ckpt = load_checkpoint(checkpoint) if isinstance(checkpoint, str | Path) else checkpoint
    if isinstance(data, str | Path):
        path = Path(data)
        if not path.is_file():
            raise FileNotFoundError(f"data {str(path)!r} does not exist")
        df = pl.read_parquet(path)
    else:
        df = data
    if time_column is not None and time_column in df.columns:
        df = df.sort(time_column, maintain_order=True)
    if label not in df.columns:
        raise ValueError(f"label column {label!r} is missing; columns present: {df.columns}")
    y_col = df.get_column(label).cast(pl.Float64)
    bad = y_col.is_null() | ~y_col.is_in([0.0, 1.0])
    if bool(bad.any()):
        raise ValueError(
            f"label column {label!r} must hold only 0 and 1; {int(bad.sum())} rows do not"
        )
    probs, hidden = predict(
        ckpt.model, ckpt.encoder.encode(df), batch_size, return_hidden=True
    )
    groups = (
        df.get_column(user_field).to_numpy()
        if user_field is not None and user_field in df.columns
        else None
    )
    return stream_eval(
        hidden,
        probs.to(torch.float64),
        torch.tensor(y_col.to_numpy(), dtype=torch.float64),
        groups,
        n_slots=n_slots,
        config=config,
        exact=exact,
        model_id=ckpt.model_id,
    )

