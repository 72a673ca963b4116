import math

import numpy as np
import pytest

from reloop.evaluation.bootstrap import paired_bootstrap_auc_diff, paired_bootstrap_logloss_diff
from reloop.evaluation.gate import decide

GATE = dict(min_auc_gain=0.001, max_logloss_regression=0.002, require_ci_excludes_zero=False)


def test_first_period_promotes_and_nan_auc_never_does():
    assert decide({"auc": 0.7, "logloss": 0.5}, None, None, **GATE).promote
    assert not decide({"auc": math.nan, "logloss": 0.5}, None, None, **GATE).promote


def test_gate_thresholds_hand_cases():
    inc = {"auc": 0.700, "logloss": 0.500}
    ok = decide({"auc": 0.702, "logloss": 0.501}, inc, None, **GATE)
    assert ok.promote and "AUC gain +0.00200 >= min_auc_gain 0.001" in ok.reasons[0]
    small = decide({"auc": 0.7005, "logloss": 0.49}, inc, None, **GATE)
    assert not small.promote and "< min_auc_gain" in small.reasons[0]
    worse_ll = decide({"auc": 0.71, "logloss": 0.503}, inc, None, **GATE)
    assert not worse_ll.promote and "> max_logloss_regression" in worse_ll.reasons[1]
    strict = dict(GATE, require_ci_excludes_zero=True)
    assert not decide({"auc": 0.71, "logloss": 0.5}, inc, {"low": -0.001}, **strict).promote
    assert decide({"auc": 0.71, "logloss": 0.5}, inc, {"low": 0.002}, **strict).promote


def test_paired_bootstrap_detects_a_real_gain_and_not_a_null_one():
    rng = np.random.default_rng(0)
    n = 4000
    y = rng.integers(0, 2, n)
    signal = y + rng.normal(0, 1.0, n)
    better = y + rng.normal(0, 0.6, n)
    out = paired_bootstrap_auc_diff(y, better, signal, n_boot=100, seed=1)
    assert out["diff"] > 0 and 0 < out["low"] <= out["diff"] <= out["high"]
    same = paired_bootstrap_auc_diff(y, signal, signal, n_boot=20, seed=1)
    assert same["diff"] == 0 and same["low"] == 0 and same["high"] == 0
    # identical scorers up to a monotone map have the same AUC in every replicate
    mono = paired_bootstrap_auc_diff(y, np.exp(signal), signal, n_boot=20, seed=1)
    assert mono["low"] == pytest.approx(0) and mono["high"] == pytest.approx(0)


def test_bootstrap_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        paired_bootstrap_auc_diff(np.array([0, 1]), np.array([0.1]), np.array([0.1, 0.2]))
    assert math.isnan(paired_bootstrap_auc_diff(np.ones(3), np.ones(3), np.ones(3))["diff"])


def test_ci_rule_refuses_only_on_evidence():
    inc = {"auc": 0.700, "logloss": 0.500}
    ci_gate = dict(GATE, rule="ci")
    # a lower point estimate whose CI still reaches min_auc_gain: promoted under "ci" ...
    noisy = {"auc": 0.698, "logloss": 0.503}
    auc_ci = {"diff": -0.002, "low": -0.010, "high": 0.006}
    ll_ci = {"diff": 0.003, "low": -0.001, "high": 0.007}
    assert decide(noisy, inc, auc_ci, rule="ci", logloss_diff_ci=ll_ci,
                  **GATE).promote
    # ... and refused under "point"
    assert not decide(noisy, inc, auc_ci, logloss_diff_ci=ll_ci, **GATE).promote
    # the whole AUC CI below min_auc_gain: refused, the reason quotes the CI
    worse = decide(noisy, inc, {"diff": -0.02, "low": -0.03, "high": -0.01},
                   logloss_diff_ci=ll_ci, **ci_gate)
    assert not worse.promote and "CI high -0.01000 < min_auc_gain 0.001" in worse.reasons[0]
    # the whole logloss CI above the tolerated regression: refused
    ll_bad = decide(noisy, inc, auc_ci, logloss_diff_ci={"diff": 0.01, "low": 0.005,
                                                          "high": 0.02}, **ci_gate)
    assert not ll_bad.promote and "CI low +0.00500 > max_logloss_regression" in ll_bad.reasons[1]
    # a missing CI falls back to the point estimate
    assert not decide(noisy, inc, None, **ci_gate).promote
    with pytest.raises(ValueError, match="rule='vote' is not supported"):
        decide(noisy, inc, None, rule="vote", **GATE)



def test_paired_logloss_bootstrap_hand_case():
    y = np.array([1.0, 0.0, 1.0, 0.0])
    a = np.array([0.8, 0.2, 0.8, 0.2])
    b = np.array([0.5, 0.5, 0.5, 0.5])
    out = paired_bootstrap_logloss_diff(y, a, b, n_boot=50, seed=0)
    # every row gains log(0.8) - log(0.5) exactly, so every replicate has the same mean
    expected = -math.log(0.8) + math.log(0.5)
    assert out["diff"] == pytest.approx(expected)
    assert out["low"] == pytest.approx(expected) and out["high"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="shapes differ"):
        paired_bootstrap_logloss_diff(y, a[:3], b)


def test_the_gate_reads_nan_figures_back_from_json():
    # evaluation.json stores a NaN as null (strict JSON): a single-class holdout's AUC, a CI
    # without two usable replicates. The gate used to crash on None ("must be real number").
    import math

    from reloop.atomic import json_ready
    from reloop.evaluation.gate import decide

    nan = math.nan
    stored = json_ready({"cand": {"auc": nan, "logloss": 0.01},
                         "inc": {"auc": nan, "logloss": 0.02},
                         "ci": {"diff": nan, "low": nan, "high": nan}})
    assert stored["cand"]["auc"] is None
    d = decide(stored["cand"], stored["inc"], stored["ci"], min_auc_gain=-0.001,
               max_logloss_regression=0.005, require_ci_excludes_zero=False, rule="ci")
    assert (d.promote, d.reasons) == (False, ["candidate AUC is not finite (single-class or "
                                              "empty holdout)"])
    # finite AUCs, no CI: the point estimate decides (0.7 - 0.6 = +0.1), and a required CI
    # above zero is missing, so the candidate is refused on that rule alone
    stored = json_ready({"ci": {"diff": 0.1, "low": nan, "high": nan}})["ci"]
    d = decide({"auc": 0.7, "logloss": 0.1}, {"auc": 0.6, "logloss": 0.1}, stored,
               min_auc_gain=-0.001, max_logloss_regression=0.005, require_ci_excludes_zero=True,
               rule="ci", logloss_diff_ci={"low": None, "high": None})
    assert d.promote is False
    assert d.reasons == ["AUC gain +0.10000 >= min_auc_gain -0.001",
                         "logloss change +0.00000 <= max_logloss_regression 0.005",
                         "AUC-difference CI does not exclude zero (low +nan)"]
