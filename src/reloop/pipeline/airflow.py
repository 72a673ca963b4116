"""Run the real Airflow DAG in-process over a date range (``reloop backfill``), and the demo.

For users without a running scheduler: each period's DAG run is executed with ``dag.test``, in
date order, against a project-local ``AIRFLOW_HOME`` (metadata DB and logs; created and migrated
on first use). With a scheduler, use ``airflow backfill create`` instead (see the README).

Airflow reads its configuration when it is first imported, so the environment is prepared before
any Airflow import, and this module imports Airflow only inside functions.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["airflow_env", "backfill", "period_starts"]

log = logging.getLogger(__name__)

DAG_ID = "reloop_retrain"


def period_starts(start: str | dt.date, end: str | dt.date, period_days: int) -> list[dt.date]:
    """Start dates of the periods from ``start`` to ``end`` (inclusive), in order."""
    from reloop.logs.store import as_date

    first, last = as_date(start, "--start"), as_date(end, "--end")
    if last < first:
        raise ValueError(f"--end {last} is before --start {first}; give the range in order")
    out, day = [], first
    while day <= last:
        out.append(day)
        day += dt.timedelta(days=period_days)
    return out


def airflow_env(home: str | Path, dags_folder: str | Path, params_file: str | Path) -> dict:
    """Environment for Airflow with a project-local home, our DAG folder and our params."""
    return {
        "AIRFLOW_HOME": str(Path(home).resolve()),
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(dags_folder).resolve()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "RELOOP_PARAMS": str(Path(params_file).resolve()),
        "GX_ANALYTICS_ENABLED": "false",
        "DVC_NO_ANALYTICS": "1",
        "DO_NOT_TRACK": "1",
    }


def _airflow_cli(env: dict, *args: str) -> None:
    cmd = [sys.executable, "-m", "airflow", *args]
    done = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`airflow {' '.join(args)}` failed:\n{done.stderr[-2000:]}")


def backfill(
    start: str | dt.date,
    end: str | dt.date,
    *,
    params_file: str | Path = "params.yaml",
    airflow_home: str | Path = ".airflow",
    dags_folder: str | Path = "dags",
) -> list[dict[str, Any]]:
    """Run the DAG for every period from ``start`` to ``end`` in order; stop at the first failure.

    Returns one ``{"period", "state", "seconds"}`` per period. A period whose run fails raises
    :class:`RuntimeError` after the failed run (production is untouched by a failed period).
    """
    import time

    from reloop.config import load_params

    params = load_params(params_file)
    starts = period_starts(start, end, params.logs.period_days)
    env = airflow_env(airflow_home, dags_folder, params_file)
    if not Path(env["AIRFLOW__CORE__DAGS_FOLDER"], "reloop_retrain.py").is_file():
        raise FileNotFoundError(f"no reloop_retrain.py in dags folder {dags_folder!r}")
    os.environ.update(env)  # before Airflow is imported in this process
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    _airflow_cli(env, "db", "migrate")
    _airflow_cli(env, "dags", "reserialize")

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=env["AIRFLOW__CORE__DAGS_FOLDER"])
    if DAG_ID not in bag.dags:
        raise RuntimeError(f"DAG {DAG_ID!r} did not load: {bag.import_errors}")
    dag = bag.dags[DAG_ID]
    step = dt.timedelta(days=params.logs.period_days)
    results = []
    for day in starts:
        t0 = time.perf_counter()
        # a data-interval timetable's manual run at X covers the period that ends at X
        end_of_period = dt.datetime.combine(day + step, dt.time(), tzinfo=dt.UTC)
        run = dag.test(logical_date=end_of_period)
        state = str(getattr(run.state, "value", run.state))
        results.append({"period": day.isoformat(), "state": state,
                        "seconds": round(time.perf_counter() - t0, 1)})
        log.info("period %s: DAG run %s (%.1fs)", day, state, results[-1]["seconds"])
        if state != "success":
            raise RuntimeError(f"the DAG run for period {day} ended {state}; later periods were "
                               "not run (production is unchanged by the failed period)")
    return results
