"""Fixtures of the data tests: a tiny built-in world in a temporary directory.

``world_logs`` simulates two bootstrap days once per session; tests that corrupt data work on a
copy (:func:`copy_world`), so the session copy is never modified.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from reloop.config import Params, params_from_dict

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

DAY1, DAY2, DAY3 = "2026-01-05", "2026-01-06", "2026-01-07"

FIELDS = [
    {"name": "user_id", "kind": "categorical", "buckets": 1024},
    {"name": "item_id", "kind": "categorical", "buckets": 512},
    {"name": "item_category", "kind": "categorical", "buckets": 16},
    {"name": "user_segment", "kind": "categorical", "buckets": 8},
    {"name": "device", "kind": "categorical", "buckets": 8},
    {"name": "hour", "kind": "categorical", "buckets": 32},
    {"name": "item_age_days", "kind": "numeric", "transform": "bucketize",
     "boundaries": [1, 2, 4, 7, 14, 30]},
]


def tiny_params(root: Path, **overrides: dict) -> Params:
    """A fast configuration whose every path lies under ``root``."""
    raw = {
        "features": {"fields": FIELDS},
        "model": {"backbone": "deepfm", "embedding_dim": 4, "mlp_hidden": [16, 8]},
        "train": {"loss": "reloop", "alpha": 0.5, "batch_size": 256, "max_epochs": 1,
                  "num_threads": 2, "seed": 3},
        "logs": {"root": str(root / "logs"), "oracle_root": str(root / "oracle"),
                 "quarantine_root": str(root / "quarantine")},
        "simulator": {"seed": 7, "start": "2026-01-05", "impressions_per_day": 2000,
                      "users": 300, "segments": 4, "categories": 6, "latent_dim": 4,
                      "initial_items": 60, "new_items_per_day": 5, "slot_minutes": 120,
                      "click_delay_median_seconds": 900.0,
                      "shift_days": [1]},
        "serving": {"batch_size": 4096},
        "join": {"out_root": str(root / "joined"), "window_minutes": 60},
        "validation": {"out_root": str(root / "reports" / "validation"), "min_rows": 100,
                       "data_docs": False},
        "drift": {"out_root": str(root / "reports" / "drift"), "sample_rows": 0},
        "replay": {"root": str(root / "replay"), "downloads": str(root / "downloads")},
        "pipeline": {"lock_file": str(root / "reloop.lock"),
                     "plots_file": str(root / "reports" / "plots" / "periods.json")},
        "archive": {"enabled": False, "root": str(root / "archive"),
                    "remote": str(root / "archive-remote")},
    }
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    return params_from_dict(raw)


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """``{relative path: (sha256, mtime_ns)}`` of every file under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(),
                                             p.stat().st_mtime_ns)
    return out


@pytest.fixture(scope="session")
def world_root(tmp_path_factory) -> Path:
    """Two simulated bootstrap days (2026-01-05, 2026-01-06), read-only for tests."""
    from reloop.sources.simulator import simulate

    root = tmp_path_factory.mktemp("world")
    simulate(tiny_params(root), DAY1, 2)
    return root


def copy_world(world_root: Path, dest: Path, **overrides: dict) -> Params:
    """A private copy of the session world under ``dest``; returns params pointing at it."""
    for sub in ("logs", "oracle"):
        shutil.copytree(world_root / sub, dest / sub)
    return tiny_params(dest, **overrides)
