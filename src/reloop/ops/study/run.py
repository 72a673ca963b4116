"""Run a study: every arm in its own workspace, period by period, through the stage runner.

Layout of a study's output directory::

    <out>/study.json                  the spec and every arm's resolved parameters
    <out>/arms/<arm>/params.yaml      the arm's parameters; every relative path resolves here
    <out>/arms/<arm>/...              its logs, joined tables, models, registry, reports
    <out>/arms/<arm>/study/<date>.json  what it served in that period (:mod:`.metrics`)
    <out>/arms/<arm>/study.log        its log
    <out>/results.json, results.md, plots/*.png   (:mod:`.report`)

Each arm runs in a worker process (``python -m reloop.ops.study.worker``) with a fixed number of
threads, so its figures do not depend on how many arms run beside it; ``jobs`` workers run at
once. Every period runs the stages of :data:`reloop.stages.STAGES` (the workspace lock and the
period-order check included), except ``archive``: a study's arms are scratch workspaces.
A finished period leaves its ``study/<date>.json``; a rerun skips those, so an interrupted study
resumes where it stopped.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reloop.jsonio import read_json
from reloop.ops.study.spec import ResolvedArm, StudyError, StudySpec, load_spec, resolve_arms
from reloop.stages.graph import STAGE_GRAPH

__all__ = ["PERIOD_STAGES", "StudyPlan", "check_coverage", "plan_study", "run_arm", "run_study"]

log = logging.getLogger(__name__)

#: Stages a study runs each period (``archive`` is left out: arms are scratch workspaces).
PERIOD_STAGES = tuple(s.name for s in STAGE_GRAPH if s.name != "archive")
#: Stages of a static arm's frozen periods (and of its prefix before the training period).
LOG_STAGES = ("ingest", "validate", "join", "drift")

ARM_FILE = "arm.json"


@dataclass(frozen=True)
class StudyPlan:
    """A validated study, ready to run: the spec, its arms and the period starts."""

    spec: StudySpec
    params_file: Path
    arms: list[ResolvedArm]
    starts: list[dt.date]
    out: Path

    def arm_dir(self, name: str) -> Path:
        return self.out / "arms" / name


def check_coverage(arm: ResolvedArm, starts: list[dt.date]) -> None:
    """Refuse periods the arm's source cannot produce (before anything runs)."""
    params = arm.params
    days = [s + dt.timedelta(days=i) for s in starts for i in range(params.logs.period_days)]
    source = params.logs.source
    if source == "simulator":
        from reloop.sources.world import check_horizon

        if days[0] < params.simulator.start:
            raise StudyError(
                f"arm {arm.name!r}: the study starts {days[0]}, before the built-in world's "
                f"simulator.start={params.simulator.start}"
            )
        try:
            check_horizon(params.simulator, days[-1])
        except ValueError as err:
            raise StudyError(f"arm {arm.name!r}: the study's last day: {err}") from None
    elif source == "replay":
        from reloop.sources.replay import replay_range

        first, last = replay_range(params)
        if days[0] < first or days[-1] > last:
            raise StudyError(
                f"arm {arm.name!r}: the study's periods cover {days[0]} .. {days[-1]}, but the "
                f"converted {params.replay.dataset} replay covers {first} .. {last}"
            )
    else:
        from reloop.data.logs.store import partition_dir

        missing = [d for d in days
                   if not partition_dir(params.logs.root, "impressions", d).is_dir()]
        if missing:
            raise StudyError(
                f"arm {arm.name!r}: logs.source is external and {len(missing)} day(s) of the "
                f"study have no impressions partition under {params.logs.root}, first "
                f"{missing[0]}"
            )


def plan_study(spec_path: str | Path, out: str | Path, arms: list[str] | None = None) -> StudyPlan:
    """Validate the spec, every arm and the period range; nothing is written."""
    spec, params_file = load_spec(spec_path)
    resolved = resolve_arms(spec, params_file)
    if arms:
        unknown = sorted(set(arms) - {a.name for a in resolved})
        if unknown:
            raise StudyError(f"--arms {unknown} are not arms of study {spec.name!r}; arms: "
                             f"{[a.name for a in resolved]}")
        resolved = [a for a in resolved if a.name in arms]
    period_days = {a.params.logs.period_days for a in resolved}
    if len(period_days) != 1:
        raise StudyError(f"every arm must use the same logs.period_days; got {sorted(period_days)}")
    period_days = period_days.pop()
    from reloop.periods import check_period_start

    try:
        check_period_start(spec.start, period_days, "the study's start")
        starts = spec.period_starts(period_days)
    except ValueError as err:
        raise StudyError(str(err)) from None
    for arm in resolved:
        check_coverage(arm, starts)
    return StudyPlan(spec, params_file, resolved, starts, Path(out))


