"""The DAG's wait for sealed input and its production asset event, task logic without a scheduler
(the slow test tests/dags/test_scheduler_wait.py runs them under the real scheduler)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from reloop.ops.sensor import PRODUCTION, publish_production

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
D = dt.date(2026, 1, 5)  # a day of logs the sensor waits for


def _context() -> dict:
    return {"data_interval_start": START, "data_interval_end": START + dt.timedelta(days=1),
            "outlet_events": defaultdict(SimpleNamespace)}


def test_publish_emits_the_production_event_only_when_production_moved():
    ctx = _context()
    extra = publish_production({"moved": True, "model_id": "ab" * 8}, ctx)
    assert extra == {"model_id": "ab" * 8, "period": "2026-01-01"}
    assert ctx["outlet_events"][PRODUCTION].extra == extra
    quiet = _context()
    with pytest.raises(AirflowSkipException, match="production did not move .*not promoted"):
        publish_production({"moved": False, "promoted": False}, quiet)
    with pytest.raises(AirflowSkipException, match="a later period moved it"):
        publish_production({"moved": False, "held": "a later period moved it"}, quiet)
    assert PRODUCTION not in quiet["outlet_events"]


def _sensor(tmp_path, **logs):
    import yaml

    from reloop.ops.sensor import SealedLogsSensor
    from tests.support.params import tiny_params

    params = tiny_params(tmp_path, logs=logs)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    return SealedLogsSensor(task_id="wait_for_logs", params_file=str(path)), params


def _window(day: dt.date) -> dict:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return {"data_interval_start": start, "data_interval_end": start + dt.timedelta(days=1)}


def test_the_sensor_waits_for_the_offset_then_for_the_seal(tmp_path):
    from reloop.data.logs.seal import seal_day
    from tests.support.tables import write_producer_day

    sensor, params = _sensor(tmp_path, source="external")
    write_producer_day(tmp_path / "logs", D, "p", imps=3, clicks=1, late=1)
    # the period is long over (2026-01-05 + 90 min): only the seal is missing
    assert sensor.poke(_window(D)) is False
    assert len(sensor.missing) == 1 and "2026-01-05" in sensor.missing[0]
    assert "_seals/date=2026-01-05.json" in sensor.missing[0]
    seal_day(tmp_path / "logs", D, params.join.window_minutes)
    assert sensor.poke(_window(D)) is True and sensor.missing == []
    # a period that ends in the future: input may still arrive, whatever the seals say
    today = dt.datetime.now(dt.UTC).date()
    assert sensor.poke(_window(today)) is False
    assert sensor.missing[0].startswith("the schedule offset: input may still arrive until ")


def test_the_sensor_does_not_wait_for_what_ingest_itself_writes(tmp_path):
    sensor, _ = _sensor(tmp_path, source="simulator")
    assert sensor.poke(_window(dt.date(2026, 1, 5))) is True  # nothing on disk yet: ingest makes it
    assert sensor.mode == "reschedule"  # between pokes the waiting run holds no worker slot
