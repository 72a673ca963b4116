"""The stages of a retraining period: one module per stage, each with ``run(params, start)``.

:mod:`reloop.stages.graph` declares the stages, their order and what each reads and writes (the
DAG and ``dvc.yaml`` both follow it); :mod:`reloop.stages.runner` runs one stage for one period
with the workspace lock and the period-order check. Each ``run`` takes the validated
:class:`~reloop.config.Params` and the period's start date, reads and writes only that period's
artefacts (:mod:`reloop.periods`), and returns a small JSON-ready dict (the Airflow task's XCom).

Importing this package imports no stage: torch, Great Expectations and Evidently load only when
a stage runs.
"""

from reloop.stages.graph import STAGE_GRAPH, STAGE_NAMES, upstream
from reloop.stages.runner import (
    STAGES,
    PeriodOrderError,
    StageEvent,
    check_previous_decided,
    period_workspace,
    run_period,
    run_stage,
    stage_listener,
)

__all__ = ["STAGES", "STAGE_GRAPH", "STAGE_NAMES", "PeriodOrderError", "StageEvent",
           "check_previous_decided", "period_workspace", "run_period", "run_stage",
           "stage_listener", "upstream"]
