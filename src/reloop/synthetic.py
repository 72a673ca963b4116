"""Static synthetic CTR tables with a known click model, for tests and benchmarks.

Each of ``len(cardinalities)`` categorical fields draws its value from a Zipf-like distribution
over ``cardinality`` ids. The true click logit is a sum of per-value biases plus second-order
interactions (dot products of per-value latent vectors) between pairs of fields, so first-order
models (LR) can learn part of it and factorisation / deep models more. ``p_true`` is the exact
click probability; ``y`` is drawn from it; ``y_last`` is a "previous model" score: the true logit
blurred with Gaussian noise and shrunk, as a slightly stale, slightly wrong model would give.

This is not the built-in drifting world (the simulator); it is a single stationary table.
"""

from __future__ import annotations

import numpy as np
import polars as pl

__all__ = ["make_ctr_table"]


def make_ctr_table(
    n_rows: int,
    cardinalities: list[int] | tuple[int, ...] = (1000, 500, 200, 100, 50, 20, 10, 5000, 2000, 300),
    *,
    seed: int = 0,
    latent_dim: int = 4,
    interaction_scale: float = 0.6,
    base_logit: float = -1.6,
    y_last_noise: float = 0.6,
    zipf_exponent: float = 1.05,
) -> pl.DataFrame:
    """A table with columns ``f0..f{F-1}`` (int64 ids), ``p_true``, ``y`` (0/1) and ``y_last``."""
    if n_rows < 1:
        raise ValueError(f"n_rows={n_rows} must be >= 1")
    if not cardinalities or min(cardinalities) < 1:
        raise ValueError(f"cardinalities={list(cardinalities)} must be non-empty and positive")
    rng = np.random.default_rng(seed)
    n_fields = len(cardinalities)
    ids, bias_sum = [], np.full(n_rows, base_logit)
    latents = []
    for c in cardinalities:
        weights = 1.0 / np.arange(1, c + 1) ** zipf_exponent
        x = rng.choice(c, size=n_rows, p=weights / weights.sum())
        bias = rng.normal(0.0, 0.5, size=c)
        latent = rng.normal(0.0, 1.0 / np.sqrt(latent_dim), size=(c, latent_dim))
        ids.append(x)
        bias_sum += bias[x]
        latents.append(latent[x])
    logit = bias_sum
    # interactions between neighbouring fields in a ring, so every field takes part in two
    for i in range(n_fields):
        j = (i + 1) % n_fields
        if j != i:
            logit = logit + interaction_scale * np.einsum("nd,nd->n", latents[i], latents[j])
    p_true = 1.0 / (1.0 + np.exp(-logit))
    y = (rng.random(n_rows) < p_true).astype(np.int8)
    stale = 0.8 * logit + rng.normal(0.0, y_last_noise, size=n_rows)
    y_last = 1.0 / (1.0 + np.exp(-stale))
    return pl.DataFrame(
        {f"f{i}": ids[i].astype(np.int64) for i in range(n_fields)}
        | {"p_true": p_true, "y": y, "y_last": y_last.astype(np.float32)}
    )
