"""The built-in world's horizon and the bounded cost of a day.

A date past ``simulator.start + simulator.horizon_days`` is refused at once (``reloop stage
ingest --date 9999-12-31`` would otherwise build millions of item cohorts while holding the
workspace lock), and a day within the horizon builds only the cohorts still alive on it, with
exactly the result of building every cohort since ``simulator.start`` and filtering.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from reloop.cli import app
from reloop.config.simulator import SimulatorConfig
from reloop.serving.scorer import load_scorer
from reloop.sources import world
from tests.support.params import tiny_params

KEYS = ("item_id", "category", "latent", "quality", "slope", "birth", "age")


def _digest(cat: world.Catalog) -> str:
    h = hashlib.sha256()
    for key in KEYS:
        a = getattr(cat, key)
        h.update(str(a.dtype).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _every_cohort(cfg, d: int) -> world.Catalog:
    """The catalogue built the direct way: every cohort since day 0, filtered."""
    parts = [world._cohort(cfg, t) for t in range(d + 1)]
    alive = [(p["birth"] <= d) & (p["death"] > d) for p in parts]
    cat = {k: np.concatenate([p[k][a] for p, a in zip(parts, alive, strict=True)])
           for k in parts[0]}
    return world.Catalog(**{k: cat[k] for k in KEYS[:-1]},
                         age=(d - cat["birth"]).astype(np.float64))


# Digests of the exact world, which the determinism promise and the README's benchmark figures
# depend on: it must not move.
PINNED_TINY = {0: (60, "bd0d7427d9746511"), 1: (63, "f03fbff40dc4c473"),
               6: (70, "bbb44b22164e1ad8"), 30: (104, "683bf35e90c7c124"),
               90: (101, "4b81e4c790c0ced4")}
PINNED_DEFAULT = {0: (2000, "51d3ccdf6317f8bc"), 3: (2024, "0bcc789ac36fc372"),
                  45: (2087, "3fd54ac657bbc3ef"), 120: (2016, "d824b6bbbdfd75e0")}
# A day of the tiny world served by the bootstrap policy: its rows, the digest of what was shown
# and clicked (exact on every machine), and each oracle column's sum and index-weighted sum.
# The oracle's probabilities are compared to 1e-8 (relative), not by digest: NumPy's code paths
# for float32 sin/cos differ in the last digits between CPUs (reloop.numerics), which moves them
# by up to 2e-7 and their sums by ~2e-10 while every draw, pick and click stays the same.
PINNED_DAY = ("2026-01-12", 2045, "c62291dfa3308bbc", {
    "p_true": (81.61687757926917, 39.602039569866506),
    "p_random": (83.28691649686739, 40.56921596016044),
    "p_best": (156.01616517494236, 76.62392055442587),
})


def test_catalogues_and_a_days_logs_are_unchanged(tmp_path):
    from reloop.sources.simulator import simulate_logs

    params = tiny_params(tmp_path)
    for cfg, pinned in ((params.simulator, PINNED_TINY), (SimulatorConfig(), PINNED_DEFAULT)):
        for d, (n, digest) in pinned.items():
            cat = world.catalog_on(cfg, d)
            assert (len(cat), _digest(cat)) == (n, digest), d
    day, rows, digest, oracle = PINNED_DAY
    logs = simulate_logs(params, day, load_scorer(params))
    h = hashlib.sha256()
    for df in (logs.impressions, logs.feedback, logs.oracle.select("request_id")):
        h.update(df.write_csv().encode())
    assert (logs.impressions.height, h.hexdigest()[:16]) == (rows, digest)
    weight = np.arange(1, rows + 1) / rows  # an index-weighted sum sees rows swapped
    for column, sums in oracle.items():
        p = logs.oracle[column].to_numpy()
        assert (p.sum(), p @ weight) == pytest.approx(sums, rel=1e-8, abs=0), column


@pytest.mark.parametrize("sim", [
    {"item_lifetime_days": 2.0, "new_items_per_day": 3, "initial_items": 5},
    {"item_lifetime_days": 6.0, "new_items_per_day": 1, "initial_items": 40},
])
def test_skipping_retired_cohorts_gives_exactly_every_cohort_filtered(tmp_path, sim):
    cfg = tiny_params(tmp_path, simulator=sim).simulator
    for d in range(0, 80, 3):
        fast, full = world.catalog_on(cfg, d), _every_cohort(cfg, d)
        for key in KEYS:
            a, b = getattr(fast, key), getattr(full, key)
            assert a.dtype == b.dtype and np.array_equal(a, b), (d, key)


def test_a_late_day_builds_only_the_cohorts_alive_on_it(monkeypatch):
    cfg = SimulatorConfig()  # 100 new items a day, a 20-day mean life
    built = []
    cohort = world._cohort
    monkeypatch.setattr(world, "_cohort", lambda c, t: built.append(t) or cohort(c, t))
    cat = world.catalog_on(cfg, 3000)
    assert len(cat) > 1000
    # the oldest live cohort is a few hundred days old at most, not 3000
    assert 0 < len(built) < 300 and min(built) > 2500
    assert cat.birth.min() >= min(built)


def test_dates_beyond_the_horizon_are_refused_naming_it(tmp_path):
    cfg = tiny_params(tmp_path, simulator={"horizon_days": 30}).simulator  # start 2026-01-05
    assert world.last_day(cfg) == dt.date(2026, 2, 4)
    assert world.day_index(cfg, dt.date(2026, 2, 4)) == 30
    with pytest.raises(ValueError, match=r"date 2026-02-05 is beyond the built-in world's "
                                         r"horizon: its last day is 2026-02-04 \(simulator.start="
                                         r"2026-01-05 \+ simulator.horizon_days=30\)"):
        world.day_index(cfg, dt.date(2026, 2, 5))
    with pytest.raises(ValueError, match="simulator.horizon_days"):
        world.catalog_on(cfg, 31)
    assert SimulatorConfig().horizon_days == 3650
    with pytest.raises(ValueError, match="past the last representable date"):
        SimulatorConfig(start=dt.date(9999, 1, 1))


@pytest.mark.parametrize("args", [
    ["stage", "ingest", "--date", "2099-12-31"],  # 9999-12-31: outside any log (test_store)
    ["run", "--date", "2026-02-05"],
    ["ingest", "--date", "2026-02-05"],
    ["simulate", "--start", "2026-02-01", "--days", "5"],
])
def test_cli_refuses_a_date_past_the_horizon_before_the_lock_or_any_write(tmp_path, args):
    params = tiny_params(tmp_path, simulator={"horizon_days": 30})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    res = CliRunner().invoke(app, [*args, "--params", str(path)])
    assert res.exit_code == 2, res.output
    assert "beyond the built-in world's horizon: its last day is 2026-02-04" in res.output
    assert "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no lock, no logs


def test_backfill_refuses_a_range_past_the_horizon_before_airflow_starts(tmp_path):
    params = tiny_params(tmp_path, simulator={"horizon_days": 30})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    res = CliRunner().invoke(app, ["backfill", "--start", "2026-02-01", "--end", "2026-02-06",
                                   "--params", str(path), "--airflow-home",
                                   str(tmp_path / "airflow")])
    assert res.exit_code == 2, res.output
    assert "date 2026-02-06 is beyond the built-in world's horizon" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
