"""The fault campaign's workspace: built once per session, restored before every case, digested.

**Layout.** One workspace ``W`` at a fixed path for the whole session, its ``params.yaml`` with
paths relative to ``W`` (every command runs with ``W`` as its working directory, as a user runs
``reloop`` in a project). :func:`build` (run by ``python -m tests.faults.workspace build W SNAPS``,
in a process of its own with ``PYTHONHASHSEED=0`` like the Makefile) makes it:

* periods ``DAY1`` and ``DAY2`` of the tiny built-in world, every stage, the archive on and a gate
  every candidate passes, so each period moves production
  (:func:`tests.support.params.workspace_params`); ``DAY3`` ingested;
* ``cli-models/day1``: ``reloop train`` on ``DAY1``'s joined table;
* a converted MovieLens-100K replay (4 ratings over 2 days) and its first day ingested into
  ``replay-logs/`` with ``replay.yaml``.

Copies of ``W`` at chosen moments are kept in ``SNAPS``: ``day2-evaluated`` (before ``DAY2``'s
promote), ``day2-promoted`` (before its archive), ``day2-archived``, ``day3-pending`` (all but
``DAY3``'s ingest) and ``clean`` (the end). A case restores one of them into ``W``
(:func:`restore`: a copy that keeps every file's mtime), so absolute paths recorded inside the
workspace (the archive's DVC remote) stay valid, and a snapshot taken later is the clean
reference a rerun must reproduce.

**Digests.** :func:`state` is every file's sha256 (lock-owner sidecars and git/DVC internals of
the archive excepted, its commit count, tags and tree added instead); :func:`raw_digest` is every
raw log file's sha256 and mtime.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.params import (
    DAY1,
    DAY2,
    DAY3,
    workspace_params,
    workspace_replay_params,
    write_params,
)
from tests.support.tables import write_ml100k

__all__ = [
    "RAW_ROOTS", "REPLAY_DAY", "SNAPSHOTS", "archive_state", "build", "leftovers", "raw_digest",
    "restore", "state", "unmount_under",
]

#: the snapshots :func:`build` keeps, in the order it takes them
SNAPSHOTS = ("day2-evaluated", "day2-promoted", "day2-archived", "day3-pending", "clean")
#: raw logs: append-only, never changed by any command once written
RAW_ROOTS = ("logs", "oracle", "replay-logs")
REPLAY_DAY = "1997-09-20"

#: paths :func:`state` leaves out: who held the lock last, and git/DVC internals of the archive
#: (its commits, tags and tree are digested instead)
_VOLATILE = ("reloop.lock.owner",)
_VOLATILE_DIRS = ("archive/.git/", "archive/.dvc/")
#: a temporary file or directory a writer leaves beside (or inside) what it writes: dot-named
#: (git/DVC internals, lock files and the raw logs' ``.tmp/`` directory itself excepted), or a
#: file in the raw logs' ``.tmp/``
_TEMP = re.compile(
    r"(^|/)(\.(?!git/|dvc/|dvcignore$|gitignore$|lock$|tmp$|tmp/)[^/]+|\.tmp/[^/]+)")


def build(ws: Path, snaps: Path) -> None:
    """Build the workspace at ``ws`` and its snapshots under ``snaps`` (module docstring)."""
    from typer.testing import CliRunner

    from reloop.cli import app
    from reloop.stages import STAGES, run_stage

    ws.mkdir(parents=True)
    snaps.mkdir(parents=True, exist_ok=True)
    os.chdir(ws)
    params = workspace_params()
    write_params(params, Path("params.yaml"))
    write_params(workspace_replay_params(), Path("replay.yaml"))

    def cli(*args: str) -> None:
        res = CliRunner().invoke(app, list(args))
        if res.exit_code != 0:
            raise RuntimeError(f"reloop {' '.join(args)} failed: {res.output}")

    def snapshot(name: str) -> None:
        shutil.copytree(ws, snaps / name, symlinks=True)

    for stage in STAGES:
        run_stage(stage, params, DAY1)
    for stage in ("ingest", "validate", "join", "drift", "train", "memory", "evaluate"):
        run_stage(stage, params, DAY2)
    snapshot("day2-evaluated")
    run_stage("promote", params, DAY2)
    snapshot("day2-promoted")
    run_stage("archive", params, DAY2)
    snapshot("day2-archived")
    cli("train", "--data", f"joined/date={DAY1}/train.parquet", "--out", "cli-models/day1")
    source = write_ml100k(Path("raw/ml-100k"))  # 4 ratings over 1997-09-20 and 21
    cli("replay", "convert", "movielens-100k", "--source", str(source), "--params", "replay.yaml")
    cli("ingest", "--date", REPLAY_DAY, "--params", "replay.yaml")
    snapshot("day3-pending")
    run_stage("ingest", params, DAY3)
    snapshot("clean")


def unmount_under(path: Path) -> None:
    """Unmount whatever a failed case left mounted under ``path`` (a tmpfs, a bind mount)."""
    prefix = str(path.resolve()) + "/"
    try:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return
    for target in sorted((m for m in mounts if (m + "/").startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


def restore(snapshot: Path, ws: Path) -> None:
    """Make ``ws`` an exact copy of ``snapshot``: contents, modes and mtimes.

    Only what differs is copied: a file whose size and mtime match the snapshot's is the
    snapshot's (every copy keeps the mtime, and any write sets a new one).
    """
    if not ws.exists():
        shutil.copytree(snapshot, ws, symlinks=True)
        return
    unmount_under(ws)
    for p in [ws, *ws.rglob("*")]:  # a case may have left a directory read-only
        if p.is_dir() and not p.is_symlink() and not p.stat().st_mode & 0o200:
            p.chmod(p.stat().st_mode | 0o700)
    for p in sorted(ws.rglob("*"), reverse=True):  # children before their directory
        src = snapshot / p.relative_to(ws)
        if src.is_symlink() or p.is_symlink() or src.is_dir() != p.is_dir() or not (
                src.exists()):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    for src in sorted(snapshot.rglob("*")):
        dst = ws / src.relative_to(snapshot)
        if src.is_symlink():
            if not dst.is_symlink():
                dst.symlink_to(os.readlink(src))
        elif src.is_dir():
            dst.mkdir(exist_ok=True)
        else:
            s, d = src.stat(), dst.stat() if dst.exists() else None
            if d is None or (s.st_size, s.st_mtime_ns, s.st_mode) != (
                    d.st_size, d.st_mtime_ns, d.st_mode):
                shutil.copy2(src, dst)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: ``(relative path, size, mtime_ns) -> sha256``: a restored file keeps its snapshot's size and
#: mtime, and any write gives it a new mtime, so each version of a file is hashed once
_HASHED: dict[tuple[str, int, int], str] = {}


def _sha_once(path: Path, rel: str) -> str:
    st = path.stat()
    key = (rel, st.st_size, st.st_mtime_ns)
    if key not in _HASHED:
        _HASHED[key] = _sha(path)
    return _HASHED[key]


def _git(ws: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ws / "archive", capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else f"<git {args[0]} failed>"


def archive_state(ws: Path) -> dict[str, str]:
    """The archive repository: commit count, tags and the tree of its HEAD."""
    if not (ws / "archive" / ".git").exists():
        return {}
    return {"archive:commits": _git(ws, "rev-list", "--count", "HEAD"),
            "archive:tags": " ".join(sorted(_git(ws, "tag", "--list").split())),
            "archive:tree": _git(ws, "rev-parse", "HEAD^{tree}")}


def _internal(rel: str) -> bool:
    return rel in _VOLATILE or (rel + "/").startswith(_VOLATILE_DIRS)


def state(ws: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of the workspace (see the module docstring); temporary
    files are left out (:func:`leftovers` lists them)."""
    out = {}
    for p in sorted(ws.rglob("*")):
        rel = p.relative_to(ws).as_posix()
        if p.is_file() and not _internal(rel) and not _TEMP.search(rel):
            out[rel] = _sha_once(p, rel)
    return out | archive_state(ws)


def leftovers(ws: Path) -> list[str]:
    """Temporary files and directories anywhere in the workspace (a killed writer's, unswept)."""
    out = set()
    for p in ws.rglob("*"):
        rel = p.relative_to(ws).as_posix()
        m = None if _internal(rel) else _TEMP.search(rel)
        if m:
            out.add(rel[: m.end()])
    return sorted(out)


def raw_digest(ws: Path) -> dict[str, tuple[str, int]]:
    """``{relative path: (sha256, mtime_ns)}`` of every file under the raw log roots."""
    out = {}
    for root in RAW_ROOTS:
        for p in sorted((ws / root).rglob("*")):
            if p.is_file():
                out[p.relative_to(ws).as_posix()] = (_sha(p), p.stat().st_mtime_ns)
    return out


if __name__ == "__main__":  # python -m tests.faults.workspace build WS SNAPS
    if len(sys.argv) != 4 or sys.argv[1] != "build":
        sys.exit("usage: python -m tests.faults.workspace build WS SNAPS")
    build(Path(sys.argv[2]).resolve(), Path(sys.argv[3]).resolve())
