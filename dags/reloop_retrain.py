"""The reloop retraining loop as an Airflow 3 DAG: one run per period, one task per stage.

The DAG holds no logic: each task calls :func:`reloop.pipeline.run_stage` for its stage and the
run's period, the same function the ``reloop stage`` command and ``dvc.yaml`` call. Heavy imports
(torch, Great Expectations, Evidently) happen inside the tasks. XCom carries only the small dicts
the stages return.

* Schedule: a cron *data-interval* timetable, so each run covers exactly one period
  ``[data_interval_start, data_interval_end)``: daily by default, weekly (Mondays) when
  ``logs.period_days`` is 7. The period is ``data_interval_start``'s date, never the logical date
  alone (Airflow 3's plain cron schedules have zero-width intervals).
* Runs are sequential (``max_active_runs=1``, ``depends_on_past``): each period starts from the
  model the previous one promoted.
* After ``promote``, ``archive`` commits every artefact of the period to the DVC archive
  repository (``archive.root``), so any past period can be listed and restored.
* ``RELOOP_PARAMS`` points at the params file (default: the repository's ``params.yaml``).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task

from reloop.config import load_yaml  # pydantic and PyYAML only: no heavy imports
from reloop.pipeline import STAGES  # the stage table only: no heavy imports

PARAMS_FILE = os.environ.get(
    "RELOOP_PARAMS", str(Path(__file__).resolve().parents[1] / "params.yaml")
)


def _schedule_settings(path: str) -> tuple[str, dt.datetime]:
    """(cron, start) from params.yaml: daily or weekly periods from the world's first day."""
    raw = load_yaml(path) or {}  # repeated keys are refused, as by load_params
    days = int((raw.get("logs") or {}).get("period_days", 1))
    start = dt.date.fromisoformat(str((raw.get("simulator") or {}).get("start", "2026-01-01")))
    if days == 7:
        cron = "0 0 * * 1"
        start -= dt.timedelta(days=start.weekday())
    elif days == 1:
        cron = "0 0 * * *"
    else:
        raise ValueError(f"logs.period_days={days}: the DAG schedules 1 (daily) or 7 (weekly)")
    return cron, dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC)


CRON, START = _schedule_settings(PARAMS_FILE)


def _run(stage: str) -> dict:
    """Run ``stage`` for this DAG run's period (``data_interval_start``)."""
    from reloop.config import load_params
    from reloop.pipeline import run_stage

    period = get_current_context()["data_interval_start"].date().isoformat()
    return run_stage(stage, load_params(PARAMS_FILE), period)


@dag(
    dag_id="reloop_retrain",
    schedule=CronDataIntervalTimetable(CRON, timezone="UTC"),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args={
        "depends_on_past": True,
        "retries": 1,
        "retry_delay": dt.timedelta(seconds=30),
    },
    tags=["reloop"],
    doc_md=__doc__,
)
def reloop_retrain():
    # one task per stage of reloop.pipeline.STAGES, each running that stage for the run's period
    t = {name: task(task_id=name)(_run)(name) for name in STAGES}
    t["ingest"] >> t["validate"] >> t["join"]
    t["join"] >> t["drift"] >> t["promote"]
    t["join"] >> t["train"] >> t["memory"] >> t["evaluate"] >> t["promote"]
    t["promote"] >> t["archive"]


reloop_retrain()
