"""The workspace lock: one stage of one run at a time on a workspace.

Every stage holds ``pipeline.lock_file`` while it runs, whichever front end started it (the CLI,
``dvc repro``, an Airflow task). A second run waits up to ``pipeline.lock_timeout_s`` and then fails
with an error that names the holder; it never interleaves with the first, so state is never
corrupted.

The lock is an OS file lock (``flock``), released by the kernel when its holder dies. A run killed
with SIGKILL therefore leaves no stale lock: the next run acquires it at once. The sidecar
``<lock_file>.owner`` only describes the last holder (pid, host, stage, period) for messages.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["WorkspaceBusyError", "workspace_lock"]


class WorkspaceBusyError(RuntimeError):
    """Another run holds the workspace lock for longer than ``pipeline.lock_timeout_s``."""


def _owner_path(path: Path) -> Path:
    return path.with_name(path.name + ".owner")


@contextmanager
def workspace_lock(path: str | Path, timeout: float, *, what: str) -> Iterator[None]:
    """Hold the workspace lock at ``path`` for the duration of the block.

    ``what`` (e.g. ``"train 2026-01-03"``) is recorded for the message another run gets.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), is_singleton=False)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        try:
            owner = json.loads(_owner_path(path).read_text())
        except (OSError, ValueError):
            owner = "unknown"
        raise WorkspaceBusyError(
            f"the workspace is busy: lock {path} is held by {owner}; waited "
            f"pipeline.lock_timeout_s={timeout:g}s. Another run is in progress on this workspace; "
            "wait for it to finish (a killed run releases the lock by itself)"
        ) from None
    try:
        _owner_path(path).write_text(json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(), "what": what,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }))
        yield
    finally:
        lock.release()
