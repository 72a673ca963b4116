"""`airflow backfill create` over three days, executed by a real running scheduler (slow).

The Airflow components (api-server on 127.0.0.1, scheduler, dag-processor) run in their own
process group against a temporary AIRFLOW_HOME, and the whole group is killed at the end
(:mod:`tests.support.airflow`).
"""

from __future__ import annotations

import os
import time

import pytest

from reloop.registry import Registry
from tests.support.airflow import airflow_components, backfill_create, list_runs, scheduler_env
from tests.support.params import DAY1, DAY2, DAY3, loop_params, write_params

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.name != "posix", reason="process groups")]


def test_backfill_create_runs_three_days_under_the_scheduler(tmp_path):
    params = loop_params(tmp_path, archive={"enabled": True})
    env = scheduler_env(tmp_path, write_params(params, tmp_path / "params.yaml"))
    logs = tmp_path / "components"
    with airflow_components(env, logs) as procs:
        # three daily periods; a backfill's dates are the runs' logical dates, which for a
        # data-interval timetable are the periods' starts
        backfill_create(env, DAY1, DAY3)
        deadline = time.time() + 1500
        states: dict[str, str] = {}
        while time.time() < deadline:
            states = {r["logical_date"][:10]: r["state"] for r in list_runs(env)}
            if len(states) == 3 and set(states.values()) <= {"success", "failed"}:
                break
            for p in procs:
                assert p.poll() is None, f"an Airflow component died; see {logs}"
            time.sleep(10)
        assert states == {DAY1: "success", DAY2: "success", DAY3: "success"}, (
            f"{states}; component logs in {logs}")

    registry = Registry(params.pipeline.registry_root)
    versions = registry.versions()
    assert [v.lineage["period"] for v in versions] == [DAY1, DAY2, DAY3]
    # each period started from the previous period's production model
    assert versions[1].lineage["parent_id"] == versions[0].model_id
    promoted = [e["period"] for e in registry.history() if e["action"] == "promote"]
    assert promoted[0] == DAY1
    assert versions[2].lineage["parent_id"] == registry.production_before(DAY3).model_id
    from reloop.archive import list_periods

    assert [p["period"] for p in list_periods(params)] == [DAY1, DAY2, DAY3]
