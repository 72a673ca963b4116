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


def test_benchmarks_that_load_numpy_early_run_again_pinned(tmp_path):
    """``python -m benchmarks.<name>`` imports numpy before ``main``: the benchmark starts again in
    a process with the pinned variables, with the same arguments; already pinned, it goes on."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from reloop.numerics import NATIVE_SWITCH, PINNED

    (tmp_path / "probe.py").write_text(
        "import os, sys\nimport numpy\nfrom benchmarks.common import run_with_pinned_numerics\n"
        "if __name__ == '__main__':\n    run_with_pinned_numerics('probe')\n"
        "    print(os.getpid(), os.environ.get('MKL_CBWR'), sys.argv[1:])\n")
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in (*PINNED, NATIVE_SWITCH)}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(root)])

    def probe(**extra: str) -> list[str]:
        out = subprocess.run([sys.executable, "-m", "probe", "a", "b c"], env={**env, **extra},
                             capture_output=True, text=True, check=True, cwd=tmp_path)
        return out.stdout.strip().split(maxsplit=2)

    assert probe()[1:] == ["AVX2", "['a', 'b c']"]
    assert probe(MKL_CBWR="COMPATIBLE")[1] == "COMPATIBLE"  # the user's value is kept
    assert probe(**{NATIVE_SWITCH: "1"})[1] == "None"
