"""Injected faults: SIGKILL in ingest, train, memory, promote and archive; two runs on one
workspace; a stale lock; a full disk; a read-only registry; a restore from the DVC remote alone.

After each: the raw logs are unchanged (sha256 and mtime), production is the old pointer or the
new one (never anything else), and a plain rerun reproduces the reference snapshot byte for byte.

The kills run the real command line in a process of its own (own process group), with a hook
(:data:`HOOK`) that SIGKILLs it at the chosen moment, as ``tests/pipeline/test_kill.py`` does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.workspace import leftovers, raw_digest
from tests.support.campaign import (
    Outcome,
    Workspace,
    diff,
    kill_group,
    reloop,
    reloop_bin,
    reloop_subprocess,
    spawn,
    wait_for,
)
from tests.support.params import DAY1, DAY2, DAY3

pytestmark = [pytest.mark.fault, pytest.mark.skipif(os.name != "posix", reason="POSIX only")]

#: ``python -c HOOK POINT READY GO ARGS...``: ``reloop ARGS``, SIGKILLed by itself at POINT (or,
#: for ``hold``, holding the workspace lock inside the train stage: READY is created once it
#: holds it, and it goes on once GO exists).
HOOK = r'''
import os, shutil, signal, sys, time
from pathlib import Path

point, ready, go, *args = sys.argv[1:]


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def hook(module, name, fires):
    real = getattr(module, name)

    def hooked(*a, **k):
        if fires(*a, **k):
            die()
        return real(*a, **k)

    setattr(module, name, hooked)


if point == "ingest":  # the day's feedback and oracle linked; its impressions part not yet
    hook(os, "link", lambda src, dst, *a, **k: "/impressions/" in str(dst))
elif point == "train":  # the old checkpoint moved aside, the new one complete, not in place
    hook(os, "replace", lambda src, dst, *a, **k: Path(dst).parent.name == "models"
         and Path(src).name.startswith("."))
elif point == "memory":  # the new snapshot written beside the old one, not renamed over it
    hook(os, "replace", lambda src, dst, *a, **k: str(dst).endswith("/memory.safetensors"))
elif point == "promote-copying":  # half-way through copying the candidate into the registry
    real_tree, real_copy = shutil.copytree, shutil.copy2
    copied = []

    def copy(src, dst, **kw):
        copied.append(src)
        if len(copied) == 2:
            die()
        return real_copy(src, dst, **kw)

    shutil.copytree = lambda src, dst, **kw: real_tree(src, dst, **{**kw, "copy_function": copy})
elif point == "promote-pointer":  # the new pointer written and fsynced, not renamed into place
    hook(os, "replace", lambda src, dst, *a, **k: str(dst).endswith("production.json"))
elif point == "promote-decision":  # production moved, the decision not yet written
    import reloop.atomic as atomic
    hook(atomic, "write_json", lambda path, obj: str(path).endswith("decision.json"))
elif point == "archive-commit":  # the period copied and `dvc add`ed, not yet committed
    import reloop.archive as archive
    hook(archive, "_run", lambda cmd, cwd, **k: cmd[:2] == ["git", "commit"])
elif point == "archive-push":  # committed and tagged, not yet pushed to the DVC remote
    import reloop.archive as archive
    hook(archive, "_run", lambda cmd, cwd, **k: "push" in cmd)
elif point == "hold":  # inside the train stage, holding the workspace lock, until GO exists
    import reloop.stages.train as stage
    real_train = stage.run

    def run_train(params, start):
        Path(ready).touch()
        while not Path(go).exists():
            time.sleep(0.05)
        return real_train(params, start)

    stage.run = run_train  # the runner looks up reloop.stages.train.run when the stage runs
else:
    sys.exit(f"unknown point {point!r}")

from reloop.cli import app

app(args, prog_name="reloop")
'''


def hooked(ws: Workspace, point: str, *args: str) -> subprocess.Popen:
    """``reloop ARGS`` in a process group of its own, with the HOOK at ``point``."""
    return spawn([sys.executable, "-c", HOOK, point, str(ws.case / "ready"),
                  str(ws.case / "go"), *args], cwd=ws.root)


def production_is(ws: Workspace, *allowed: str) -> None:
    """production.json parses, names a listed version, and is one of the ``allowed`` snapshots'."""
    pointer = json.loads((ws.root / "registry" / "production.json").read_text())
    assert (ws.root / "registry" / "versions" / pointer["current"] / "version.json").is_file()
    options = [(ws.snapshot(s) / "registry" / "production.json").read_bytes() for s in allowed]
    assert ws.production() in options, f"production.json is none of {allowed}"


