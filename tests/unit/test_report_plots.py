"""`reloop report`'s pictures: rollbacks placed on the time axis, and the PNGs it draws."""

from __future__ import annotations

import pytest

from reloop.evaluation.history import rollbacks_after
from reloop.ops.report import plot_periods

PERIODS = ["2026-01-01", "2026-01-02", "2026-01-03"]


def test_a_rollback_is_placed_after_the_last_period_promoted_before_it():
    history = [
        {"action": "promote", "period": "2026-01-01", "model_id": "a" * 16},
        {"action": "promote", "period": "2026-01-02", "model_id": "b" * 16},
        {"action": "rollback", "period": None, "model_id": "a" * 16},
        {"action": "promote", "period": "2026-01-03", "model_id": "c" * 16},
        {"action": "rollback", "period": None, "model_id": "b" * 16},
    ]
    assert rollbacks_after(history, PERIODS) == {"2026-01-02": "a" * 16,
                                                 "2026-01-03": "b" * 16}
    # periods outside the report do not anchor a rollback; one before any period is dropped
    assert rollbacks_after(history, ["2026-01-03"]) == {"2026-01-03": "b" * 16}
    assert rollbacks_after([{"action": "rollback", "model_id": "a" * 16}], PERIODS) == {}


def _row(period, inc, cand, promoted, drift=None, rolled=None):
    return {"period": period, "incumbent_base": inc, "incumbent_memory": None if inc is None
            else inc + 0.004, "candidate_base": cand, "candidate_memory": cand + 0.002,
            "oracle": 0.8, "promoted": promoted, "drift_share": drift,
            "candidate_memory_gain": 0.002,
            "incumbent_memory_gain": None if inc is None else 0.004, "rolled_back_to": rolled}


def test_the_report_draws_four_pngs(tmp_path):
    rows = [_row(PERIODS[0], None, 0.68, True), _row(PERIODS[1], 0.67, 0.69, False, 0.4),
            _row(PERIODS[2], 0.67, 0.70, True, 0.0, rolled="a" * 16)]
    written = plot_periods(rows, tmp_path / "plots")
    assert [p.name for p in written] == ["auc.png", "memory_gain.png", "drift.png", "loop.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    again = plot_periods(rows, tmp_path / "again")  # no timestamp in the files: reruns are equal
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]


def test_no_period_to_plot_is_an_error_that_says_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="run the loop first"):
        plot_periods([], tmp_path)
