"""The ``pipeline`` section of ``params.yaml``: where a period's artefacts live, the holdout,
scheduling."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field

from reloop.config.base import Section

__all__ = ['PipelineConfig']


class PipelineConfig(Section):
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
