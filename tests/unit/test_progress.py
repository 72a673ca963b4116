"""What `reloop backfill` shows: key figures per stage, two lines per period, logs to a file."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys

from reloop.ops.progress import PeriodProgress, output_to_file, stage_figure
from reloop.stages import StageEvent, stage_listener

DAY = dt.date(2026, 1, 2)


def test_stage_figures_are_the_key_number_of_each_stage():
    assert stage_figure("ingest", {"impressions": 1234567}) == "1,234,567 impressions"
    assert stage_figure("join", {"rows": 204450, "ctr": 0.07944}) == "204,450 rows, CTR 0.079"
    assert stage_figure("drift", {"drifted_columns": 2, "columns_checked": list("abcde")}) \
        == "drift 2/5 columns"
    assert stage_figure("drift", {"drifted_columns": None}) == "no reference period yet"
    assert stage_figure("train", {"rows": 40890, "epochs": 2}) == "2 epochs on 40,890 rows"
    assert stage_figure("evaluate", {"candidate_base_auc": 0.68607, "candidate_memory_auc": 0.6891,
                                     "incumbent_base_auc": 0.66957,
                                     "incumbent_memory_auc": 0.67748}) \
        == "AUC candidate 0.6861 (+mem 0.6891) vs served 0.6696 (0.6775)"
    assert stage_figure("evaluate", {"candidate_base_auc": 0.5, "candidate_memory_auc": None}) \
        == "AUC candidate 0.5000 (+mem -)"
    assert stage_figure("promote", {"promoted": True, "model_id": "ac59eeab27773c1b"}) \
        == "promoted ac59eeab"
    assert stage_figure("promote", {"promoted": False, "model_id": "ac59eeab27773c1b"}) \
        == "kept the incumbent over ac59eeab"
    assert stage_figure("validate", {"success": False, "partitions": 2}) == "2 partitions FAILED"
    assert stage_figure("unknown", {"x": 1}) == ""


def test_a_period_prints_its_stage_times_then_its_figures():
    out = io.StringIO()  # not a terminal: no transient status lines
    shown = PeriodProgress(out)
    with stage_listener(shown):
        from reloop.stages.runner import _notify

        _notify(StageEvent("join", DAY, 1.04, result={"rows": 10, "ctr": 0.5}))
        _notify(StageEvent("promote", DAY, 0.2, result={"promoted": True, "model_id": "ab" * 8}))
    shown.period_done(DAY, "success", 12.34)
    assert out.getvalue().splitlines() == [
        "2026-01-02  success in 12 s: join 1 · promote 0",
        "            10 rows, CTR 0.500 · promoted abababab",
    ]
    assert shown.events == []  # the period's events are consumed


def test_a_failed_stage_names_itself_and_the_log_file(tmp_path):
    out = io.StringIO()
    shown = PeriodProgress(out)
    shown(StageEvent("train", DAY, 3.0, error=ValueError("train.lr=-1 must be > 0\nmore")))
    shown.period_done(DAY, "failed", 3.5, tmp_path / "x.log")
    assert out.getvalue().splitlines()[1:] == [
        "            train failed: train.lr=-1 must be > 0",
        f"            more (full log: {tmp_path / 'x.log'})"]
    # a validation failure's lines (partition, then each check) show, up to ERROR_LINES
    out = io.StringIO()
    shown = PeriodProgress(out)
    checks = "\n".join(f"  - check {i}" for i in range(12))
    shown(StageEvent("validate", DAY, 1.0, error=ValueError(f"validation failed:\n{checks}")))
    shown.period_done(DAY, "failed", 1.0)
    assert out.getvalue().splitlines()[1:] == [
        "            validate failed: validation failed:",
        *[f"              - check {i}" for i in range(7)],
        "            ... (5 more lines)"]


def test_a_listener_that_raises_does_not_fail_the_stage():
    from reloop.stages.runner import _notify

    def broken(event):
        raise RuntimeError("display bug")

    with stage_listener(broken):
        _notify(StageEvent("join", DAY, 1.0, result={}))  # logged, not raised


def test_output_to_file_catches_file_descriptors_and_children(tmp_path):
    log = tmp_path / "logs" / "run.log"
    code = f"""
import os, subprocess, sys, warnings
from reloop.ops.progress import output_to_file
with output_to_file({str(log)!r}) as terminal:
    print("python print")
    os.write(2, b"raw fd 2\\n")
    warnings.warn("a deprecation", DeprecationWarning, stacklevel=1)
    subprocess.run([sys.executable, "-c", "print('child')"], check=True)
    terminal.write("to the terminal\\n")
print("after")
"""
    done = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                          text=True, env={**os.environ})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "to the terminal\nafter\n" and done.stderr == ""
    text = log.read_text()
    for expected in ("python print", "raw fd 2", "a deprecation", "child"):
        assert expected in text
    assert "to the terminal" not in text


def test_output_to_file_appends(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("earlier run\n")
    with output_to_file(log):
        os.write(1, b"this run\n")
    assert log.read_text() == "earlier run\nthis run\n"
    sys.stdout.flush()



def test_the_airflow_ui_check_flags_runs_that_misreport_their_period():
    from reloop.ops.airflow_ui import check_runs

    good = {"dag_run_id": "backfill__2026-01-02T00:00:00+00:00", "run_type": "backfill",
            "triggering_user_name": "reloop backfill", "logical_date": "2026-01-02T00:00:00Z",
            "data_interval_start": "2026-01-02T00:00:00Z",
            "start_date": "2026-11-27T10:09:04Z", "end_date": "2026-11-27T10:11:58Z"}
    assert check_runs([good]) == []
    # what dag.test alone records: a manual run dated the next day, "started" on that date
    manual = good | {"dag_run_id": "manual__2026-11-27T10:06:13+00:00", "run_type": "manual",
                     "logical_date": "2026-01-03T00:00:00Z", "start_date": "2026-01-03T00:00:00Z"}
    problems = check_runs([manual])
    assert len(problems) == 4
    assert "run type 'manual'" in problems[0] and "is not the period start" in problems[1]
    assert "less than a day" in problems[3]
    assert check_runs([manual | {"triggering_user_name": "dag_test"}]) == []  # not ours
