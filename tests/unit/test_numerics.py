"""MKL and NumPy are pinned to one code path by default (reloop.numerics), with a switch back."""

from __future__ import annotations


def test_numerics_are_pinned_unless_set_or_switched_off():
    from reloop.numerics import NATIVE_SWITCH, PINNED, pin_numerics

    env: dict[str, str] = {}
    assert pin_numerics(env) == {"MKL_CBWR": "AVX2", "MKL_DYNAMIC": "FALSE",
                                 "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
    assert env == PINNED
    mine = {"MKL_CBWR": "COMPATIBLE", "NPY_DISABLE_CPU_FEATURES": ""}  # the user's values win
    assert pin_numerics(mine) == {"MKL_DYNAMIC": "FALSE"}
    assert mine == {"MKL_CBWR": "COMPATIBLE", "MKL_DYNAMIC": "FALSE",
                    "NPY_DISABLE_CPU_FEATURES": ""}
    native = {NATIVE_SWITCH: "1"}
    assert pin_numerics(native) == {} and native == {NATIVE_SWITCH: "1"}


def test_backfills_give_airflow_the_pinned_numerics(monkeypatch, tmp_path):
    from reloop.ops.airflow import airflow_env

    monkeypatch.delenv("MKL_CBWR", raising=False)
    monkeypatch.delenv("MKL_DYNAMIC", raising=False)
    monkeypatch.delenv("NPY_DISABLE_CPU_FEATURES", raising=False)
    env = airflow_env(tmp_path / "home", tmp_path / "dags", tmp_path / "params.yaml")
    assert env["MKL_CBWR"] == "AVX2" and env["MKL_DYNAMIC"] == "FALSE"
    assert env["NPY_DISABLE_CPU_FEATURES"] == "X86_V4 AVX512_ICL AVX512_SPR"


def test_numpy_loads_pinned_to_avx2_at_most():
    """With the pinned environment NumPy loads without complaint and keeps every code path up to
    AVX2 + FMA (``X86_V3``) the CPU has; only the AVX-512 ones are off."""
    import json
    import os
    import subprocess
    import sys

    from reloop.numerics import NATIVE_SWITCH, pin_numerics

    probe = ("import json; from numpy._core._multiarray_umath import __cpu_features__ as f; "
             "print(json.dumps(f))")

    def features(env: dict[str, str]) -> dict[str, bool]:
        out = subprocess.run([sys.executable, "-W", "error", "-c", probe], env=env,
                             capture_output=True, text=True, check=True)
        assert out.stderr == ""
        return json.loads(out.stdout)

    base = {k: v for k, v in os.environ.items()
            if k not in ("NPY_DISABLE_CPU_FEATURES", NATIVE_SWITCH)}
    native = features(base)
    pinned_env = dict(base)
    pin_numerics(pinned_env)
    pinned = features(pinned_env)
    for name in ("X86_V4", "AVX512_ICL", "AVX512_SPR"):  # the dispatch targets switched off
        assert not pinned.get(name, False), name
    below = ("SSE42", "X86_V2", "AVX", "FMA3", "AVX2", "X86_V3")
    assert {k: pinned[k] for k in below} == {k: native[k] for k in below}
