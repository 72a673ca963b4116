"""Every study spec shipped in benchmarks/studies/ loads, and every arm's params validate."""

from pathlib import Path

import pytest

from reloop.ops.study.spec import load_spec, resolve_arms

SPECS = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "studies").glob("*.yaml"))


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
        spec, params_file = load_spec(SPECS[[p.stem for p in SPECS].index(name)])
        epochs = {a.name: (a.params.train.warm_epochs, a.params.train.warm_max_steps)
                  for a in resolve_arms(spec, params_file)}
        assert epochs == {"warm-epochs-2": (2, None), "warm-epochs-1": (1, None)}