def rerun_converges(ws: Workspace, record, expect: str, *commands: tuple[str, ...]) -> None:
    """Run ``commands`` (in this process) and compare the workspace with snapshot ``expect``."""
    for command in commands:
        again = reloop(*command)
        assert again.code == 0, f"reloop {' '.join(command)}: {again.stderr}"
    assert diff(ws.expected(expect), ws.state()) == []
    now, kept = ws.raw(), raw_digest(ws.snapshot(ws.start))
    assert {p: now.get(p) for p in kept} == kept  # every raw file that existed: untouched
    reference = raw_digest(ws.snapshot(expect))
    assert {p: v[0] for p, v in now.items()} == {p: v[0] for p, v in reference.items()}
    production_is(ws, expect)
    record.leftovers = leftovers(ws.root)
    # the next writer sweeps what a killed one left: the raw logs and the registry, a
    # checkpoint and a memory snapshot (their stages hold the workspace lock)
    assert record.leftovers == []
    record.converged = True


# ---------------------------------------------------------------------------- SIGKILL


def _no_impressions_part(ws: Workspace) -> None:
    from reloop.data.logs.store import MissingPartitionError, part_files

    with pytest.raises(MissingPartitionError, match="holds no part-"):
        part_files(ws.root / "logs", "impressions", DAY3)
    assert list((ws.root / "logs" / ".tmp").iterdir())  # the kill landed before the link
    inside = [p for p in (ws.root / "logs").glob("*/date=*/*") if not re.fullmatch(
        r"part-[\w.-]+\.parquet", p.name)]
    assert inside == []  # nothing but part files inside a partition


def _candidate_moved_aside(ws: Workspace) -> None:
    assert not (ws.root / "models" / f"date={DAY2}").exists()
    assert list((ws.root / "models").glob(f".date={DAY2}.old.*/date={DAY2}/model.safetensors"))


def _old_snapshot_in_place(ws: Workspace) -> None:
    rel = f"memory/date={DAY2}/memory.safetensors"
    assert (ws.root / rel).read_bytes() == (ws.snapshot(ws.start) / rel).read_bytes()


def _not_registered(ws: Workspace) -> None:
    versions = ws.root / "registry" / "versions"
    assert sorted(p.name for p in versions.iterdir() if not p.name.startswith(".")) == sorted(
        p.name for p in (ws.snapshot("day2-evaluated") / "registry" / "versions").iterdir())


def _decision_missing(ws: Workspace) -> None:
    assert not (ws.root / "decisions" / f"date={DAY2}").exists()


def _not_committed(ws: Workspace) -> None:
    from tests.faults.workspace import archive_state

    assert archive_state(ws.root) == archive_state(ws.snapshot("day2-promoted"))


def _not_pushed(ws: Workspace) -> None:
    from tests.faults.workspace import archive_state

    assert f"period-{DAY2}" in archive_state(ws.root)["archive:tags"].split()


@dataclass(frozen=True)
class Kill:
    name: str
    point: str
    args: tuple[str, ...]
    start: str
    expect: str
    rerun: tuple[tuple[str, ...], ...]
    check: Callable[[Workspace], None]
    production: tuple[str, ...]  # snapshots whose pointer production may hold after the kill


STAGE2 = ("--date", DAY2)


def stage(name: str, day: str = DAY2) -> tuple[str, ...]:
    return ("stage", name, "--date", day)


