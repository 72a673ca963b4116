"""What the Airflow UI shows of the loop's runs, checked, and a screenshot (make airflow-ui-check).

:func:`check_airflow_ui` starts the api-server of a project-local Airflow home on a loopback port,
in its own process group, with the simple auth manager's "everyone is admin" switch on for this
one read-only session (so no password is needed), and then:

* reads the DAG's runs from Airflow's REST API (``/api/v2/dags/<dag>/dagRuns``), the same data
  the UI shows, and checks every run that ``reloop backfill`` recorded: run type ``backfill``,
  logical date = its data interval's start (the period), run id ``backfill__<period start>``,
  and a duration (end - start) of less than a day;
* screenshots the UI's runs page in headless Chromium.

The api-server is stopped (its whole process group) before the function returns.
``python -m reloop.ops.airflow_ui --airflow-home H --dags-folder F --out PNG``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["check_airflow_ui", "check_runs"]

DAG_ID = "reloop_retrain"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read())


def _utc(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_runs(runs: list[dict[str, Any]]) -> list[str]:
    """Problems with the DAG runs ``reloop backfill`` recorded (REST API records); ``[]`` if
    every one has the period as logical date, type backfill and a duration under a day."""
    problems = []
    for run in runs:
        if run.get("triggering_user_name") != "reloop backfill":
            continue  # not ours (a scheduler's run, a manual trigger)
        rid, start = run["dag_run_id"], _utc(run.get("data_interval_start"))
        if run.get("run_type") != "backfill":
            problems.append(f"{rid}: run type {run.get('run_type')!r}, not 'backfill'")
        if _utc(run.get("logical_date")) != start:
            problems.append(f"{rid}: logical date {run.get('logical_date')} is not the period "
                            f"start {run.get('data_interval_start')}")
        if start is not None and rid != f"backfill__{start.isoformat()}":
            problems.append(f"{rid}: run id is not backfill__{start.isoformat()}")
        began, ended = _utc(run.get("start_date")), _utc(run.get("end_date"))
        if began is None or ended is None or not dt.timedelta(0) <= ended - began \
                < dt.timedelta(days=1):
            problems.append(f"{rid}: start {run.get('start_date')} / end {run.get('end_date')} "
                            "is not a run that took less than a day")
    return problems


def check_airflow_ui(airflow_home: str | Path, dags_folder: str | Path, out_png: str | Path,
                     *, timeout_s: float = 180.0) -> dict[str, Any]:
    """Start the api-server, check the runs (:func:`check_runs`), screenshot the runs page."""
    from reloop.ops.airflow import airflow_settings
    from reloop.ops.browser import CHROMIUM_FLAGS, _require_chromium

    home = Path(airflow_home).resolve()
    if not (home / "airflow.db").is_file():
        raise FileNotFoundError(f"no Airflow metadata DB in {home}: run `make demo` first")
    port = _free_port()
    env = {**os.environ, "AIRFLOW_HOME": str(home),
           "AIRFLOW__CORE__DAGS_FOLDER": str(Path(dags_folder).resolve()),
           **{f"AIRFLOW__{s.upper()}__{k.upper()}": v for (s, k), v in airflow_settings().items()},
           # this read-only session only: no login page between the browser and the runs
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="reloop-airflow-ui-") as tmp:
        log_path = Path(tmp) / "api-server.log"
        with log_path.open("w") as log_file:
            server = subprocess.Popen(
                [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1",
                 "--port", str(port)], env=env, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    _get(f"{base}/api/v2/monitor/health", timeout=2.0)
                    break
                except OSError as err:
                    if server.poll() is not None or time.monotonic() > deadline:
                        tail = log_path.read_text()[-2000:]
                        raise RuntimeError(
                            f"the Airflow api-server did not start:\n{tail}") from err
                    time.sleep(1.0)
            runs = _get(f"{base}/api/v2/dags/{DAG_ID}/dagRuns?order_by=logical_date"
                        "&limit=100")["dag_runs"]
            png = Path(out_png).resolve()
            png.parent.mkdir(parents=True, exist_ok=True)
            png.unlink(missing_ok=True)
            subprocess.run([_require_chromium(), *CHROMIUM_FLAGS,
                            f"--user-data-dir={Path(tmp) / 'profile'}", f"--screenshot={png}",
                            "--window-size=1900,900", "--virtual-time-budget=15000",
                            f"{base}/dags/{DAG_ID}/runs"], capture_output=True, timeout=120,
                           check=False)
            if not png.is_file():
                raise RuntimeError(f"chromium wrote no screenshot of {base}/dags/{DAG_ID}/runs")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    ours = [r for r in runs if r.get("triggering_user_name") == "reloop backfill"]
    return {"runs": len(ours), "problems": check_runs(runs), "screenshot": str(png),
            "durations_s": [round((_utc(r["end_date"]) - _utc(r["start_date"])).total_seconds(), 1)
                            for r in ours if r.get("end_date") and r.get("start_date")],
            "logical_dates": [r["logical_date"] for r in ours]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reloop.ops.airflow_ui",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--airflow-home", default=".airflow")
    parser.add_argument("--dags-folder", default="dags")
    parser.add_argument("--out", default="docs/img/airflow-runs.png")
    args = parser.parse_args(argv)
    result = check_airflow_ui(args.airflow_home, args.dags_folder, args.out)
    print(f"{result['runs']} backfill runs; logical dates {', '.join(result['logical_dates'])}")
    print(f"durations (s): {result['durations_s']}; screenshot: {result['screenshot']}")
    for line in result["problems"]:
        print(f"PROBLEM: {line}")
    return 1 if result["problems"] or not result["runs"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
