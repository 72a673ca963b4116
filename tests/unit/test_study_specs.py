"""Every study spec shipped in benchmarks/studies/ loads, and every arm's params validate."""

from pathlib import Path

import pytest

from reloop.ops.study.spec import load_spec, resolve_arms

SPECS = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "studies").glob("*.yaml"))


def _arms(name: str):
    """The resolved arms of ``benchmarks/studies/<name>.yaml``."""
    spec, params_file = load_spec(SPECS[[p.stem for p in SPECS].index(name)])
    return resolve_arms(spec, params_file)


def test_the_specs_are_found():
    assert {p.stem for p in SPECS} >= {"world", "movietweetings", "warm-epochs-200k"}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_resolves(path):
    spec, params_file = load_spec(path)
    arms = resolve_arms(spec, params_file)
    assert [a.name for a in arms] == [a.name for a in spec.arms]
    assert spec.baseline in {a.name for a in arms}


def test_the_warm_epoch_specs_measure_whole_epochs():
    for name in ("warm-epochs-200k", "warm-epochs-movietweetings"):
        epochs = {a.name: (a.params.train.warm_epochs, a.params.train.warm_max_steps)
                  for a in _arms(name)}
        assert epochs == {"warm-epochs-2": (2, None), "warm-epochs-1": (1, None)}


def test_specs_measured_with_user_id_pin_it_and_the_default_leaves_it_out():
    # params.yaml dropped user_id after user-id-200k.yaml; studies measured before keep it so a
    # rerun reproduces their stored results, and world.yaml's `today` is the loop as it was
    def fields(name):
        return {a.name: [f.name for f in a.params.features.fields] for a in _arms(name)}

    world = fields("world")
    assert "user_id" in world.pop("today")
    assert all("user_id" not in f for f in world.values())
    for name in ("warm-epochs-200k", "warm-steps-200k", "design-world-50k"):
        assert all(f[0] == "user_id" for f in fields(name).values()), name
    assert {arm: "user_id" in f for arm, f in fields("user-id-200k").items()} == {
        "with-user-id": True, "no-user-id": False, "no-user-id-lr-3e-3": False,
        "no-user-id-warm-uncapped": False, "no-user-id-warm-uncapped-lr-3e-3": False}
    caps = {a.name: a.params.train.warm_max_steps for a in _arms("user-id-200k")}
    assert caps == {"with-user-id": 150, "no-user-id": 150, "no-user-id-lr-3e-3": 150,
                    "no-user-id-warm-uncapped": None, "no-user-id-warm-uncapped-lr-3e-3": None}


def test_specs_measured_with_the_coarse_memory_pin_it_and_real_logs_keep_it():
    # params.yaml took a finer memory after memory-200k.yaml; the world studies measured before
    # pin the coarse one (K 16, 0.3% / 64-row leaves, lambda 0.25) so a rerun reproduces them,
    # and every MovieTweetings study pins the memory `reloop replay convert` suggests
    from reloop.sources.replay import REPLAY_MEMORY

    def shape(arm):
        m = arm.params.memory
        return {"K": m.K, "leaf_share": m.leaf_share, "min_leaf_rows": m.min_leaf_rows,
                "lambda": m.lam}

    coarse = {"K": 16, "leaf_share": 0.003, "min_leaf_rows": 64, "lambda": 0.25}
    fine = {"K": 32, "leaf_share": 0.0003, "min_leaf_rows": 16, "lambda": 1.0}
    assert coarse == REPLAY_MEMORY
    for name in ("warm-epochs-200k", "warm-steps-200k", "user-id-200k", "steps-200k"):
        assert all(shape(a) == coarse for a in _arms(name)), name
    for name in ("movietweetings", "user-id-movietweetings", "lr-movietweetings",
                 "warm-epochs-movietweetings"):
        assert all(shape(a) in (coarse, {**coarse, "lambda": 1.0}) for a in _arms(name)), name
    world = {a.name: shape(a) for a in _arms("world")}
    assert world["default"] == world["reloop-memory"] == fine
    assert world["coarse-memory"] == coarse
    assert world["today"] == {**coarse, "min_leaf_rows": 1, "lambda": 1.0}
    memory = {a.name: shape(a) for a in _arms("memory-200k")}
    assert memory["coarse"] == coarse and memory["fine-k32"] == fine


def test_world_50k_is_world_at_a_quarter_of_the_volume():
    # the two specs must differ only in the volume, so their gap_closed_share compare
    world = {a.name: a.params for a in _arms("world")}
    small = {a.name: a.params for a in _arms("world-50k")}
    assert set(small) == {"default", "incremental-ce", "today", "static"}
    for name, params in small.items():
        assert params.simulator.impressions_per_day == 50_000
        same_volume = params.model_copy(update={"simulator": world[name].simulator})
        assert same_volume == world[name], name


HEADLINE = ("world", "world-50k", "movietweetings")
#: studies measured since with params.yaml's weights as they are
SINCE = ("warm-stop-200k", "young-model-200k")


def test_specs_pin_the_window_weights_they_measured_and_the_default_is_0_5():
    # params.yaml took window_decay 0.5 after freshness-200k.yaml, window-decay-50k.yaml and
    # window-decay-movietweetings.yaml; every spec measured before pins equal weights so a rerun
    # reproduces its stored results, and only the arms that measured recency weights set others.
    # The three headline studies (world, world-50k, movietweetings) were rerun with the default
    # since: all their arms read params.yaml's 0.5 (`today` trains on one period, where the
    # weights change nothing) except the static baselines, which weight their prefix alike
    from reloop.config import load_params

    root = Path(__file__).resolve().parents[2]
    assert load_params(root / "params.yaml").train.window_decay == 0.5
    decays = {p.stem: {a.name: a.params.train.window_decay for a in _arms(p.stem)}
              for p in SPECS}
    static = {(p.stem, a.name) for p in SPECS for a in _arms(p.stem) if a.static_periods}
    assert all(decays[spec][arm] == 1.0 for spec, arm in static)
    weighted = {(spec, arm): d for spec, arms in decays.items() for arm, d in arms.items()
                if d != 1.0 and spec not in HEADLINE + SINCE}
    assert weighted == {("freshness-200k", "window-decay-0.5"): 0.5,
                        ("window-decay-50k", "window-decay-0.5"): 0.5,
                        ("window-decay-movietweetings", "window-decay-0.5"): 0.5,
                        ("design-world-50k", "B-w7-d07"): 0.7}
    for spec in HEADLINE:
        assert {d for arm, d in decays[spec].items() if (spec, arm) not in static} == {0.5}
        assert any(name == spec for name, _ in static)
    for spec in SINCE:
        assert set(decays[spec].values()) == {0.5}
    for spec in ("world", "world-50k"):
        assert {a.name: a.params.train.window_periods for a in _arms(spec)}["today"] == 1
