"""Helpers shared by the benchmarks: machine description, result files, dataset locations."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

RESULTS = Path(__file__).resolve().parent / "results"
#: names the directory of the MovieTweetings 100K snapshot (``ratings.dat``, ``movies.dat``; MIT
#: licence), which ``benchmarks.study real`` and ``benchmarks.reloop_offline`` read
MOVIETWEETINGS_ENV = "RELOOP_MOVIETWEETINGS_DIR"


def movietweetings_dir() -> Path | None:
    """The directory :data:`MOVIETWEETINGS_ENV` names; ``None`` when it is unset or empty."""
    value = os.environ.get(MOVIETWEETINGS_ENV, "")
    return Path(value) if value else None


def run_with_pinned_numerics(module: str) -> None:
    """Before a benchmark's ``main``: make its floating point the study workers' (the variables
    :func:`reloop.numerics.pin_numerics` sets). They take effect only before numpy and torch
    load, so when the module's imports already loaded one of them without the variables, the
    benchmark starts again, ``python -m <module>`` with the same arguments, in a process that
    has them."""
    from reloop.numerics import pin_numerics

    env = dict(os.environ)
    if pin_numerics(env) and {"numpy", "torch"} & set(sys.modules):
        os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], env)
    pin_numerics()


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    return {
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "processor": platform.processor() or platform.machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the machine description) to ``results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path}")
    return path


def scratch_world_params(raw: dict[str, Any], work: Path, impressions: int | None = None):
    """``raw`` (a params.yaml dict) with the logs, oracle, quarantine and joined tables under
    ``work`` and, if given, ``simulator.impressions_per_day`` set: a built-in world to simulate
    and throw away."""
    from reloop.config import params_from_dict

    raw = {**raw}
    raw["logs"] = {**raw.get("logs", {}), "root": f"{work}/logs",
                   "oracle_root": f"{work}/oracle", "quarantine_root": f"{work}/quarantine"}
    raw["join"] = {**raw.get("join", {}), "out_root": f"{work}/joined"}
    if impressions:
        raw["simulator"] = {**raw.get("simulator", {}), "impressions_per_day": impressions}
    return params_from_dict(raw)


class StudyArm(NamedTuple):
    """A finished ``reloop study`` arm, as the replay screens read it."""

    path: Path  # absolute: its params.yaml paths are relative to it (run there: contextlib.chdir)
    starts: list[str]  # its period starts (arm.json)
    label: str  # the path as results name it: relative to the working directory when inside it


def study_arm(arm_dir: Path) -> StudyArm:
    """The study arm in ``arm_dir`` (its ``arm.json`` must exist)."""
    path, cwd = arm_dir.resolve(), Path.cwd()
    starts = json.loads((path / "arm.json").read_text())["starts"]
    return StudyArm(path, starts, str(path.relative_to(cwd) if path.is_relative_to(cwd) else path))