KILLS = [  # name, hook point, command, start, expected after the rerun, rerun, check, production
    Kill("kill-ingest", "ingest", stage("ingest", DAY3), "day3-pending", "clean",
         (stage("ingest", DAY3),), _no_impressions_part, ("day3-pending",)),
    Kill("kill-train", "train", stage("train"), "clean", "clean", (stage("train"),),
         _candidate_moved_aside, ("clean",)),
    Kill("kill-memory", "memory", stage("memory"), "day2-evaluated", "day2-promoted",
         (stage("memory"), stage("promote")), _old_snapshot_in_place, ("day2-evaluated",)),
    *(Kill(f"kill-{point}", point, stage("promote"), "day2-evaluated", "day2-promoted",
           (stage("promote"),), check, (moved,))
      for point, check, moved in (
          ("promote-copying", _not_registered, "day2-evaluated"),
          ("promote-pointer", _decision_missing, "day2-evaluated"),
          ("promote-decision", _decision_missing, "day2-promoted"))),
    *(Kill(f"kill-{point}", point, stage("archive"), "day2-promoted", "day2-archived",
           (stage("archive"),), check, ("day2-promoted",))
      for point, check in (("archive-commit", _not_committed), ("archive-push", _not_pushed))),
]


@pytest.mark.slow
@pytest.mark.parametrize("kill", [pytest.param(k, id=k.name, marks=pytest.mark.start(k.start))
                                  for k in KILLS])
def test_sigkill(kill: Kill, ws: Workspace, record):
    raw = ws.raw()
    proc = hooked(ws, kill.point, *kill.args)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    kill.check(ws)  # the kill landed at its moment
    record.handled = True
    assert {p: ws.raw().get(p) for p in raw} == raw  # nothing that existed changed
    record.nothing_lost = True
    production_is(ws, *kill.production)
    record.production = True
    rerun_converges(ws, record, kill.expect, *kill.rerun)
    if kill.point == "archive-push":  # the rerun pushed what the kill did not
        _restore_from_remote_alone(ws, DAY2)


# ---------------------------------------------------------------------------- the workspace lock


def _params_with(ws: Workspace, name: str, old: str, new: str) -> Path:
    text = (ws.root / "params.yaml").read_text()
    assert old in text
    path = ws.case / name
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.slow
def test_two_runs_on_one_workspace(ws: Workspace, record):
    """A second run waits for the lock, then fails naming the holder; a patient one proceeds."""
    quick = _params_with(ws, "quick.yaml", "lock_timeout_s: 3600.0", "lock_timeout_s: 1.0")
    raw, production = ws.raw(), ws.production()
    first = hooked(ws, "hold", "stage", "train", *STAGE2)
    patient = None
    try:
        wait_for(ws.case / "ready", first)
        busy = reloop_subprocess("stage", "promote", *STAGE2, "--params", str(quick),
                                 cwd=ws.root)
        error = busy.error()
        assert re.search(rf"the workspace is busy: lock reloop\.lock is held by \{{'pid': "
                         rf"{first.pid}, .*'what': 'stage train, period {DAY2}'.*waited "
                         r"pipeline\.lock_timeout_s=1s", error), error
        record.handled = True
        assert ws.raw() == raw and diff(ws.expected("clean"), ws.state()) == []
        record.nothing_lost = True
        patient = spawn([*reloop_bin(), "-v", "stage", "promote", *STAGE2], cwd=ws.root)
        for line in patient.stderr:  # -v: filelock says when it waits
            if "not acquired on reloop.lock" in line:
                break
        else:
            raise AssertionError(f"the second run never waited for the lock ({patient.wait()})")
        (ws.case / "go").touch()
        _, err = first.communicate(timeout=600)
        assert first.returncode == 0, err[-3000:]
        _, err = patient.communicate(timeout=600)
        assert patient.returncode == 0, err[-3000:]
    finally:
        for proc in (first, patient):
            if proc is not None and proc.poll() is None:
                kill_group(proc)
    assert ws.production() == production
    record.production = True
    rerun_converges(ws, record, "clean", stage("promote"))


