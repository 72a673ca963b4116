"""The ``pipeline``, ``evaluate`` and ``promote`` sections of ``params.yaml``.

Kept free of heavy imports and of :mod:`reloop.config` so the root config can import it.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ArchiveConfig", "EvaluateConfig", "PipelineConfig", "PromoteConfig"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PipelineConfig(_Section):
    """Where each stage writes its per-period artefacts, and which period ``dvc repro`` runs.

    Every stage writes ``<root>/date=YYYY-MM-DD/`` for the period starting on that date.
    """

    date: dt.date = Field(default=dt.date(2026, 1, 1), description="period `dvc repro` runs")
    models_root: str = "data/models"
    memory_root: str = "data/memory"
    evaluation_root: str = "reports/evaluation"
    decisions_root: str = "reports/decisions"
    registry_root: str = "data/registry"
    holdout_fraction: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="time-ordered tail of the period for evaluate"
    )
    memory_window_rows: int = Field(
        default=50_000, ge=1, description="most recent labelled rows the snapshot is built from"
    )
    snapshot_rows: Literal["fit", "holdout"] = Field(
        default="holdout",
        description="rows the serving snapshot is built from: the latest fit rows (the "
        "candidate trained on them) or the held-out tail (it never did; the freshest rows)",
    )
    plots_file: str = Field(
        default="reports/plots/periods.json",
        description="per-period curves (AUC, oracle, decision, drift) rebuilt by promote",
    )
    site_file: str = Field(
        default="reports/index.html",
        description="the workspace's report site: every period's validation pages, drift report, "
        "evaluation, decision and plots, linked relatively (reloop.ops.site)",
    )
    sequential: bool = Field(
        default=True,
        description="refuse to start a period while the previous one is started, not decided",
    )
    lock_file: str = Field(
        default="data/reloop.lock",
        description="workspace lock every stage holds while it runs",
    )
    lock_timeout_s: float = Field(
        default=3600.0, ge=0.0,
        description="how long a stage waits for another run's lock before failing",
    )
    schedule_offset_minutes: int = Field(
        default=90, ge=0, lt=1440,
        description="a scheduled run of period D (logs.source external) waits until this long "
        "after D's end (midnight UTC) before it checks the seals: at least the attribution "
        "window (join.window_minutes), so the next day's feedback D's join reads can be complete",
    )
    wait_timeout_s: float = Field(
        default=6 * 3600.0, gt=0.0,
        description="how long a scheduled run waits for its sealed input (logs.source external) "
        "before it fails naming what is missing; production is untouched",
    )
    wait_poke_s: float = Field(
        default=300.0, gt=0.0,
        description="how often the waiting run checks the seals (it holds no worker slot between)",
    )


class EvaluateConfig(_Section):
    """Candidate vs incumbent on the held-out tail."""

    slots: int = Field(default=10, ge=1, description="streaming slots; labels enter the memory")
    prefill: Literal["window", "none"] = Field(
        default="none",
        description="memories start from the latest fit rows (window) or empty (none: only "
        "rows neither model trained on, the holdout's own earlier slots, are written)",
    )
    bootstrap: int = Field(default=200, ge=1, description="paired bootstrap replicates")
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    seed: int = 0


class PromoteConfig(_Section):
    """The gate a candidate must pass to replace the incumbent."""

    compare: Literal["served", "memory", "base"] = Field(
        default="served",
        description="served: as serving will serve it (with memory iff serving.use_memory); "
        "memory: with memory; base: the model alone",
    )
    rule: Literal["point", "ci"] = Field(
        default="ci",
        description="point: the measured AUC gain and logloss change must meet the thresholds; "
        "ci: the candidate is refused only when the bootstrap CI shows it misses them",
    )
    min_auc_gain: float = -1.0e-3
    max_logloss_regression: float = Field(default=5.0e-3, ge=0.0)
    require_ci_excludes_zero: bool = False


class ArchiveConfig(_Section):
    """Per-period versioning: every artefact of a period committed to a git + DVC repository.

    The archive is its own git repository (``root``), not the code repository, so scheduled runs
    never add commits to your code's history. Point ``root`` at the code repository's root only if
    you want period commits there.
    """

    enabled: bool = Field(default=True, description="commit each period after promote")
    root: str = Field(default="data/archive", description="git + DVC repository of the periods")
    remote: str = Field(
        default="data/archive-remote",
        description="DVC remote: a local directory, or a URL such as s3://bucket/reloop",
    )
    push: bool = Field(default=True, description="`dvc push` after each period's commit")
