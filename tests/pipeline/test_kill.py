"""A run killed (SIGKILL) during training leaves production untouched, and a rerun completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from reloop.pipeline import run_period, run_stage
from reloop.registry import Registry
from tests.data.conftest import DAY1, DAY2
from tests.pipeline.test_loop import loop_params


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
