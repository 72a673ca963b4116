"""The project-local Airflow home binds to 127.0.0.1 and runs no log server by its own config, and
its parallelism fits the machine (Airflow's generated airflow.cfg has ``[api] host = 0.0.0.0``,
the log server on every interface and 32 worker processes)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from reloop.ops.airflow import (
    EXECUTOR,
    airflow_env,
    airflow_settings,
    configure_home,
    machine_parallelism,
)

ROOT = Path(__file__).resolve().parents[2]

# the shape of the airflow.cfg `airflow db migrate` generates (abridged)
GENERATED = """\
[core]
# The executor class that airflow should use.
#
# Variable: AIRFLOW__CORE__EXECUTOR
#
executor = LocalExecutor

# This defines the maximum number of task instances that can run concurrently per scheduler
parallelism = 32
load_examples = True

[logging]
worker_log_server_port = 8793

[api]
# The ip specified when starting the api server
#
# Variable: AIRFLOW__API__HOST
#
host = 0.0.0.0
port = 8080

[execution_api]
host = 0.0.0.0
"""


def test_generated_config_is_edited_in_place(tmp_path):
    cfg = tmp_path / "airflow.cfg"
    cfg.write_text(GENERATED)
    cfg.chmod(0o600)  # it holds Airflow's secret keys
    configure_home(tmp_path)
    text = cfg.read_text()
    cpus = machine_parallelism()
    assert text == (GENERATED
                    .replace("executor = LocalExecutor", f"executor = {EXECUTOR}")
                    .replace("parallelism = 32", f"parallelism = {cpus}")
                    .replace("load_examples = True", "load_examples = False")
                    .replace("host = 0.0.0.0\nport", "host = 127.0.0.1\nport")
                    + "\n[scheduler]\nscheduler_health_check_server_host = 127.0.0.1\n")
    assert "[execution_api]\nhost = 0.0.0.0" in text  # other sections' keys are left alone
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    mtime = cfg.stat().st_mtime_ns
    configure_home(tmp_path)
    assert cfg.read_text() == text and cfg.stat().st_mtime_ns == mtime  # a rerun is a no-op


def test_a_new_home_gets_a_minimal_config_and_the_env_carries_the_same(tmp_path):
    cfg = configure_home(tmp_path / "home")
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert "[api]\nhost = 127.0.0.1\n" in cfg.read_text()
    env = airflow_env(tmp_path / "home", ROOT / "dags", ROOT / "params.yaml")
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__EXECUTOR"] == EXECUTOR
    assert env["AIRFLOW__CORE__PARALLELISM"] == str(machine_parallelism())
    assert len(airflow_settings()) == sum(k.startswith("AIRFLOW__") for k in env) - 1
    assert 1 <= machine_parallelism() <= min(32, os.cpu_count() or 1)


def test_the_executor_is_airflows_local_executor_without_the_log_server():
    from airflow._shared.module_loading import import_string
    from airflow.executors.local_executor import LocalExecutor

    cls = import_string(EXECUTOR)
    assert issubclass(cls, LocalExecutor) and cls is not LocalExecutor
    assert LocalExecutor.serve_logs is True and cls.serve_logs is False
    # and importing the module alone does not import Airflow
    code = "import sys, reloop.ops.airflow; print('airflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_make_install_configures_the_home_after_airflow_writes_it():
    recipe = subprocess.run(["make", "-nB", "install"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    migrate = next(i for i, line in enumerate(recipe) if "airflow db migrate" in line)
    configure = next(i for i, line in enumerate(recipe)
                     if "-m reloop.ops.airflow" in line and line.rstrip().endswith(".airflow"))
    assert migrate < configure