@pytest.mark.slow
def test_a_stale_lock_from_a_killed_run(ws: Workspace, record):
    """A run SIGKILLed while it holds the lock leaves the lock file; the next run starts at once."""
    quick = _params_with(ws, "quick.yaml", "lock_timeout_s: 3600.0", "lock_timeout_s: 1.0")
    raw, production = ws.raw(), ws.production()
    holder = hooked(ws, "hold", "stage", "train", *STAGE2)
    wait_for(ws.case / "ready", holder)
    kill_group(holder)
    owner = json.loads((ws.root / "reloop.lock.owner").read_text())
    assert owner["pid"] == holder.pid and (ws.root / "reloop.lock").exists()  # left behind
    t0 = time.monotonic()
    out = reloop_subprocess("stage", "promote", *STAGE2, "--params", str(quick), cwd=ws.root)
    assert out.code == 0, out.stderr
    assert time.monotonic() - t0 < 120
    record.handled = True
    assert ws.raw() == raw
    record.nothing_lost = True
    assert ws.production() == production
    record.production = True
    rerun_converges(ws, record, "clean", stage("train"))


# ---------------------------------------------------------------------------- disk full, read-only


def _mount_or_skip(record, *args: str) -> None:
    if os.geteuid() != 0:
        record.skipped = "needs root to mount a file system (tmpfs or read-only bind mount)"
        pytest.skip(record.skipped)
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        record.skipped = (f"`mount {' '.join(args)}` is not permitted here: "
                          f"{done.stderr.strip() or done.returncode}")
        pytest.skip(record.skipped)


