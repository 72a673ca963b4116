"""The retraining DAG: import, structure, schedule, and a real in-process run of two periods."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reloop.registry import Registry
from tests.support.params import DAY1, DAY2, loop_params, write_params

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
STAGES = ["ingest", "validate", "join", "drift", "train", "memory", "evaluate", "promote",
          "archive"]


def _load_dag(monkeypatch, params_file: Path):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("RELOOP_PARAMS", str(params_file))
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags["reloop_retrain"]


def test_dag_structure_and_daily_schedule(monkeypatch, tmp_path):
    from airflow.sdk import CronDataIntervalTimetable

    dag = _load_dag(monkeypatch, write_params(loop_params(tmp_path), tmp_path / "params.yaml"))
    assert sorted(dag.task_ids) == sorted([*STAGES, "wait_for_logs", "publish"])
    chain = ["wait_for_logs", "ingest", "validate", "join", "train", "memory", "evaluate",
             "promote", "archive"]
    for up, down in zip(chain, chain[1:], strict=False):
        extra = {"drift"} if up == "join" else {"publish"} if up == "promote" else set()
        assert dag.get_task(up).downstream_task_ids == {down} | extra
    assert dag.get_task("drift").upstream_task_ids == {"join"}
    assert dag.get_task("drift").downstream_task_ids == {"promote"}  # plots carry drift share
    assert dag.max_active_runs == 1 and dag.catchup is False
    # ordering is reloop's own check (ingest refuses a period whose previous one is undecided):
    # with depends_on_past a period finished outside Airflow blocked the next run for ever
    assert not any(t.depends_on_past for t in dag.tasks)
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.expression == "0 0 * * *"
    sensor = dag.get_task("wait_for_logs")
    assert (sensor.mode, sensor.timeout, sensor.poke_interval) == ("reschedule", 21600.0, 300.0)
    assert [a.uri for a in dag.get_task("publish").outlets] == ["reloop://production/"]
    from reloop.stages import STAGE_GRAPH

    for stage in STAGE_GRAPH:  # the edges are the declared graph's (dvc.yaml is generated from it)
        assert dag.get_task(stage.name).upstream_task_ids == set(stage.after or ["wait_for_logs"])


def test_weekly_periods_schedule_weekly(monkeypatch, tmp_path):
    params = loop_params(tmp_path, logs={"period_days": 7})
    dag = _load_dag(monkeypatch, write_params(params, tmp_path / "params.yaml"))
    assert dag.timetable.expression == "0 0 * * 1"
    assert dag.start_date.weekday() == 0  # periods start on Mondays


@pytest.mark.parametrize(("days", "source", "first"), [
    (1, "simulator", "2026-01-01"),   # a Thursday: the world's first day
    (7, "simulator", "2026-01-05"),   # the world's first Monday (it has no days before its start)
    (7, "external", "2025-12-29"),    # the Monday on or before
    (14, "simulator", "2026-01-05"),  # every 14 days from a Monday
    (3, "external", "2026-01-01"),    # no fixed phase: from the first day
])
def test_every_period_length_gets_a_schedule_of_its_periods(tmp_path, days, source, first):
    import datetime as dt

    from reloop.ops.airflow import dag_schedule
    from reloop.periods import check_period_start

    params = loop_params(tmp_path, logs={"period_days": days, "source": source},
                         simulator={"start": "2026-01-01"})
    timetable, start = dag_schedule(params)
    assert start == dt.datetime.fromisoformat(first + "T00:00:00+00:00")
    check_period_start(start.date(), days)  # a period start by the stages' own rule
    every = {1: "0 0 * * *", 7: "0 0 * * 1"}.get(days, dt.timedelta(days=days))
    assert getattr(timetable, "expression" if days in (1, 7) else "delta") == every


def test_a_three_day_period_dag_loads(monkeypatch, tmp_path):
    # logs.period_days accepts 1..31; the DAG used to fail to import for anything but 1 and 7
    params = loop_params(tmp_path, logs={"period_days": 3})
    dag = _load_dag(monkeypatch, write_params(params, tmp_path / "params.yaml"))
    assert dag.start_date.date() == params.simulator.start


def test_dag_file_is_cheap_to_import():
    code = ("import sys, time; t = time.time(); import runpy; "
            f"runpy.run_path({str(DAGS / 'reloop_retrain.py')!r}); "
            "heavy = [m for m in ('torch', 'great_expectations', 'evidently', 'polars') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "RELOOP_PARAMS": str(ROOT / "params.yaml")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"  # heavy imports stay inside the tasks


def _dag_runs(airflow_db: Path) -> list[dict]:
    """The DAG runs Airflow recorded, read straight from its metadata DB (what the UI shows)."""
    import sqlite3

    with sqlite3.connect(airflow_db) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT run_id, run_type, state, logical_date, data_interval_start, "
                          "data_interval_end, start_date, end_date FROM dag_run "
                          "WHERE dag_id = 'reloop_retrain' ORDER BY logical_date").fetchall()
    return [dict(r) for r in rows]


def _utc(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def test_backfill_runs_the_real_dag_for_two_periods(tmp_path):
    from reloop.archive import list_periods

    params = loop_params(tmp_path, archive={"enabled": True})
    cfg = write_params(params, tmp_path / "params.yaml")
    cmd = [sys.executable, "-m", "reloop.cli", "backfill", "--start", DAY1, "--end", DAY2,
           "--params", str(cfg), "--airflow-home", str(tmp_path / "airflow"),
           "--dags-folder", str(DAGS), "--json"]
    began = dt.datetime.now(dt.UTC)
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    ended = dt.datetime.now(dt.UTC)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(done.stdout)  # nothing but the JSON: Airflow's logs went to the log file
    assert [r["period"] for r in runs] == [DAY1, DAY2]
    assert {r["state"] for r in runs} == {"success"}
    log_file = tmp_path / "logs" / f"backfill_{DAY1}_{DAY2}.log"
    text = log_file.read_text()
    assert "[DAG TEST]" in text and f"stage promote, period {DAY2}" in text
    # Airflow recorded two backfill runs, each named by its period, started when it ran
    recorded = _dag_runs(tmp_path / "airflow" / "airflow.db")
    assert [r["run_type"] for r in recorded] == ["backfill", "backfill"]
    assert [r["state"] for r in recorded] == ["success", "success"]
    for r, day in zip(recorded, [DAY1, DAY2], strict=True):
        start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
        assert _utc(r["logical_date"]) == _utc(r["data_interval_start"]) == start
        assert _utc(r["data_interval_end"]) == start + dt.timedelta(days=1)
        assert r["run_id"] == f"backfill__{start.isoformat()}"
        assert began <= _utc(r["start_date"]) <= _utc(r["end_date"]) <= ended
    # a rerun of a period, as a person sees it: a header and two lines per period, the logs
    # appended to the same file; Airflow still holds one run per period
    again = subprocess.run(cmd[:5] + [DAY2, "--end", DAY2] + cmd[8:-1], capture_output=True,
                           text=True, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    lines = again.stdout.splitlines()
    assert len(lines) == 5 and again.stderr == "", again.stdout + again.stderr
    assert lines[0].startswith(f"reloop backfill: 1 period(s) {DAY2} .. {DAY2}")
    assert lines[1].endswith(f"backfill_{DAY2}_{DAY2}.log")
    assert lines[2].startswith(f"{DAY2}  success in ")
    # every stage with its seconds, in the order they ran
    assert sorted(p.split()[0] for p in lines[2].split(": ", 1)[1].split(" · ")) == sorted(STAGES)
    assert "AUC candidate" in lines[3] and "promoted" in lines[3]
    assert lines[4].startswith("1 period(s) succeeded in ")
    recorded_again = _dag_runs(tmp_path / "airflow" / "airflow.db")
    assert [r["logical_date"] for r in recorded_again] == [r["logical_date"] for r in recorded]
    assert recorded_again[1]["start_date"] > recorded[1]["end_date"]
    registry = Registry(params.pipeline.registry_root)
    versions = registry.versions()
    assert [v.lineage["period"] for v in versions] == [DAY1, DAY2]
    assert versions[1].lineage["parent_id"] == versions[0].model_id
    assert registry.production() is not None
    assert (tmp_path / "airflow" / "airflow.db").is_file()  # project-local metadata DB
    # the archive task versioned both periods, in their own repository
    archived = list_periods(params)
    assert [(a["period"], a["tag"]) for a in archived] == [
        (DAY1, f"period-{DAY1}"), (DAY2, f"period-{DAY2}")]
    assert Path(params.archive.root, ".git").is_dir() and not (tmp_path / ".git").exists()
    plots = json.loads(Path(params.pipeline.plots_file).read_text())
    assert [row["period"] for row in plots] == [DAY1, DAY2]
    assert all(row["drift_share"] is not None for row in plots[1:])


@pytest.mark.slow
def test_a_period_finished_outside_airflow_does_not_block_the_next_backfill(tmp_path):
    # DAY1's DAG run fails (a threshold no day meets), the period is then finished with
    # `reloop run`; DAY2's backfill used to wait for ever on DAY1's failed Airflow tasks
    # (depends_on_past), printing nothing
    good = loop_params(tmp_path)
    bad = good.model_copy(update={"validate_": good.validate_.model_copy(
        update={"min_rows": 10_000_000})})
    good_file = write_params(good, tmp_path / "params.yaml")
    bad_file = write_params(bad, tmp_path / "bad.yaml")

    def backfill(day: str, params: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "reloop.cli", "backfill", "--start", day, "--end", day,
             "--params", str(params), "--airflow-home", str(tmp_path / "airflow"),
             "--dags-folder", str(DAGS)], capture_output=True, text=True, cwd=tmp_path,
            timeout=600)

    failed = backfill(DAY1, bad_file)
    assert failed.returncode == 2 and "validate failed" in failed.stdout, failed.stdout
    done = subprocess.run([sys.executable, "-m", "reloop.cli", "run", "--date", DAY1,
                           "--params", str(good_file)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    second = backfill(DAY2, good_file)
    assert second.returncode == 0, second.stdout + second.stderr[-2000:]
    assert f"{DAY2}  success in " in second.stdout
    versions = Registry(good.pipeline.registry_root).versions()
    assert [v.lineage["period"] for v in versions] == [DAY1, DAY2]


def test_backfill_refuses_a_reversed_range(tmp_path):
    cfg = write_params(loop_params(tmp_path), tmp_path / "params.yaml")
    done = subprocess.run([sys.executable, "-m", "reloop.cli", "backfill", "--start", DAY2,
                           "--end", DAY1, "--params", str(cfg)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 2 and "is before --start" in done.stderr
    assert not (tmp_path / ".airflow").exists()
    assert not (tmp_path / "logs").exists()  # refused before any log file is opened


@pytest.mark.parametrize("bad", ["2026-13-01", "yesterday"])
def test_invalid_date_is_named(tmp_path, bad):
    cfg = write_params(loop_params(tmp_path), tmp_path / "params.yaml")
    done = subprocess.run([sys.executable, "-m", "reloop.cli", "stage", "train", "--date", bad,
                           "--params", str(cfg)], capture_output=True, text=True)
    assert done.returncode == 2 and "not a valid ISO date" in done.stderr


def test_bad_input_fails_the_task_without_a_retry_and_a_busy_lock_is_retried(tmp_path):
    # a deterministic error (here: a weekly period that does not start on a Monday) fails at
    # once: a retry 30 s later on the same input would fail the same way
    from airflow.sdk.exceptions import AirflowFailException

    from reloop.lock import WorkspaceBusyError, workspace_lock
    from reloop.ops.airflow import run_stage_task

    params = loop_params(tmp_path, logs={"period_days": 7}, pipeline={"lock_timeout_s": 0.2})
    cfg = write_params(params, tmp_path / "params.yaml")
    with pytest.raises(AirflowFailException, match=r"ValueError: .*2026-01-06.*Monday") as err:
        run_stage_task("ingest", cfg, "2026-01-06")  # a Tuesday
    assert isinstance(err.value.__cause__, ValueError)
    # a transient error keeps its own type, so the DAG's retry applies
    script = ("import sys, time; from reloop.lock import workspace_lock\n"
              f"with workspace_lock({str(params.pipeline.lock_file)!r}, 5, what='holder'):\n"
              "    print('held', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkspaceBusyError, match="pipeline.lock_timeout_s"):
            run_stage_task("ingest", cfg, "2026-01-05")
    finally:
        holder.kill()
        holder.wait()
    with workspace_lock(params.pipeline.lock_file, 1, what="after"):  # released by the kernel
        pass


def test_a_failed_backfill_run_says_whether_its_promote_moved_production(tmp_path):
    # archive runs after promote: a run that failed there has moved production already
    import time

    from reloop.atomic import write_json
    from reloop.ops.airflow import _production_after_failure
    from reloop.periods import decision_path

    params = loop_params(tmp_path)
    day = dt.date(2026, 1, 5)
    began = time.time()
    assert _production_after_failure(params, day, began) == (
        "production is unchanged by the failed period")
    path = decision_path(params, day)
    write_json(path, {"candidate": "ab" * 8, "production_moved": True})
    assert _production_after_failure(params, day, began).startswith(
        f"its promote task had finished and moved production to {'ab' * 8}")
    write_json(path, {"candidate": "ab" * 8, "production_moved": False})
    assert _production_after_failure(params, day, began).startswith(
        "production is unchanged: its promote task kept the incumbent")
    # a decision an earlier run wrote says nothing of this run
    assert _production_after_failure(params, day, time.time() + 10) == (
        "production is unchanged by the failed period")
