"""Scheduled runs on your own logs wait for sealed input, under the real scheduler (slow).

An external-logs workspace (two days the built-in world logged, copied without their seals) is
run by `airflow backfill create` under a running scheduler (LocalExecutor):

* period 1 waits, in reschedule mode, while its day is unsealed: the sensor sits in
  ``up_for_reschedule`` between checks and no task instance is running, so it holds no worker
  slot; once the test seals the day, the run proceeds and promotes a model;
* period 2's day is never sealed: the run fails after ``pipeline.wait_timeout_s`` with a message
  naming the missing seal and how long it waited, nothing of period 2 ran, production is the
  model of period 1.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from reloop.data.logs.seal import seal_day
from reloop.registry import Registry
from tests.support.airflow import DAG_ID, airflow_components, backfill_create, scheduler_env
from tests.support.params import DAY1, DAY2, loop_params
from tests.support.tables import simulate_world

pytestmark = pytest.mark.slow

TIMEOUT_S = 100
# checks 20 s apart: with much shorter intervals, under load, Airflow 3.3 can mark a rescheduled
# sensor failed when the previous check's "finished" event reaches the scheduler after the next
# check was queued ("finished with state success, but the task instance's state attribute is
# queued")
POKE_S = 20


def _task_states(db: Path, day: str) -> dict[str, str]:
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT ti.task_id, ti.state FROM task_instance ti JOIN dag_run r "
            "ON ti.dag_id = r.dag_id AND ti.run_id = r.run_id "
            "WHERE r.dag_id = ? AND substr(r.logical_date, 1, 10) = ?", (DAG_ID, day)).fetchall()
    return {task: state for task, state in rows}


def _running(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT count(*) FROM task_instance WHERE state = 'running'"
                           ).fetchone()[0]


def _backfills_running(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT count(*) FROM backfill WHERE completed_at IS NULL"
                           ).fetchone()[0]


def _reschedules(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT count(*) FROM task_reschedule").fetchone()[0]


def _wait_for(what, predicate, timeout_s: float, procs, logs: Path):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        for p in procs:
            assert p.poll() is None, f"an Airflow component died; see {logs}"
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}; component logs in {logs}")


def test_a_scheduled_run_waits_for_the_seal_and_times_out_on_a_day_that_never_comes(tmp_path):
    world = simulate_world(tmp_path / "world")  # what a producer logged: parts, then seals
    for sub in ("logs", "oracle"):
        shutil.copytree(world / sub, tmp_path / sub, ignore=shutil.ignore_patterns("_seals"))
    params = loop_params(tmp_path, logs={"source": "external"},
                         pipeline={"wait_poke_s": POKE_S, "wait_timeout_s": TIMEOUT_S})
    cfg = tmp_path / "params.yaml"
    cfg.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    env = scheduler_env(tmp_path, cfg)
    db = tmp_path / "airflow" / "airflow.db"
    logs = tmp_path / "components"
    registry = Registry(params.pipeline.registry_root)
    with airflow_components(env, logs) as procs:
        backfill_create(env, DAY1, DAY1)
        # waiting: rescheduled at least twice, and between checks nothing is running
        _wait_for("the sensor to be rescheduled twice", lambda: _reschedules(db) >= 2, 300,
                  procs, logs)
        for _ in range(3):
            states = _task_states(db, DAY1)
            assert states["wait_for_logs"] in ("up_for_reschedule", "running", "queued"), states
            if states["wait_for_logs"] == "up_for_reschedule":
                assert _running(db) == 0  # the waiting run holds no worker slot
            assert states.get("ingest") in (None, "none", "scheduled"), states  # nothing ran
            time.sleep(2)
        assert registry.production() is None
        seal_day(params.logs.root, dt.date.fromisoformat(DAY1), params.join.window_minutes)
        _wait_for("period 1 to finish", lambda: _task_states(db, DAY1).get("archive") in
                  ("success", "failed", "upstream_failed"), 900, procs, logs)
        states = _task_states(db, DAY1)
        assert states["wait_for_logs"] == "success" and states["promote"] == "success", states
        first = registry.production()
        assert first is not None and first.lineage["period"] == DAY1

        # Airflow runs one backfill per DAG at a time, and the scheduler marks one complete some
        # seconds after its last run ends (18 s seen here)
        _wait_for("period 1's backfill to complete", lambda: _backfills_running(db) == 0, 300,
                  procs, logs)
        # period 2 is never sealed: the run fails after the timeout, production unchanged
        started = time.time()
        backfill_create(env, DAY2, DAY2)
        _wait_for("period 2's sensor to fail", lambda: _task_states(db, DAY2).get(
            "wait_for_logs") == "failed", 600, procs, logs)
        waited = time.time() - started
    assert waited >= TIMEOUT_S
    states = _task_states(db, DAY2)
    assert states.get("ingest") in (None, "upstream_failed"), states
    assert registry.production().model_id == first.model_id
    task_logs = "".join(p.read_text(errors="replace") for p in
                        (tmp_path / "airflow" / "logs").rglob("*wait_for_logs*/**/*.log"))
    if not task_logs:  # the log layout: .../run_id=.../task_id=wait_for_logs/attempt=1.log
        task_logs = "".join(p.read_text(errors="replace") for p in
                            (tmp_path / "airflow" / "logs").rglob("*.log")
                            if "wait_for_logs" in str(p))
    assert "Sensor has timed out" in task_logs and f"Period {DAY2} is still not sealed" in \
        task_logs and f"_seals/date={DAY2}.json" in task_logs
