import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from reloop.learn.metrics import auc, evaluate, gauc, logloss


def test_auc_and_logloss_match_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    p = np.clip(0.3 * y + rng.random(5000) * 0.7, 0, 1)
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert logloss(y, p) == pytest.approx(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)), rel=1e-9)


def _gauc_reference(y, p, g):
    total, weight = 0.0, 0
    for user in np.unique(g):
        m = g == user
        if len(np.unique(y[m])) == 2:
            total += roc_auc_score(y[m], p[m]) * m.sum()
            weight += m.sum()
    return total / weight


def test_gauc_matches_per_user_sklearn_with_ties():
    rng = np.random.default_rng(1)
    n = 20_000
    g = rng.integers(0, 700, n)
    y = rng.integers(0, 2, n)
    p = np.round(rng.random(n) * 0.5 + 0.3 * y, 1)  # rounding makes many ties
    assert gauc(y, p, g) == pytest.approx(_gauc_reference(y, p, g), abs=1e-12)


def test_gauc_hand_case_weights_and_excluded_users():
    # user a: perfect (AUC 1, 2 rows); user b: pos {0.2, 0.6} vs neg {0.8, 0.3} -> 1 of 4 pairs
    # right (AUC 0.25, 4 rows); users c (all clicks) and d (no clicks) have no AUC and are left out.
    g = ["a", "a", "b", "b", "b", "b", "c", "c", "c", "d"]
    y = [1, 0, 1, 0, 0, 1, 1, 1, 1, 0]
    p = [0.9, 0.1, 0.2, 0.8, 0.3, 0.6, 0.5, 0.4, 0.1, 0.9]
    assert gauc(y, p, g) == pytest.approx((2 * 1.0 + 4 * 0.25) / 6)


def test_gauc_ties_count_half_and_single_class_is_nan():
    assert gauc([1, 0], [0.5, 0.5], [7, 7]) == pytest.approx(0.5)
    assert math.isnan(gauc([1, 1, 0], [0.1, 0.2, 0.3], [1, 1, 2]))
    assert math.isnan(auc([1, 1], [0.2, 0.3]))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        logloss([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="groups has 1 values"):
        gauc([0, 1], [0.1, 0.2], [1])


def test_evaluate_bundles_metrics():
    out = evaluate([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.3], groups=[1, 1, 2, 2])
    logloss = -(np.log(0.9) + np.log(0.9) + np.log(0.8) + np.log(0.7)) / 4
    assert out == {"auc": 1.0, "logloss": pytest.approx(logloss), "gauc": 1.0}