def _write_if_same(path: Path, text: str, what: str) -> None:
    if path.is_file() and path.read_text() != text:
        raise StudyError(
            f"{path} already holds a different {what}; a study resumes only with the same spec. "
            "Use another --out, or delete the directory to start over"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        path.write_text(text)


def prepare_workspaces(plan: StudyPlan) -> None:
    """Write ``study.json`` and each arm's ``params.yaml`` / ``arm.json`` (resume-safe)."""
    record = {
        "spec": plan.spec.model_dump(mode="json"),
        "params_file": str(plan.params_file),
        "starts": [s.isoformat() for s in plan.starts],
    }
    plan.out.mkdir(parents=True, exist_ok=True)
    for arm in plan.arms:
        adir = plan.arm_dir(arm.name)
        _write_if_same(adir / "params.yaml",
                       yaml.safe_dump(arm.raw, sort_keys=False, default_flow_style=None),
                       f"params.yaml for arm {arm.name!r}")
        _write_if_same(adir / ARM_FILE, json.dumps({
            "name": arm.name, "starts": record["starts"], "static_periods": arm.static_periods,
        }, indent=2) + "\n", f"{ARM_FILE} for arm {arm.name!r}")
    (plan.out / "study.json").write_text(json.dumps(record, indent=2) + "\n")


def period_record_path(arm_dir: Path, start: str | dt.date) -> Path:
    start = start if isinstance(start, str) else start.isoformat()
    return arm_dir / "study" / f"{start}.json"


def _stages_for(index: int, static_periods: int | None) -> tuple[str, ...]:
    if static_periods is None:
        return PERIOD_STAGES
    return PERIOD_STAGES if index == static_periods - 1 else LOG_STAGES


def run_arm(arm_dir: str | Path) -> int:
    """Run (or resume) one arm in its workspace; prints one JSON line per finished period.

    Runs in the worker process: the working directory becomes the arm's directory, so every
    relative path of its ``params.yaml`` resolves there.
    """
    from reloop.atomic import write_json
    from reloop.config import load_params
    from reloop.ops.study.metrics import period_metrics
    from reloop.stages import run_stage

    arm_dir = Path(arm_dir).resolve()
    os.chdir(arm_dir)
    meta = read_json(arm_dir / ARM_FILE)
    params = load_params(arm_dir / "params.yaml")
    for i, start in enumerate(meta["starts"]):
        record_path = period_record_path(arm_dir, start)
        if record_path.is_file():
            continue
        t0 = time.perf_counter()
        stages = _stages_for(i, meta["static_periods"])
        for name in stages:
            run_stage(name, params, start)
        record = {"arm": meta["name"], "index": i + 1, "stages": list(stages),
                  **period_metrics(params, start)}
        write_json(record_path, record)
        print(json.dumps(record | {"seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    return 0


def _worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "POLARS_MAX_THREADS",
                "RELOOP_TORCH_THREADS"):
        env[var] = str(threads)
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def _progress_line(rec: dict[str, Any]) -> str:
    parts = [f"{rec['arm']:>16} | {rec['period']} |"]
    parts.append(f"AUC {rec['auc']:.4f}")
    if "auc_oracle" in rec:
        parts.append(f"(oracle {rec['auc_oracle']:.4f})")
    if "ctr_expected" in rec:
        parts.append(f"| exp. CTR {rec['ctr_expected']:.4f}")
    decision = rec.get("decision")
    if decision is not None:
        parts.append(f"| {'promoted' if decision['promoted'] else 'kept incumbent'}")
    parts.append(f"| {rec.get('seconds', 0):.0f}s")
    return " ".join(parts)


#: seconds an interrupted study gives each running worker to stop before it is killed
WORKER_STOP_S = 10.0


def run_study(
    plan: StudyPlan,
    *,
    jobs: int | None = None,
    threads: int = 1,
    echo=print,
) -> dict[str, int]:
    """Run every arm of ``plan`` (``jobs`` at once); returns each arm's exit status."""
    prepare_workspaces(plan)
    jobs = max(1, jobs or (os.cpu_count() or 1) // threads)
    pending = list(plan.arms)
    running: dict[str, tuple[subprocess.Popen, threading.Thread, Any]] = {}
    status: dict[str, int] = {}

    def pump(name: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            try:
                echo(_progress_line(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError):
                echo(f"{name:>16} | {line.rstrip()}")

    try:
        while pending or running:
            while pending and len(running) < jobs:
                arm = pending.pop(0)
                adir = plan.arm_dir(arm.name)
                logf = (adir / "study.log").open("a")
                proc = subprocess.Popen(
                    [sys.executable, "-m", "reloop.ops.study.worker", str(adir)],
                    stdout=subprocess.PIPE, stderr=logf, text=True, env=_worker_env(threads),
                )
                th = threading.Thread(target=pump, args=(arm.name, proc), daemon=True)
                th.start()
                running[arm.name] = (proc, th, logf)
                echo(f"{arm.name:>16} | started in {adir}")
            time.sleep(0.2)
            for name in list(running):
                proc, th, logf = running[name]
                if proc.poll() is None:
                    continue
                th.join()
                logf.close()
                status[name] = proc.returncode
                del running[name]
                if proc.returncode != 0:
                    tail = (plan.arm_dir(name) / "study.log").read_text().splitlines()[-15:]
                    echo(f"{name:>16} | FAILED (exit {proc.returncode}); last lines of "
                         f"{plan.arm_dir(name) / 'study.log'}:\n" + "\n".join(tail))
                else:
                    echo(f"{name:>16} | done")
    finally:  # interrupted (Ctrl-C, an error): no worker outlives the study, no log stays open
        for name, (proc, _, logf) in running.items():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=WORKER_STOP_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                echo(f"{name:>16} | stopped (exit {proc.returncode}); a rerun resumes it")
            logf.close()
    return status
