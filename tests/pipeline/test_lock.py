"""Two runs on one workspace: the second waits, or fails cleanly naming the holder; a lock left
by a killed run is recovered at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from reloop.lock import WorkspaceBusyError, workspace_lock
from reloop.stages import run_stage
from tests.support.params import DAY1, loop_params

HOLD = """
import sys, time
from reloop.lock import workspace_lock
with workspace_lock(sys.argv[1], 5, what="stage train, period 2026-01-05"):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_second_run_fails_cleanly_then_a_killed_holder_leaves_no_stale_lock(tmp_path):
    params = loop_params(tmp_path, pipeline={"lock_timeout_s": 0.5})
    cfg = tmp_path / "params.yaml"
    cfg.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    proc = _holder(params.pipeline.lock_file)
    try:
        with pytest.raises(WorkspaceBusyError) as err:
            run_stage("ingest", params, DAY1)
        assert f"'pid': {proc.pid}" in str(err.value) or f'"pid": {proc.pid}' in str(err.value)
        assert "stage train, period 2026-01-05" in str(err.value)
        assert "pipeline.lock_timeout_s=0.5s" in str(err.value)
        assert not (tmp_path / "logs").exists()  # nothing was written
        done = subprocess.run([sys.executable, "-m", "reloop.cli", "stage", "ingest", "--date",
                               DAY1, "--params", str(cfg)], capture_output=True, text=True)
        assert done.returncode == 2 and "the workspace is busy" in done.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    # the killed holder's lock file is still on disk, but nothing holds it any more
    assert os.path.exists(params.pipeline.lock_file)
    t0 = time.monotonic()
    out = run_stage("ingest", params, DAY1)
    assert time.monotonic() - t0 < 60 and out["period_start"] == DAY1


def test_a_waiting_run_proceeds_when_the_first_finishes(tmp_path):
    path = tmp_path / "ws.lock"
    order = []
    release = threading.Event()

    def first():
        with workspace_lock(path, 5, what="first"):
            order.append("first in")
            release.wait(10)
            order.append("first out")

    t = threading.Thread(target=first)
    t.start()
    while not order:
        time.sleep(0.01)
    threading.Timer(0.3, release.set).start()
    with workspace_lock(path, 10, what="second"):  # waits for the first, then gets the lock
        order.append("second in")
    t.join()
    assert order == ["first in", "first out", "second in"]
