"""Run the real Airflow DAG in-process over a date range (``reloop backfill``), and the demo.

For users without a running scheduler: each period's DAG run is executed with ``dag.test``, in
date order, against a project-local ``AIRFLOW_HOME`` (metadata DB and logs; created and migrated
on first use). With a scheduler, use ``airflow backfill create`` instead (see the README).

Airflow reads its configuration when it is first imported, so the environment is prepared before
any Airflow import, and this module imports Airflow only inside functions.

The project-local home is configured for one machine (:func:`configure_home`, run by ``make
install`` and by :func:`backfill`): the API server and the scheduler's health check bind to
127.0.0.1, ``[core] parallelism`` is the machine's CPU count, and the executor is
:data:`EXECUTOR`, Airflow's LocalExecutor without the log server (Airflow 3.3 binds that server
to every interface and has no setting for its host; task logs are files under the home anyway).

``python -m reloop.ops.airflow HOME`` configures the home ``HOME``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["EXECUTOR", "airflow_env", "airflow_settings", "backfill", "configure_home",
           "dag_schedule", "machine_parallelism", "period_starts", "recorded_as_backfill",
           "run_stage_task"]

log = logging.getLogger(__name__)

DAG_ID = "reloop_retrain"


def period_starts(start: str | dt.date, end: str | dt.date, period_days: int) -> list[dt.date]:
    """Start dates of the periods from ``start`` to ``end`` (inclusive), in order; ``start``
    must be a period start (weekly periods start on Mondays)."""
    from reloop.periods import as_date, check_period_start

    first = check_period_start(start, period_days, "--start")
    last = as_date(end, "--end")
    if last < first:
        raise ValueError(f"--end {last} is before --start {first}; give the range in order")
    out, day = [], first
    while day <= last:
        out.append(day)
        day += dt.timedelta(days=period_days)
    return out


def dag_schedule(params: Params) -> tuple[Any, dt.datetime]:
    """The DAG's timetable and start: one data interval per period of ``logs.period_days`` days.

    Daily periods run at midnight UTC and weekly ones on Mondays (cron); periods of another
    length run every ``period_days`` days (a delta timetable), those of a multiple of 7 days from
    a Monday, as :func:`reloop.periods.period_start` has them. The first period is the one that
    starts on ``simulator.start`` or, for periods that start on Mondays, on the first Monday of
    the built-in world (on or after its first day: it has no earlier days) or the Monday on or
    before that day for logs from elsewhere.
    """
    from airflow.sdk import CronDataIntervalTimetable
    from airflow.sdk.definitions.timetables.interval import DeltaDataIntervalTimetable

    days, start = params.logs.period_days, params.simulator.start
    if days % 7 == 0:
        back = start.weekday()
        start += dt.timedelta(days=(7 - back) % 7 if params.logs.source == "simulator" else -back)
    if days == 1:
        timetable = CronDataIntervalTimetable("0 0 * * *", timezone="UTC")
    elif days == 7:
        timetable = CronDataIntervalTimetable("0 0 * * 1", timezone="UTC")
    else:
        timetable = DeltaDataIntervalTimetable(dt.timedelta(days=days))
    return timetable, dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC)


#: ``[core] executor`` of the project-local home: :class:`LocalExecutor` below
EXECUTOR = "reloop.ops.airflow.LocalExecutor"


def run_stage_task(stage: str, params_file: str | Path, period: str) -> dict[str, Any]:
    """A DAG task's body: :func:`reloop.stages.run_stage` for ``stage`` and ``period``, with the
    params re-read from ``params_file`` (an edit applies to the next task, not only to the next
    DAG parse).

    Bad input fails the task at once, without the DAG's retry: reloop's data, config and
    validation errors are ``ValueError`` subclasses (a quarantined partition, a failed check, a
    missing partition, a mismatched seal, an unknown parameter), and a rerun 30 s later on the
    same logs fails the same way. They are re-raised as Airflow's ``AirflowFailException``,
    chained to the original and carrying its message. Anything else (a busy workspace lock, a
    full disk, a killed worker) is left to the retry.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from reloop.config import load_params
    from reloop.stages import run_stage

    try:
        return run_stage(stage, load_params(params_file), period)
    except ValueError as err:  # deterministic: the same input fails the same way on a retry
        raise AirflowFailException(f"{type(err).__name__}: {err}") from err


