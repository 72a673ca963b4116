"""The built-in world's mechanisms, each checked on its own."""

from __future__ import annotations

import numpy as np

from reloop.sources import world
from tests.support.params import tiny_params


def _cfg(tmp_path, **sim):
    return tiny_params(tmp_path, simulator=sim).simulator


def test_any_day_is_built_the_same_in_any_order(tmp_path):
    cfg = _cfg(tmp_path)
    late_first = world.catalog_on(cfg, 4)
    users_first = world.user_latents_on(cfg, 3)
    world.population.cache_clear()  # the population is drawn again, from the seed
    early = world.catalog_on(cfg, 2)
    again = world.catalog_on(cfg, 4)
    assert np.array_equal(late_first.item_id, again.item_id)
    assert np.array_equal(late_first.latent, again.latent)
    assert len(early) > 0
    np.testing.assert_array_equal(world.user_latents_on(cfg, 3), users_first)


def test_new_items_are_born_daily_and_old_ones_retire(tmp_path):
    cfg = _cfg(tmp_path, new_items_per_day=7, initial_items=50, item_lifetime_days=5.0)
    day0, day6 = world.catalog_on(cfg, 0), world.catalog_on(cfg, 6)
    assert len(day0) == 50 and day0.item_id.max() == 49  # the whole initial catalogue is alive
    born_day6 = day6.item_id[day6.birth == 6]
    assert np.array_equal(born_day6, np.arange(50 + 5 * 7, 50 + 6 * 7))  # ids are sequential
    assert (day6.age >= 0).all() and (day6.age[day6.birth == 6] == 0).all()
    retired = np.setdiff1d(day0.item_id, day6.item_id)
    assert retired.size > 0  # with a 5-day mean life most initial items are gone by day 6


def test_preferences_drift_gradually_and_shift_on_shift_days(tmp_path):
    cfg = _cfg(tmp_path, shift_days=[3], shift_fraction=1.0, shift_strength=2.0,
               preference_drift=0.1, segment_drift=0.05)
    u = [world.user_latents_on(cfg, d) for d in range(5)]
    step = [float(np.linalg.norm(u[d + 1] - u[d], axis=1).mean()) for d in range(4)]
    # days 0->1, 1->2 and 3->4 are gradual; 2->3 holds the sudden shift
    assert step[2] > 3 * max(step[0], step[1], step[3])
    still = _cfg(tmp_path, preference_drift=0.0, segment_drift=0.0, shift_days=[])
    np.testing.assert_allclose(world.user_latents_on(still, 0), world.user_latents_on(still, 9),
                               rtol=1e-6)


def test_category_bias_has_a_weekly_cycle_and_jumps_on_shift_days(tmp_path):
    cfg = _cfg(tmp_path, shift_days=[8], weekly_amplitude=0.5)
    mon, thu = world.category_bias_on(cfg, 0, 0), world.category_bias_on(cfg, 3, 3)
    assert not np.allclose(mon, thu)
    np.testing.assert_allclose(world.category_bias_on(cfg, 0, 0), world.category_bias_on(cfg, 7, 0))
    assert not np.allclose(world.category_bias_on(cfg, 7, 0), world.category_bias_on(cfg, 14, 0))


def test_popularity_trend_and_freshness(tmp_path):
    cfg = _cfg(tmp_path, freshness_boost=1.0, freshness_days=2.0, trend_max=1.0)
    cat = world.Catalog(
        item_id=np.arange(3), category=np.zeros(3, int), latent=np.zeros((3, 4), np.float32),
        quality=np.zeros(3), slope=np.array([0.0, 0.5, -0.5]), birth=np.zeros(3, int),
        age=np.array([0.0, 2.0, 2.0]),
    )
    appeal = world.item_appeal(cfg, cat)
    # hand-computed: 1*tanh(slope*age/1) + 1*exp(-age/2)
    np.testing.assert_allclose(appeal, [1.0, np.tanh(1.0) + np.exp(-1.0),
                                        -np.tanh(1.0) + np.exp(-1.0)])


def test_traffic_profiles(tmp_path):
    cfg = _cfg(tmp_path, diurnal_amplitude=0.5, weekly_traffic_amplitude=0.2,
               impressions_per_day=1000)
    prof = world.diurnal_profile(cfg)
    assert np.isclose(prof.sum(), 1.0) and prof.argmax() == 20 and prof.argmin() == 8
    assert world.requests_on(cfg, 0, 5) > world.requests_on(cfg, 0, 2)  # Saturday > Wednesday
