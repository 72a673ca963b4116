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
