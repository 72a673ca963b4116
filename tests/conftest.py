"""Shared fixtures: a small feature config and a small synthetic table with a known click model."""

from __future__ import annotations

from reloop.numerics import pin_numerics

pin_numerics()  # before anything imports torch: the tests run with the pinned MKL path, as reloop

import polars as pl  # noqa: E402
import pytest  # noqa: E402

from reloop.config import Params, params_from_dict  # noqa: E402
from reloop.synthetic import make_ctr_table  # noqa: E402

SMALL_CARDINALITIES = (50, 30, 20, 10, 5)


def small_params(**overrides: dict) -> Params:
    """A fast configuration over the fields of :func:`small_table`."""
    raw = {
        "features": {
            "fields": [
                {"name": f"f{i}", "buckets": 4 * c + 1} for i, c in enumerate(SMALL_CARDINALITIES)
            ],
            "user_field": "f0",
        },
        "model": {"backbone": "deepfm", "embedding_dim": 8, "mlp_hidden": [64, 32]},
        "train": {
            "loss": "reloop",
            "alpha": 0.5,
            "batch_size": 512,
            "learning_rate": 3e-3,
            "max_epochs": 3,
            "seed": 7,
            "num_threads": 2,
        },
    }
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    return params_from_dict(raw)


@pytest.fixture(scope="session")
def small_table() -> pl.DataFrame:
    return make_ctr_table(24_000, SMALL_CARDINALITIES, seed=11, interaction_scale=1.0)
