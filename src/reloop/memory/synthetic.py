"""Drifting synthetic streams for the error memory's tests and benchmark.

Two kinds of drift: :func:`make_drifting_stream` shifts the click rate of some values of one raw
feature; :func:`segment_drift` shifts it in segments of the base model's hidden space.

Built on :func:`reloop.synthetic.make_ctr_table` (a static world with a known click model): the
first ``n_train`` rows are the training period, unchanged; in the ``n_stream`` rows that follow,
``drift_share`` of the values of field ``drift_field`` (drawn among its most frequent values, so
the drift touches a fair share of traffic) get a click-logit shift of ``±drift_logit`` (half up,
half down) that ramps in linearly from ``ramp_start * drift_logit`` at the first stream row to the
full shift at the last. Labels of the stream are redrawn from the shifted probabilities. A base
model trained on the first period is therefore systematically wrong, in a drifting way, on the
part of the stream showing those values: the situation ReLoop2's memory is for.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from reloop.synthetic import make_ctr_table

__all__ = ["DEFAULT_CARDINALITIES", "make_drifting_stream", "segment_drift"]

DEFAULT_CARDINALITIES = (1000, 500, 200, 100, 50, 20, 10, 5000, 2000, 300)


def make_drifting_stream(
    n_train: int,
    n_stream: int,
    cardinalities: tuple[int, ...] | list[int] = DEFAULT_CARDINALITIES,
    *,
    seed: int = 0,
    drift_field: int = 1,
    drift_share: float = 0.3,
    drift_top: int = 100,
    drift_logit: float = 1.5,
    ramp_start: float = 0.5,
    interaction_scale: float = 0.6,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(train, stream)`` frames: ``f0..f{F-1}``, ``p_true``, ``y``, ``y_last``, ``event_time``.

    ``stream`` also has ``drifted`` (bool): whether the row's value of ``drift_field`` drifts.
    """
    if n_train < 1 or n_stream < 1:
        raise ValueError(f"n_train={n_train} and n_stream={n_stream} must both be >= 1")
    if not 0 <= drift_field < len(cardinalities):
        raise ValueError(
            f"drift_field={drift_field} is out of range; expected 0..{len(cardinalities) - 1}"
        )
    if not 0.0 < drift_share <= 1.0:
        raise ValueError(f"drift_share={drift_share} must be in (0, 1]")
    table = make_ctr_table(
        n_train + n_stream, cardinalities, seed=seed, interaction_scale=interaction_scale
    ).with_columns(event_time=pl.int_range(0, n_train + n_stream, dtype=pl.Int64))
    train, stream = table.head(n_train), table.tail(n_stream)

    rng = np.random.default_rng([seed, 4242])
    col = f"f{drift_field}"
    values = stream.get_column(col).to_numpy()
    top = np.argsort(-np.bincount(values, minlength=cardinalities[drift_field]), kind="stable")
    top = top[: min(drift_top, cardinalities[drift_field])]
    n_drift = max(1, int(round(drift_share * top.size)))
    drifting = rng.choice(top, size=n_drift, replace=False)
    sign = np.zeros(cardinalities[drift_field])
    sign[drifting] = np.where(rng.random(n_drift) < 0.5, 1.0, -1.0)

    t = np.linspace(0.0, 1.0, n_stream)
    ramp = ramp_start + (1.0 - ramp_start) * t
    p = stream.get_column("p_true").to_numpy()
    logit = np.log(p) - np.log1p(-p) + drift_logit * ramp * sign[values]
    p_new = 1.0 / (1.0 + np.exp(-logit))
    y_new = (rng.random(n_stream) < p_new).astype(np.int8)
    stream = stream.with_columns(
        p_true=pl.Series(p_new), y=pl.Series(y_new), drifted=pl.Series(sign[values] != 0.0)
    )
    return train, stream


def segment_drift(
    hidden: torch.Tensor,
    p_true: np.ndarray,
    *,
    n_segments: int = 8,
    drift_share: float = 0.25,
    drift_logit: float = 1.5,
    ramp_start: float = 0.5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Relabel a scored stream so the base model is wrong in segments of its own hidden space.

    The segments are the cosine Voronoi cells of ``n_segments`` rows drawn from the stream (each
    row belongs to the drawn row its hidden vector is most aligned with). ``drift_share`` of the
    segments (at least one) get a click-logit shift of ``±drift_logit`` (alternating signs),
    ramping in linearly from ``ramp_start`` times that at the first row to the full shift at the
    last. This is ReLoop2's premise made explicit: the traffic the model represents alike starts
    to behave differently. Returns ``(y, drifted)``: new 0/1 labels drawn from the shifted
    ``p_true`` and whether each row's segment drifts.
    """
    n = hidden.shape[0]
    if p_true.shape != (n,):
        raise ValueError(f"p_true has shape {p_true.shape}, expected ({n},) to match hidden")
    if not 1 <= n_segments <= n:
        raise ValueError(f"n_segments={n_segments} is out of range; expected 1..{n}")
    rng = np.random.default_rng([seed, 77])
    unit = torch.nn.functional.normalize(hidden.to(torch.float32), dim=1)
    centres = unit[torch.from_numpy(rng.choice(n, size=n_segments, replace=False))]
    segment = (unit @ centres.T).argmax(dim=1).numpy()
    n_drift = max(1, int(round(drift_share * n_segments)))
    sign = np.zeros(n_segments)
    sign[rng.choice(n_segments, size=n_drift, replace=False)] = np.where(
        np.arange(n_drift) % 2 == 0, 1.0, -1.0
    )
    ramp = ramp_start + (1.0 - ramp_start) * np.linspace(0.0, 1.0, n)
    p = np.clip(p_true, 1e-9, 1 - 1e-9)
    logit = np.log(p) - np.log1p(-p) + drift_logit * ramp * sign[segment]
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    return y, sign[segment] != 0.0
