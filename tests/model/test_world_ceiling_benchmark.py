"""benchmarks/world_ceiling.py on the tiny world: its partial oracles rebuild the simulator's
true probabilities exactly, and each one drops only the part it names."""

import math

import pytest
from benchmarks.world_ceiling import bootstrap_days, partial_oracles, train_curve

from reloop.learn.metrics import auc
from tests.support.params import tiny_params


def _day2(tmp_path, **simulator):
    params = tiny_params(tmp_path, simulator=simulator) if simulator else tiny_params(tmp_path)
    tables = bootstrap_days(params, 2)
    return params, tables


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return _day2(tmp_path_factory.mktemp("ceiling"))


def test_the_oracle_variant_is_the_simulators_true_probability(world):
    params, tables = world
    table = tables[1]
    assert table["p_true"].null_count() == 0 and table.height > 1000
    got = partial_oracles(params.simulator, table, 1)
    assert got["oracle"] == pytest.approx(auc(table["y"].to_numpy(), table["p_true"].to_numpy()),
                                          abs=1e-9)
    # each swap removes information the true logit has: none of them beats it by more than noise
    for name, value in got.items():
        assert 0.5 < value <= got["oracle"] + 0.01, name


def test_a_world_without_personal_taste_or_item_noise_has_nothing_to_drop(tmp_path):
    params, tables = _day2(tmp_path, personal_taste=0.0, item_noise=0.0)
    got = partial_oracles(params.simulator, tables[1], 1)
    assert got["segment taste"] == pytest.approx(got["oracle"], abs=1e-12)
    assert got["category latent"] == pytest.approx(got["oracle"], abs=1e-12)
    assert got["no user bias"] != pytest.approx(got["oracle"], abs=1e-6)


def test_train_curve_gives_one_test_auc_per_epoch_on_either_label(world):
    params, tables = world
    for soft in (False, True):
        curve = train_curve(params, tables[0], tables[1], 2, soft=soft)
        assert len(curve) == 2 and all(0.0 < a < 1.0 and not math.isnan(a) for a in curve)
