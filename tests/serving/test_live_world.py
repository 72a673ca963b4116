"""The built-in world driving a live `reloop serve` over HTTP for two days, the loop retrained
on what the server logged, the server hot-swapping to what each day promoted."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from reloop.ops.drive import ServeClient, drive, live_params
from reloop.registry import Registry
from tests.support.params import serve_params
from tests.support.serving import Server


@pytest.mark.slow
def test_two_live_days_retrain_on_the_served_logs_and_swap(tmp_path, monkeypatch):
    from reloop.stages import run_period

    monkeypatch.chdir(tmp_path)
    params = live_params(serve_params(tmp_path))
    server = Server(params, tmp_path).start()
    try:
        days = drive(params, ServeClient(f"http://127.0.0.1:{server.port}"), "2026-01-05", 2,
                     retrain=lambda day: run_period(params, day)["promote"])
    finally:
        server.stop()
    d1, d2 = days
    versions = [v.model_id for v in Registry(params.pipeline.registry_root).versions()]
    assert d1["served_by"] == {"bootstrap": d1["requests"]}
    assert d1["retrain"]["moved"] and d1["production"] == d1["retrain"]["model_id"]
    # day 2 is served by day 1's model from the first hour on (it was retrained at 01:00)
    assert d2["served_by"][d1["production"]] > 0.9 * d2["requests"]
    # day 2's candidate is registered; production is it if the gate passed it
    assert len(versions) == 2 and d2["retrain"]["model_id"] in versions
    assert d2["production"] == (d2["retrain"]["model_id"] if d2["retrain"]["moved"]
                                else d1["production"])
    assert set(d2["tail"]["served_by"]) == {d1["production"]}

    # the join labelled exactly what the world clicked inside the window, on the logged scores
    for day in days:
        joined = pl.read_parquet(f"{params.join.out_root}/date={day['date']}/train.parquet")
        stats = json.loads(Path(f"{params.join.out_root}/date={day['date']}/stats.json")
                           .read_text())
        assert joined.height == day["requests"]
        assert int(joined["y"].sum()) == day["clicks"] - day["clicks_after_window"]
        assert stats["late_labels"] == 0 and stats.get("orphan_labels", 0) == 0
        assert joined["y_last"].null_count() == 0
    assert "serving" in server.log() and "refused" not in server.log()
