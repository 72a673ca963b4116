"""Evidently drift reports and their summary."""

from __future__ import annotations

import json

import pytest

from reloop.data.drift import drift_report, parse_snapshot, reference_periods
from reloop.data.join import join_period
from tests.support.params import DAY1, DAY2, tiny_params
from tests.support.tables import copy_world


def test_parse_snapshot_hand_made():
    snap = {
        "metrics": [
            {"id": "m1", "config": {"type": "evidently:metric_v2:DriftedColumnsCount"},
             "value": {"count": 1.0, "share": 0.25}},
            {"id": "m2", "config": {"type": "evidently:metric_v2:ValueDrift", "column": "hour",
                                    "method": "Jensen-Shannon distance", "threshold": 0.1},
             "value": 0.3},
            {"id": "m3", "config": {"type": "evidently:metric_v2:ValueDrift", "column": "score",
                                    "method": "ks", "threshold": 0.05}, "value": 0.01},
            {"id": "m4", "config": {"type": "evidently:metric_v2:ValueDrift", "column": "y",
                                    "method": "z", "threshold": 0.05}, "value": 0.4},
        ],
        "tests": [
            {"id": "drift", "metric_config": {"metric_id": "m2"}, "status": "FAIL"},
            {"id": "drift", "metric_config": {"metric_id": "m3"}, "status": "FAIL"},
            {"id": "drift", "metric_config": {"metric_id": "m4"}, "status": "SUCCESS"},
        ],
    }
    out = parse_snapshot(snap, "ks", "z")
    assert out["drifted_columns"] == 1 and out["share_drifted_columns"] == 0.25
    assert out["columns"] == {"hour": {"method": "Jensen-Shannon distance", "value": 0.3,
                                       "threshold": 0.1, "drifted": True}}
    assert out["score_drift_pvalue"] == 0.01 and out["score_drift"]["drifted"] is True
    assert out["label_drift_pvalue"] == 0.4 and out["label_drift"]["drifted"] is False
    assert out["score_drift"]["statistic"] == out["label_drift"]["statistic"] == "p_value"
    # a distance method's value is a distance: the p-value key says it has none
    for m in snap["metrics"]:
        if m["config"].get("column") == "score":
            m["config"]["method"] = "psi"
    out = parse_snapshot(snap, "psi", "z")
    assert out["score_drift_pvalue"] is None
    assert out["score_drift"] == {"method": "psi", "value": 0.01, "threshold": 0.05,
                                  "drifted": True, "statistic": "distance"}


def test_drift_methods_are_checked_when_the_params_load(tmp_path):
    from reloop.config import ConfigError

    with pytest.raises(ConfigError, match=r"drift.score_method.*'ks'"):
        tiny_params(tmp_path, drift={"score_method": "kstest"})
    with pytest.raises(ConfigError, match=r"drift.label_method"):
        tiny_params(tmp_path, drift={"label_method": "ks"})  # a 0/1 label takes no K-S test
    assert tiny_params(tmp_path, drift={"score_method": "psi"}).drift.score_method == "psi"


def test_first_period_has_no_reference_then_the_next_is_compared(world_root, tmp_path):
    params = copy_world(world_root, tmp_path)
    join_period(params, DAY1)
    first = drift_report(params, DAY1)
    assert first["reference"] is None and first["share_drifted_columns"] is None
    join_period(params, DAY2)
    assert [d.isoformat() for d in reference_periods(params, __import__("datetime").date(
        2026, 1, 6))] == [DAY1]
    summary = drift_report(params, DAY2)
    out = tmp_path / "reports" / "drift" / f"date={DAY2}"
    assert (out / "report.html").stat().st_size > 100_000
    assert json.loads((out / "summary.json").read_text())["reference"] == [DAY1]
    assert json.loads((out / "report.json").read_text())["metrics"]
    assert set(summary["columns"]) == {"item_category", "user_segment", "device", "hour",
                                       "item_age_days"}
    assert 0.0 <= summary["share_drifted_columns"] <= 1.0
    assert summary["drifted_columns"] == sum(bool(c["drifted"])
                                             for c in summary["columns"].values())
    assert 0.0 <= summary["score_drift_pvalue"] <= 1.0
    assert 0.0 <= summary["label_drift_pvalue"] <= 1.0
    assert summary["ctr_reference"] == pytest.approx(
        json.loads((tmp_path / "joined" / f"date={DAY1}" / "stats.json").read_text())["ctr"])


def test_fixed_baseline_reference(world_root, tmp_path):
    params = copy_world(world_root, tmp_path, drift={"reference": "fixed",
                                                     "baseline_start": DAY1, "baseline_days": 1})
    join_period(params, DAY1)
    join_period(params, DAY2)
    import datetime as dt

    assert reference_periods(params, dt.date(2026, 1, 6)) == [dt.date(2026, 1, 5)]
    with pytest.raises(ValueError, match="reference='fixed' needs baseline_start"):
        copy_world(world_root, tmp_path / "x", drift={"reference": "fixed",
                                                      "baseline_start": None})