def _remount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _on_small_tmpfs(ws: Workspace, record, rel: str, slack: int) -> Path:
    """Move ``rel`` onto a tmpfs with ``slack`` bytes free (its files keep their mtimes)."""
    target = ws.root / rel
    keep = ws.case / "keep"
    shutil.copytree(target, keep, symlinks=True)
    _mount_or_skip(record, "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(target))
    shutil.copytree(keep, target, symlinks=True, dirs_exist_ok=True)
    st = os.statvfs(target)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    _remount("-o", f"remount,size={used + slack}", str(target))
    return target


@pytest.mark.slow
@pytest.mark.start("day2-evaluated")
def test_disk_full_during_promote(ws: Workspace, record):
    """The registry's disk fills while the candidate is copied in: a clear error, production and
    the registry as they were; once space is freed, the rerun promotes."""
    raw, production = ws.raw(), ws.production()
    registry = _on_small_tmpfs(ws, record, "registry", slack=256 * 1024)
    before = ws.state()
    error = reloop_subprocess("stage", "promote", *STAGE2, cwd=ws.root).error()
    assert re.search(r"^error: .*registry/versions/\.[0-9a-f]{16}\..*: no space left on device: "
                     r"free space on its file system, then rerun", error), error
    record.handled = True
    assert ws.raw() == raw and diff(before, ws.state()) == []
    assert not [p for p in (registry / "versions").iterdir() if p.name.startswith(".")]
    record.nothing_lost = True
    assert ws.production() == production
    record.production = True
    _remount("-o", "remount,size=64m", str(registry))
    rerun_converges(ws, record, "day2-promoted", stage("promote"))


@pytest.mark.slow
@pytest.mark.start("day3-pending")
def test_disk_full_during_ingest(ws: Workspace, record):
    """The raw logs' disk fills during a day's ingest: a clear error, nothing that existed
    changed, the day unreadable (no half day), and the rerun completes it."""
    from reloop.data.logs.store import MissingPartitionError, part_files

    raw, production = ws.raw(), ws.production()
    logs = _on_small_tmpfs(ws, record, "logs", slack=16 * 1024)
    assert ws.raw() == raw  # moved with mtimes
    error = reloop_subprocess("stage", "ingest", "--date", DAY3, cwd=ws.root).error()
    assert re.search(r"^error: .*logs/.*: no space left on device: free space on its file "
                     r"system, then rerun", error), error
    record.handled = True
    assert {p: ws.raw().get(p) for p in raw} == raw
    with pytest.raises(MissingPartitionError):
        part_files(logs, "impressions", DAY3)
    record.nothing_lost = True
    assert ws.production() == production
    record.production = True
    _remount("-o", "remount,size=64m", str(logs))
    rerun_converges(ws, record, "clean", ("stage", "ingest", "--date", DAY3))


@pytest.mark.slow
@pytest.mark.start("day2-evaluated")
def test_read_only_registry(ws: Workspace, record):
    """Promote and rollback on a read-only registry: clear errors, nothing moved; writable
    again, the rerun promotes."""
    raw, production = ws.raw(), ws.production()
    registry = ws.root / "registry"
    _mount_or_skip(record, "--bind", str(registry), str(registry))
    _remount("-o", "remount,bind,ro", str(registry))
    before = ws.state()
    error = reloop_subprocess("stage", "promote", *STAGE2, cwd=ws.root).error()
    assert re.search(r"^error: .*registry/.*: read-only file system: make it writable",
                     error), error
    first = json.loads(production)["history"][0]["model_id"]
    error = reloop_subprocess("registry", "rollback", "--to", first, cwd=ws.root).error()
    assert re.search(r"^error: .*registry/.*: read-only file system", error), error
    record.handled = True
    assert ws.raw() == raw and diff(before, ws.state()) == []
    record.nothing_lost = True
    assert ws.production() == production
    record.production = True
    subprocess.run(["umount", str(registry)], check=True, capture_output=True)
    rerun_converges(ws, record, "day2-promoted", stage("promote"))


# ---------------------------------------------------------------------------- the archive


def _period_files(ws: Workspace, day: str) -> dict[str, str]:
    """``{archive name: sha256}`` of the period's artefacts in the workspace."""
    import hashlib

    from reloop.archive import period_sources
    from reloop.config import load_params

    out = {}
    for name, src in period_sources(load_params(ws.root / "params.yaml"), day).items():
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file()
                                                   and not p.name.startswith("."))
        for f in files:
            key = name if src.is_file() else f"{name}/{f.relative_to(src)}"
            out[key] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _restore_from_remote_alone(ws: Workspace, day: str, out: Path | None = None) -> Outcome:
    import hashlib

    shutil.rmtree(ws.root / "archive" / ".dvc" / "cache", ignore_errors=True)
    out = out or ws.case / f"restored-{day}"
    res = reloop("periods", "restore", "--date", day, "--out", str(out))
    assert res.code == 0, res.stderr
    assert json.loads(res.stdout)["verified"] is True
    restored = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(out.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    assert restored == _period_files(ws, day)
    return res


@pytest.mark.slow
def test_restore_from_the_remote_alone(ws: Workspace, record):
    """The archive's DVC cache is lost: each period restores from the remote, byte for byte."""
    raw, production = ws.raw(), ws.production()
    for day in (DAY1, DAY2):
        _restore_from_remote_alone(ws, day)
    record.handled = True
    assert ws.raw() == raw
    record.nothing_lost = True
    assert ws.production() == production
    record.production = True
    record.converged = True  # the restored files are the period's artefacts, byte for byte


@pytest.mark.slow
def test_restore_with_the_cache_and_the_remote_lost(ws: Workspace, record):
    """Nothing left to restore from: a clear error and no half-restored directory; with the
    remote back, the restore completes."""
    remote = ws.root / "archive-remote"
    shutil.move(remote, ws.case / "remote-away")
    shutil.rmtree(ws.root / "archive" / ".dvc" / "cache")
    raw, production = ws.raw(), ws.production()
    out = ws.case / "restored"
    error = reloop("periods", "restore", "--date", DAY2, "--out", str(out)).error()
    assert re.search(r"^error: `.*dvc get .*periods/date=2026-01-06 .*` failed in .*\(exit \d+\):"
                     r"\n  ERROR: .*(No storage files available|No such file or directory)",
                     error), error
    record.handled = True
    assert not out.exists() and ws.raw() == raw
    record.nothing_lost = True
    assert ws.production() == production
    record.production = True
    shutil.move(ws.case / "remote-away", remote)
    _restore_from_remote_alone(ws, DAY2, out)  # the same command: its --out was left free
    record.converged = True


# ---------------------------------------------------------------------------- determinism


@pytest.mark.slow
def test_a_rerun_in_a_process_with_another_hash_seed(ws: Workspace, record):
    raw, production = ws.raw(), ws.production()
    env = {**os.environ, "PYTHONHASHSEED": "1"}
    done = subprocess.run([*reloop_bin(), "stage", "drift", *STAGE2], cwd=ws.root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record.handled = True
    assert ws.raw() == raw
    record.nothing_lost = True
    assert ws.production() == production
    record.production = True
    assert diff(ws.expected("clean"), ws.state()) == []
    record.converged = True
