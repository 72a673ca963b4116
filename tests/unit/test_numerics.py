"""MKL is pinned to one code path by default (reloop.numerics), with a switch back."""

from __future__ import annotations


def test_numerics_are_pinned_unless_set_or_switched_off():
    from reloop.numerics import NATIVE_SWITCH, PINNED, pin_numerics

    env: dict[str, str] = {}
    assert pin_numerics(env) == {"MKL_CBWR": "AVX2", "MKL_DYNAMIC": "FALSE"} == env == PINNED
    mine = {"MKL_CBWR": "COMPATIBLE"}  # a value the user set wins
    assert pin_numerics(mine) == {"MKL_DYNAMIC": "FALSE"}
    assert mine == {"MKL_CBWR": "COMPATIBLE", "MKL_DYNAMIC": "FALSE"}
    native = {NATIVE_SWITCH: "1"}
    assert pin_numerics(native) == {} and native == {NATIVE_SWITCH: "1"}


def test_backfills_give_airflow_the_pinned_numerics(monkeypatch, tmp_path):
    from reloop.ops.airflow import airflow_env

    monkeypatch.delenv("MKL_CBWR", raising=False)
    monkeypatch.delenv("MKL_DYNAMIC", raising=False)
    env = airflow_env(tmp_path / "home", tmp_path / "dags", tmp_path / "params.yaml")
    assert env["MKL_CBWR"] == "AVX2" and env["MKL_DYNAMIC"] == "FALSE"