def __getattr__(name: str) -> Any:
    """``LocalExecutor``: Airflow's LocalExecutor without the log server (``serve_logs`` off,
    so ``airflow scheduler`` starts none). Built on first use, so importing this module does not
    import Airflow; Airflow imports it by its dotted name, :data:`EXECUTOR`."""
    if name != "LocalExecutor":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from airflow.executors.local_executor import LocalExecutor as AirflowLocalExecutor

    cls = type("LocalExecutor", (AirflowLocalExecutor,), {
        "__module__": "reloop.ops.airflow",
        "__qualname__": "LocalExecutor",
        "__doc__": "Airflow's LocalExecutor without the log server (see the module docstring).",
        "serve_logs": False,
    })
    globals()[name] = cls
    return cls


def machine_parallelism() -> int:
    """Task processes Airflow may run at once here: the CPUs this process may use (at most
    Airflow's default of 32)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(32, cpus))


def airflow_settings() -> dict[tuple[str, str], str]:
    """``{(section, key): value}`` of the project-local home (see the module docstring)."""
    return {
        ("core", "executor"): EXECUTOR,
        ("core", "parallelism"): str(machine_parallelism()),
        ("core", "load_examples"): "False",
        ("api", "host"): "127.0.0.1",
        ("scheduler", "scheduler_health_check_server_host"): "127.0.0.1",
    }


def configure_home(home: str | Path) -> Path:
    """Write :func:`airflow_settings` into ``HOME/airflow.cfg``; returns its path.

    An existing file (e.g. the one ``airflow db migrate`` generates) is edited in place: each
    key's active line is replaced, or the key is added at the top of its section, so Airflow's
    comments stay. A missing file is created with just these settings (Airflow's defaults
    apply to the rest). Rerunning changes nothing.
    """
    path = Path(home) / "airflow.cfg"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text().splitlines() if path.is_file() else []
    for (section, key), value in airflow_settings().items():
        _set_option(lines, section, key, value)
    text = "\n".join(lines) + "\n"
    if not path.is_file() or path.read_text() != text:
        from reloop.atomic import write_text

        # the file holds Airflow's secret keys: keep its mode (Airflow creates it 0600); the
        # temporary file is 0600 from its creation
        mode = path.stat().st_mode & 0o777 if path.is_file() else 0o600
        write_text(path, text, mode=mode)
    return path


def _set_option(lines: list[str], section: str, key: str, value: str) -> None:
    """Set ``key = value`` in ``[section]`` of the INI text ``lines`` (edited in place)."""
    header = re.compile(r"^\s*\[([^\]]+)\]\s*$")
    option = re.compile(rf"^\s*{re.escape(key)}\s*=")
    start = next((i for i, line in enumerate(lines)
                  if (m := header.match(line)) and m.group(1).strip() == section), None)
    if start is None:
        lines += ([""] if lines else []) + [f"[{section}]", f"{key} = {value}"]
        return
    end = next((i for i in range(start + 1, len(lines)) if header.match(lines[i])), len(lines))
    for i in range(start + 1, end):
        if option.match(lines[i]):
            lines[i] = f"{key} = {value}"
            return
    lines.insert(start + 1, f"{key} = {value}")


def airflow_env(home: str | Path, dags_folder: str | Path, params_file: str | Path) -> dict:
    """Environment for Airflow with a project-local home, our DAG folder and our params.

    It carries :func:`airflow_settings` too, so they hold even for a home configured otherwise.
    """
    from reloop.numerics import pin_numerics

    settings = {f"AIRFLOW__{section.upper()}__{key.upper()}": value
                for (section, key), value in airflow_settings().items()}
    return {
        **pin_numerics(dict(os.environ)),  # reproducible MKL in the tasks (reloop.numerics)
        "AIRFLOW_HOME": str(Path(home).resolve()),
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(dags_folder).resolve()),
        **settings,
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
    log_file: str | Path | None = None,
    progress: TextIO | None = None,
) -> list[dict[str, Any]]:
    """Run the DAG for every period from ``start`` to ``end`` in order; stop at the first failure.

    Returns one ``{"period", "state", "seconds"}`` per period. A period whose run fails raises
    :class:`RuntimeError` after the failed run (production is untouched by a failed period).

    Each period's run is recorded in Airflow as a backfill run of that period
    (:func:`recorded_as_backfill`). With ``log_file``, everything Airflow and the stages print
    goes to that file (appended); with ``progress``, two lines per period are written there
    (:class:`reloop.ops.progress.PeriodProgress`).
    """
    from reloop.config import load_params
    from reloop.ops.progress import output_to_file

    # everything that can be refused is refused before the terminal is redirected
    params = load_params(params_file)
    starts = period_starts(start, end, params.logs.period_days)
    if params.logs.source == "simulator":  # every period inside the world, before any run
        from reloop.sources.world import check_horizon

        check_horizon(params.simulator,
                      starts[-1] + dt.timedelta(days=params.logs.period_days - 1))
    env = airflow_env(airflow_home, dags_folder, params_file)
    if not Path(env["AIRFLOW__CORE__DAGS_FOLDER"], "reloop_retrain.py").is_file():
        raise FileNotFoundError(
            f"no reloop_retrain.py in the dags folder {env['AIRFLOW__CORE__DAGS_FOLDER']}; run "
            "from the checkout's root or pass --dags-folder (the checkout's dags/)")
    if log_file is None:
        return _backfill(params, starts, env, progress, None)
    log_file = Path(log_file).resolve()
    with output_to_file(log_file) as terminal:
        return _backfill(params, starts, env, terminal if progress is not None else None,
                         log_file)


def _backfill(params: Params, starts: list[dt.date], env: dict, out: TextIO | None,
              log_file: Path | None) -> list[dict[str, Any]]:
    import time

    from reloop.ops.progress import PeriodProgress
    from reloop.stages import stage_listener

    os.environ.update(env)  # before Airflow is imported in this process
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    _airflow_cli(env, "db", "migrate")
    configure_home(env["AIRFLOW_HOME"])  # after: migrate writes the default airflow.cfg
    _airflow_cli(env, "dags", "reserialize")

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=env["AIRFLOW__CORE__DAGS_FOLDER"])
    if DAG_ID not in bag.dags:
        raise RuntimeError(f"DAG {DAG_ID!r} did not load: {bag.import_errors}")
    dag = bag.dags[DAG_ID]
    step = dt.timedelta(days=params.logs.period_days)
    shown = PeriodProgress(out) if out is not None else None
    if out is not None:
        out.write(f"reloop backfill: {len(starts)} period(s) {starts[0]} .. {starts[-1]}, DAG "
                  f"{DAG_ID} in-process, Airflow home {env['AIRFLOW_HOME']}\n"
                  + (f"Airflow's and the stages' logs: {log_file}\n" if log_file else ""))
        out.flush()
    results = []
    with stage_listener(shown) if shown is not None else contextlib.nullcontext():
        for day in starts:
            t0, began = time.perf_counter(), time.time()
            first = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
            with recorded_as_backfill(first, first + step):
                # a backfill never waits for input: the stages refuse an unsealed period
                run = dag.test(logical_date=first, run_after=first + step,
                               mark_success_pattern="wait_for_logs")
            state = str(getattr(run.state, "value", run.state))
            results.append({"period": day.isoformat(), "state": state,
                            "seconds": round(time.perf_counter() - t0, 1)})
            log.info("period %s: DAG run %s (%.1fs)", day, state, results[-1]["seconds"])
            if shown is not None:
                shown.period_done(day, state, results[-1]["seconds"], log_file)
            if state != "success":
                raise RuntimeError(
                    f"the DAG run for period {day} ended {state}; later periods were not run "
                    f"({_production_after_failure(params, day, began)})"
                    + (f"; Airflow's log: {log_file}" if log_file else ""))
    return results


def _production_after_failure(params: Params, day: dt.date, began: float) -> str:
    """What a failed DAG run (started at ``began``, epoch seconds) did to production: nothing,
    unless its ``promote`` task had finished (a later task, ``archive``, failed) and moved it,
    which the decision it wrote records."""
    from reloop.jsonio import read_json
    from reloop.periods import decision_path

    path = decision_path(params, day)
    if not path.is_file() or path.stat().st_mtime < began:  # none, or an earlier run's
        return "production is unchanged by the failed period"
    decision = read_json(path)
    if decision.get("production_moved"):
        return (f"its promote task had finished and moved production to "
                f"{decision.get('candidate')} ({path}); a task after it failed")
    return f"production is unchanged: its promote task kept the incumbent ({path})"


@contextlib.contextmanager
def recorded_as_backfill(interval_start: dt.datetime, interval_end: dt.datetime) -> Iterator[None]:
    """While the block runs, ``dag.test`` records its run as Airflow's own backfill would.

    ``dag.test`` (Airflow 3.3) records a *manual* run whose logical date is the one it is given
    and whose start date is that logical date: for a data-interval schedule that is either the
    next period (the UI then shows every run a day late) or a run that "lasted" from the period
    to now (durations of weeks). Here the run is created as ``airflow backfill create`` creates
    one (:func:`airflow.models.backfill._create_backfill_dag_run_non_partitioned`): run type
    ``backfill``, run id ``backfill__<period start>``, logical date the period start, data
    interval the period, started now; its end date is set when it finishes. An earlier run of the
    same period is replaced, as ``dag.test`` replaces one.

    This swaps ``dag.test``'s helper ``airflow.models.dagrun.get_or_create_dagrun`` (which it
    imports when called) for the duration of the block.
    """
    from airflow.models import dagrun
    from airflow.sdk import timezone
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import select

    def create(*, dag, session, conf, **_ignored):
        old = session.scalar(select(dagrun.DagRun).where(
            dagrun.DagRun.dag_id == dag.dag_id, dagrun.DagRun.logical_date == interval_start))
        if old is not None:
            session.delete(old)
            session.commit()
        run = dag.create_dagrun(
            run_id=dagrun.DagRun.generate_run_id(run_type=DagRunType.BACKFILL_JOB,
                                                 logical_date=interval_start,
                                                 run_after=interval_start),
            logical_date=interval_start,
            data_interval=(interval_start, interval_end),
            run_after=interval_end,
            conf=conf,
            run_type=DagRunType.BACKFILL_JOB,
            state=DagRunState.RUNNING,
            triggered_by=DagRunTriggeredByType.BACKFILL,
            triggering_user_name="reloop backfill",
            start_date=timezone.utcnow(),
            session=session,
        )
        log.info("created DAG run %s for %s .. %s", run.run_id, interval_start, interval_end)
        return run

    original = dagrun.get_or_create_dagrun
    dagrun.get_or_create_dagrun = create
    try:
        yield
    finally:
        dagrun.get_or_create_dagrun = original


if __name__ == "__main__":  # pragma: no cover - `python -m reloop.ops.airflow HOME`
    if len(sys.argv) != 2:
        sys.exit("usage: python -m reloop.ops.airflow AIRFLOW_HOME")
    print(f"configured {configure_home(sys.argv[1])}")
