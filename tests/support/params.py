"""Params builders: fast configurations whose every path lies under a given root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reloop.config import Params, params_from_dict

#: the first three days of the tiny built-in world (its ``simulator.start`` is DAY1)
DAY1, DAY2, DAY3 = "2026-01-05", "2026-01-06", "2026-01-07"

#: the built-in world's fields, at the tiny world's bucket counts
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

#: cardinalities of the fields ``f0`` .. ``f4`` of :func:`tests.support.tables.small_table`
SMALL_CARDINALITIES = (50, 30, 20, 10, 5)

#: the per-period artefact roots of :func:`loop_params` (``<root>/<name>/date=D/``)
ARTEFACT_ROOTS = ("models", "memory", "evaluation", "decisions")

#: a gate every candidate passes: each period moves production
PASS_ALL = {"min_auc_gain": -1.0, "max_logloss_regression": 10.0}


def small_params(**overrides: dict) -> Params:
    """A fast configuration over the fields of :func:`tests.support.tables.small_table`."""
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


def tiny_params(root: Path, **overrides: dict) -> Params:
    """A fast configuration of the tiny built-in world whose every path lies under ``root``."""
    raw = {
        "features": {"fields": FIELDS},
        "model": {"backbone": "deepfm", "embedding_dim": 4, "mlp_hidden": [16, 8]},
        "train": {"loss": "reloop", "alpha": 0.5, "batch_size": 256, "max_epochs": 1,
                  "num_threads": 2, "seed": 3},
        "logs": {"root": str(root / "logs"), "oracle_root": str(root / "oracle"),
                 "quarantine_root": str(root / "quarantine")},
        "simulator": {"seed": 7, "start": DAY1, "impressions_per_day": 2000,
                      "users": 300, "segments": 4, "categories": 6, "latent_dim": 4,
                      "initial_items": 60, "new_items_per_day": 5, "slot_minutes": 120,
                      "click_delay_median_seconds": 900.0,
                      "shift_days": [1]},
        "serving": {"batch_size": 4096},
        "join": {"out_root": str(root / "joined"), "window_minutes": 60},
        "validate": {"out_root": str(root / "reports" / "validation"), "min_rows": 100,
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


def loop_params(root: Path, **overrides) -> Params:
    """:func:`tiny_params` with the loop's artefacts, registry and lock under ``root`` and a
    quick evaluation (20 bootstrap resamples, 4 slots)."""
    pipeline = {f"{name}_root": str(root / name) for name in ARTEFACT_ROOTS}
    pipeline["registry_root"] = str(root / "registry")
    pipeline["lock_file"] = str(root / "reloop.lock")
    pipeline["plots_file"] = str(root / "reports" / "plots" / "periods.json")
    pipeline |= overrides.pop("pipeline", {})
    evaluate = {"bootstrap": 20, "slots": 4} | overrides.pop("evaluate", {})
    return tiny_params(root, pipeline=pipeline, evaluate=evaluate, **overrides)


def replay_params(root: Path, dataset: str, **overrides) -> Params:
    """:func:`tiny_params` replaying ``dataset``: its suggested features, any row count valid."""
    from reloop.sources.replay import suggested_features

    base = tiny_params(root).model_dump(mode="json", by_alias=True)
    base["features"] = suggested_features(dataset)
    base["replay"]["dataset"] = dataset
    base["validate"]["min_rows"] = 1
    for section, values in overrides.items():
        base.setdefault(section, {}).update(values)
    return params_from_dict(base)


def serve_params(root: Path, **serve: Any) -> Params:
    """:func:`tiny_params` with every path under ``root``, a registry and a client clock."""
    return tiny_params(
        root,
        pipeline={"lock_file": str(root / "reloop.lock"),
                  "registry_root": str(root / "registry"),
                  "plots_file": str(root / "plots.json")},
        serve={"state_dir": str(root / "serve"), "clock": "client", "tick_seconds": 0.05,
               "poll_seconds": 0.1, "flush_seconds": 0.3, **serve},
    )


def workspace_params(root: Path = Path("."), **overrides: Any) -> Params:
    """The fault campaign's workspace: :func:`loop_params` relative to ``root`` (``.``: the
    working directory), the archive on and the :data:`PASS_ALL` gate."""
    return loop_params(root, archive={"enabled": True} | overrides.pop("archive", {}),
                       promote=PASS_ALL | overrides.pop("promote", {}), **overrides)


def workspace_replay_params(root: Path = Path(".")) -> Params:
    """The fault campaign's ``replay.yaml``: the MovieLens-100K replay, its raw logs in
    ``replay-logs/``."""
    return replay_params(root, "movielens-100k",
                         logs={"source": "replay", "root": str(root / "replay-logs"),
                               "oracle_root": str(root / "replay-oracle"),
                               "quarantine_root": str(root / "replay-quarantine")})


def write_params(params: Params, path: Path) -> Path:
    """``params`` as a params.yaml at ``path`` (the names ``load_params`` reads); returns it."""
    path.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    return path
