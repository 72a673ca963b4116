"""A run killed (SIGKILL) during training leaves production untouched, and a rerun completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from reloop.registry import Registry
from reloop.stages import run_period, run_stage
from tests.support.params import DAY1, DAY2, loop_params


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_kill_during_training_then_rerun(tmp_path):
    params = loop_params(tmp_path)
    run_period(params, DAY1)
    for stage in ("ingest", "validate", "join"):
        run_stage(stage, params, DAY2)
    registry = Registry(params.pipeline.registry_root)
    production, history = registry.production().model_id, registry.history()

    # many epochs so the kill lands inside the training loop
    slow = loop_params(tmp_path, train={"max_epochs": 200, "patience": 200})
    cfg = tmp_path / "params.yaml"
    cfg.write_text(yaml.safe_dump(slow.model_dump(mode="json", by_alias=True)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "reloop.cli", "-v", "stage", "train", "--date", DAY2,
         "--params", str(cfg)],
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    for line in proc.stderr:  # wait until an epoch has finished, then kill
        if "epoch 2:" in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    candidate = Path(params.pipeline.models_root) / f"date={DAY2}"
    assert not candidate.exists()  # written atomically at the end, so never half-written
    assert registry.production().model_id == production and registry.history() == history

    out = {name: run_stage(name, params, DAY2) for name in ("train", "memory", "evaluate",
                                                             "promote")}
    assert out["train"]["parent_id"] == production
    assert (candidate / "model.safetensors").is_file()
    assert Registry(params.pipeline.registry_root).get(out["train"]["model_id"])


# Each crash point SIGKILLs the promote stage at one moment inside the promotion.
CRASH = """
import os, shutil, signal, sys
import reloop.atomic as atomic
from reloop.config import load_params
from reloop.stages import run_stage

point, cfg, day = sys.argv[1:4]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point == "copying":  # half-way through copying the candidate into the registry
    real_tree, real_copy = shutil.copytree, shutil.copy2
    copied = []
    def copy(src, dst, **kw):
        copied.append(src)
        if len(copied) == 2:
            die()
        return real_copy(src, dst, **kw)
    shutil.copytree = lambda src, dst, **kw: real_tree(src, dst, copy_function=copy, **kw)
elif point == "pointer":  # the new pointer is written and fsynced, not yet renamed into place
    real_replace = os.replace
    def replace(src, dst, *a, **kw):
        if str(dst).endswith("production.json"):
            die()
        return real_replace(src, dst, *a, **kw)
    os.replace = replace
elif point == "decision":  # production moved, decision file not yet written
    real_write = atomic.write_json
    def write_json(path, obj):
        if str(path).endswith("decision.json"):
            die()
        return real_write(path, obj)
    atomic.write_json = write_json
run_stage("promote", load_params(cfg), day)
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_kill_during_promotion_leaves_old_or_new_pointer_then_rerun_completes(tmp_path):
    # a gate every candidate passes, so each crash lands inside a real promotion
    params = loop_params(tmp_path, promote={"min_auc_gain": -1.0, "max_logloss_regression": 10.0})
    cfg = tmp_path / "params.yaml"
    cfg.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    run_period(params, DAY1)
    for stage in ("ingest", "validate", "join", "drift", "train", "memory", "evaluate"):
        out = run_stage(stage, params, DAY2)
    candidate = json.loads(Path(out["evaluation"]).read_text())["candidate"]["model_id"]
    registry = Registry(params.pipeline.registry_root)
    old, old_history = registry.production().model_id, registry.history()
    decision = Path(params.pipeline.decisions_root) / f"date={DAY2}" / "decision.json"

    def crash(point: str) -> None:
        done = subprocess.run([sys.executable, "-c", CRASH, point, str(cfg), DAY2],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]

    crash("copying")
    assert registry.production().model_id == old and registry.history() == old_history
    assert candidate not in [v.model_id for v in registry.versions()]  # no half version
    crash("pointer")
    assert registry.production().model_id == old and registry.history() == old_history
    assert registry.get(candidate).checkpoint_dir.is_dir()  # registered, complete, not live
    crash("decision")
    assert registry.production().model_id == candidate  # the new pointer, whole
    assert not decision.exists()

    result = run_stage("promote", params, DAY2)  # the rerun completes
    assert result["promoted"] and result["model_id"] == candidate
    assert registry.production().model_id == candidate
    promotions = [e for e in registry.history() if e["action"] == "promote"]
    assert [e["period"] for e in promotions] == [DAY1, DAY2]  # promoted once, not twice
    assert json.loads(decision.read_text())["candidate"] == candidate
    versions_dir = Path(params.pipeline.registry_root) / "versions"
    assert sorted(p.name for p in versions_dir.iterdir()) == sorted(
        v.model_id for v in registry.versions())  # no leftover copies


def test_a_corrupt_candidate_is_never_promoted(tmp_path):
    params = loop_params(tmp_path, promote={"min_auc_gain": -1.0, "max_logloss_regression": 10.0})
    run_period(params, DAY1)
    for stage in ("ingest", "validate", "join", "drift", "train", "memory", "evaluate"):
        run_stage(stage, params, DAY2)
    registry = Registry(params.pipeline.registry_root)
    production, history = registry.production().model_id, registry.history()
    weights = Path(params.pipeline.models_root) / f"date={DAY2}" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-16:] = bytes(16)  # flip the tail of the tensors
    weights.write_bytes(bytes(data))
    with pytest.raises(Exception, match="(?i)checksum|corrupt|sha256"):
        run_stage("promote", params, DAY2)
    assert registry.production().model_id == production and registry.history() == history
    assert [v.lineage["period"] for v in registry.versions()] == [DAY1]
    assert not (Path(params.pipeline.decisions_root) / f"date={DAY2}").exists()
