"""Paired comparisons over periods: hand-worked bootstrap cases."""

import math

import numpy as np
import pytest

from reloop.ops.study.stats import paired_period_ci


def test_two_periods_percentile_interval_by_hand():
    # differences 0 and 1: a resample of the two periods has mean 0 (p=1/4), 0.5 (p=1/2) or
    # 1 (p=1/4), so the 2.5% and 97.5% percentiles of the bootstrap means are 0 and 1
    out = paired_period_ci([0.70, 0.81], [0.70, 0.80], n_boot=4000, seed=0)
    assert out["value"] == pytest.approx(0.005)
    assert out == pytest.approx({"value": 0.005, "low": 0.0, "high": 0.01, "periods": 2,
                                 "wins": 1})


def test_constant_difference_has_a_zero_width_interval():
    out = paired_period_ci([0.72, 0.75, 0.70], [0.70, 0.73, 0.68])
    assert out["value"] == pytest.approx(0.02)
    assert out["low"] == pytest.approx(0.02) and out["high"] == pytest.approx(0.02)
    assert out["wins"] == 3


def test_relative_gain_is_the_ratio_of_means():
    # CTRs 0.06, 0.06 vs 0.05, 0.05: +20 %
    out = paired_period_ci([0.06, 0.06], [0.05, 0.05], kind="relative")
    assert out["value"] == pytest.approx(0.2)
    assert out["low"] == pytest.approx(0.2) and out["high"] == pytest.approx(0.2)


def test_nan_periods_are_left_out_and_one_period_has_no_interval():
    out = paired_period_ci([0.7, math.nan, 0.8], [0.6, 0.5, math.nan])
    assert out["periods"] == 1 and out["value"] == pytest.approx(0.1)
    assert math.isnan(out["low"]) and math.isnan(out["high"])


def test_same_seed_same_interval_and_a_real_gain_excludes_zero():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.6, 0.7, 20)
    arm = base + 0.01 + rng.normal(0, 0.004, 20)
    a = paired_period_ci(arm, base, seed=3)
    assert a == paired_period_ci(arm, base, seed=3)
    assert 0 < a["low"] < a["value"] < a["high"]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="kind='ratio' is not supported"):
        paired_period_ci([1.0], [1.0], kind="ratio")
    with pytest.raises(ValueError, match="one value per period"):
        paired_period_ci([1.0, 2.0], [1.0])
