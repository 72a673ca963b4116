"""The fault campaign's harness: the workspace handle a case gets, and ``reloop`` run in this
process or as a process of its own (:mod:`tests.faults.workspace` builds and digests the
workspace; ``tests/faults/conftest.py`` has the fixtures and the summary)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from tests.faults.workspace import raw_digest, state

REPO = Path(__file__).resolve().parents[2]
#: what every ``reloop`` process of the campaign gets (PYTHONHASHSEED: as the Makefile exports)
ENV = {"PYTHONHASHSEED": "0", "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "false",
       "DO_NOT_TRACK": "1"}


# ------------------------------------------------------------------------ the workspace


@dataclass
class Workspace:
    """The workspace ``root`` (the working directory of every command), restored from
    ``snapshots / start``; ``case`` is a scratch directory outside it."""

    root: Path
    snapshots: Path
    start: str
    case: Path

    def snapshot(self, name: str) -> Path:
        return self.snapshots / name

    def state(self) -> dict[str, str]:
        return state(self.root)

    def raw(self) -> dict[str, tuple[str, int]]:
        return raw_digest(self.root)

    def expected(self, name: str) -> dict[str, str]:
        return _expected_state(self.snapshots, name)

    def production(self) -> bytes:
        pointer = self.root / "registry" / "production.json"
        return pointer.read_bytes() if pointer.exists() else b""


_STATES: dict[tuple[Path, str], dict[str, str]] = {}


def _expected_state(snapshots: Path, name: str) -> dict[str, str]:
    key = (snapshots, name)
    if key not in _STATES:
        _STATES[key] = state(snapshots / name)
    return _STATES[key]


# ------------------------------------------------------------------------ running reloop


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    def error(self) -> str:
        """The error the command reported: from its ``error:`` line to the end of stderr.

        Asserts exit status 2, no traceback, and exactly one ``error:`` line (a message may go
        on over indented lines, one per item: a parameter, a partition).
        """
        assert self.code == 2, f"exit {self.code}, expected 2:\n{self.stdout}\n{self.stderr}"
        assert "Traceback" not in self.stderr, self.stderr
        lines = self.stderr.splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith("error: ")]
        assert len(starts) == 1, f"expected one `error:` line:\n{self.stderr}"
        rest = lines[starts[0] + 1:]
        assert all(line.startswith("  ") or not line.strip() for line in rest), self.stderr
        return "\n".join(lines[starts[0]:])


def reloop(*args: str) -> Outcome:
    """``reloop ARGS`` in this process (typer's CliRunner), in the working directory."""
    from reloop.cli import app

    res = CliRunner().invoke(app, list(args))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(res.exception))
        return Outcome(1, res.stdout, res.stderr + tb)
    return Outcome(res.exit_code, res.stdout, res.stderr)


def reloop_bin() -> list[str]:
    script = Path(sys.executable).with_name("reloop")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "reloop.cli"]


def reloop_subprocess(*args: str, cwd: Path, timeout: float = 300) -> Outcome:
    """``reloop ARGS`` as a process of its own."""
    done = subprocess.run([*reloop_bin(), *args], cwd=cwd, env={**os.environ, **ENV},
                          capture_output=True, text=True, timeout=timeout)
    return Outcome(done.returncode, done.stdout, done.stderr)


def spawn(argv: list[str], cwd: Path) -> subprocess.Popen:
    """A process in a process group of its own (so the whole group can be killed)."""
    return subprocess.Popen(argv, cwd=cwd, env={**os.environ, **ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}) before {path} appeared:\n"
                                 f"{proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout}s"
        time.sleep(0.02)


def diff(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
