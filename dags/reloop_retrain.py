"""The reloop retraining loop as an Airflow 3 DAG: one run per period, one task per stage.

The DAG holds no logic: each task calls :func:`reloop.stages.run_stage` for its stage and the
run's period, the same function the ``reloop stage`` command and ``dvc.yaml`` call. Heavy imports
(torch, Great Expectations, Evidently) happen inside the tasks. XCom carries only the small dicts
the stages return.

* Schedule: a *data-interval* timetable (:func:`reloop.ops.airflow.dag_schedule`), so each run
  covers exactly one period ``[data_interval_start, data_interval_end)``: daily by default,
  weekly (Mondays) when ``logs.period_days`` is 7, every ``period_days`` days otherwise. The
  period is ``data_interval_start``'s date, never the logical date alone (Airflow 3's plain cron
  schedules have zero-width intervals).
* Tasks and edges come from the declared stage graph (:data:`reloop.stages.STAGE_GRAPH`), the
  one ``dvc.yaml`` is generated from.
* Runs are sequential (``max_active_runs=1``), and a period's ingest refuses to start until the
  period before is decided (``pipeline.sequential``): each period starts from the model the
  previous one promoted. That is reloop's own rule, the same for ``reloop run``, ``reloop
  backfill`` and ``dvc repro``; Airflow's ``depends_on_past`` is not used, because a period
  finished outside Airflow would leave its failed Airflow run blocking the next one for ever.
* ``wait_for_logs`` (``logs.source: external``) waits, in reschedule mode and holding no worker
  slot, until ``pipeline.schedule_offset_minutes`` after the period's end (the attribution
  window of its last day's clicks) and until every day of the period is sealed; it fails after
  ``pipeline.wait_timeout_s`` naming what is missing (:mod:`reloop.ops.sensor`).
* After ``promote``, ``archive`` commits every artefact of the period to the DVC archive
  repository (``archive.root``), so any past period can be listed and restored, and ``publish``
  emits an event on the Asset ``reloop://production`` when production moved.
* Retries: a task is retried once after 30 s (a busy lock, a full disk), except on bad input
  (a failed validation, a quarantined or missing partition, a period out of order, a config
  error), which fails at
  once: a retry on the same logs would fail the same way.
* ``RELOOP_PARAMS`` points at the params file (default: the repository's ``params.yaml``).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from airflow.sdk import dag, get_current_context, task

from reloop.config import load_params  # pydantic and PyYAML only: no torch
from reloop.ops.airflow import dag_schedule, run_stage_task
from reloop.ops.sensor import PRODUCTION, SealedLogsSensor, publish_production
from reloop.stages import STAGE_GRAPH  # the declared graph only: no heavy imports

PARAMS_FILE = os.environ.get(
    "RELOOP_PARAMS", str(Path(__file__).resolve().parents[1] / "params.yaml")
)


PARAMS = load_params(PARAMS_FILE)
TIMETABLE, START = dag_schedule(PARAMS)
PIPELINE = PARAMS.pipeline


def _run(stage: str) -> dict:
    """Run ``stage`` for this DAG run's period (``data_interval_start``); bad input fails the
    task without a retry (:func:`reloop.ops.airflow.run_stage_task`)."""
    period = get_current_context()["data_interval_start"].date().isoformat()
    return run_stage_task(stage, PARAMS_FILE, period)


@task(task_id="publish", outlets=[PRODUCTION], retries=0)
def publish(decision: dict) -> dict:
    """An event on reloop://production when the period's promotion moved production."""
    return publish_production(decision, get_current_context())


@dag(
    dag_id="reloop_retrain",
    schedule=TIMETABLE,
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 1,
        "retry_delay": dt.timedelta(seconds=30),
    },
    tags=["reloop"],
    doc_md=__doc__,
)
def reloop_retrain():
    wait = SealedLogsSensor(task_id="wait_for_logs", params_file=PARAMS_FILE,
                            timeout=PIPELINE.wait_timeout_s, poke_interval=PIPELINE.wait_poke_s,
                            retries=0)
    # one task per stage, each running that stage for the run's period; edges from the graph
    t = {stage.name: task(task_id=stage.name)(_run)(stage.name) for stage in STAGE_GRAPH}
    for stage in STAGE_GRAPH:
        for before in stage.after or (wait,):
            (t[before] if isinstance(before, str) else before) >> t[stage.name]
    publish(t["promote"])


reloop_retrain()
