"""Airflow under a real scheduler: its components (api-server on 127.0.0.1, scheduler,
dag-processor), each in a process group of its own against a temporary AIRFLOW_HOME, and
``airflow backfill create``."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from reloop.ops.airflow import airflow_env

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_ID = "reloop_retrain"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow_cli(env: dict, *args: str, timeout: float = 300) -> str:
    done = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"airflow {args}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def list_runs(env: dict) -> list[dict]:
    out = airflow_cli(env, "dags", "list-runs", DAG_ID, "--output", "json")
    line = next(ln for ln in out.splitlines() if ln.startswith("[{") or ln == "[]")
    return json.loads(line)  # Airflow logs to stdout too


def scheduler_env(tmp_path: Path, cfg: Path) -> dict:
    """The environment of Airflow components against a temporary home and ``cfg``."""
    port = free_port()
    return {
        **os.environ,
        **airflow_env(tmp_path / "airflow", DAGS, cfg),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # only the backfill's runs: no scheduled run of "today" alongside them
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    }


@contextlib.contextmanager
def airflow_components(env: dict, logs: Path) -> Iterator[list[subprocess.Popen]]:
    """api-server, scheduler and dag-processor, each in its own process group, killed after."""
    airflow_cli(env, "db", "migrate")
    airflow_cli(env, "dags", "reserialize")
    airflow_cli(env, "dags", "unpause", DAG_ID)  # the scheduler runs no task of a paused DAG
    logs.mkdir(parents=True, exist_ok=True)
    port = env["AIRFLOW__API__PORT"]
    procs = []
    try:
        for component in (["api-server", "--host", "127.0.0.1", "--port", port],
                          ["scheduler", "--skip-serve-logs"], ["dag-processor"]):
            fh = open(logs / f"{component[0]}.log", "w")  # noqa: SIM115 - closed with the group
            procs.append(subprocess.Popen([sys.executable, "-m", "airflow", *component], env=env,
                                          stdout=fh, stderr=subprocess.STDOUT,
                                          start_new_session=True))
        yield procs
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)


def backfill_create(env: dict, first: str, last: str) -> None:
    """``airflow backfill create`` of the periods ``first`` .. ``last`` (their start dates)."""
    for _ in range(3):  # SQLite can report "database is locked" once; retry
        done = subprocess.run(
            [sys.executable, "-m", "airflow", "backfill", "create", "--dag-id", DAG_ID,
             "--from-date", first, "--to-date", last,
             "--reprocess-behavior", "failed",  # required: tasks depend on the past
             "--max-active-runs", "1"],  # a period starts from the one before
            env=env, capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            return
        time.sleep(5)
    raise AssertionError(done.stderr[-3000:])
