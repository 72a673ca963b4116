"""Per-period versioning: every artefact of a period, committed to a git + DVC repository.

After a period's ``promote`` (and ``drift``), the ``archive`` stage copies what the period produced
into ``<archive.root>/periods/date=D/`` and versions it:

* ``logs/``: the raw impressions and feedback partitions of the period's days (the data that was
  validated; labels that arrived the next day are in ``joined/``, and in the next period's
  ``logs/``) and, for the built-in world, ``oracle/``;
* ``validation/``: the Great Expectations results and their HTML pages for those partitions;
* ``joined/``: the joined training table, its stats and its own validation report;
* ``drift/``: the Evidently report; ``model/``: the candidate checkpoint; ``memory/``: its
  ReLoop2 snapshot; ``evaluation.json``; ``decision.json``;
* ``registry/version.json``: the candidate's lineage (training period, parent, params, data
  hashes, evaluation, decision);
* ``manifest.json``: where each entry came from, with every file's sha256.

Then ``dvc add periods/date=D`` (the data go to the DVC cache, a small ``.dvc`` file to git), a git
commit, a tag ``period-D`` (``period-D.2``, ... when a rerun produced different artefacts; an
identical rerun commits nothing) and ``dvc push`` to the DVC remote.

**Which git repository.** The archive is its own repository (``archive.root``, default
``data/archive``), created on first use. Scheduled runs therefore never add commits to the code
repository; set ``archive.root`` to the code repository's root only if you want them there.

:func:`list_periods` lists what was archived; :func:`restore_period` restores a period's artefacts,
byte for byte, with ``dvc get`` (from the cache, or the remote when the cache is gone).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reloop.jsonio import read_json
from reloop.periods import date_part

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config import Params

__all__ = ["ArchiveError", "archive_period", "list_periods", "period_sources", "restore_period"]

log = logging.getLogger(__name__)

PERIODS = "periods"
MANIFEST = "manifest.json"
#: seconds after which git's index lock in the archive counts as left by a killed process
STALE_GIT_LOCK_S = 600.0
_TAG = re.compile(r"^period-(\d{4}-\d{2}-\d{2})(?:\.(\d+))?$")


class ArchiveError(RuntimeError):
    """A git or DVC command of the archive failed, or nothing is archived for a period."""


def _run(args: list[str], cwd: Path, *, check: bool = True, timeout: float | None = None,
         timeout_param: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ArchiveError(f"`{' '.join(args)}` in {cwd} was still running after {timeout:g} s "
                           f"({timeout_param}); it was stopped") from None
    if check and done.returncode != 0:
        said = [line for line in (done.stderr or done.stdout)[-2000:].splitlines() if line.strip()]
        raise ArchiveError(f"`{' '.join(args)}` failed in {cwd} (exit {done.returncode}):\n"
                           + "\n".join(f"  {line}" for line in said))
    return done


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run(["git", *args], root, check=check)


def _dvc(root: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "dvc", *args], root, **kwargs)


def _remote_url(params: Params) -> str:
    remote = params.archive.remote
    return remote if "://" in remote else str(Path(remote).resolve())


def ensure_repo(params: Params) -> Path:
    """Create the archive repository (git + DVC + default remote) if it does not exist."""
    root = Path(params.archive.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ".git").exists():
        _git(root, "init", "-q")
        if not _git(root, "config", "user.email", check=False).stdout.strip():
            _git(root, "config", "user.email", "reloop@localhost")
            _git(root, "config", "user.name", "reloop archive")
    if not (root / ".dvc").exists():
        _dvc(root, "init", "-q")
        _dvc(root, "config", "core.analytics", "false")
        # hard links: the archive's working copy and the DVC cache share their bytes
        _dvc(root, "config", "cache.type", "hardlink,copy")
        _git(root, "add", ".dvc", ".dvcignore")
        _git(root, "commit", "-q", "-m", "reloop archive: init")
    url = _remote_url(params)
    current = _run([sys.executable, "-m", "dvc", "remote", "list"], root).stdout.split()
    if url not in current:
        if "://" not in url:
            Path(url).mkdir(parents=True, exist_ok=True)
        _dvc(root, "remote", "add", "--force", "--default", "archive", url)
        _git(root, "add", ".dvc/config")
        _git(root, "commit", "-q", "-m", f"reloop archive: remote {url}")
    return root


def _clear_stale_locks(root: Path) -> None:
    """Locks a killed git/DVC process left behind. Only called under the workspace lock, so no
    live process of ours can own them; git's index lock is left alone while it is younger than
    :data:`STALE_GIT_LOCK_S` (someone else's git may hold it: ``archive.root`` may be a repository
    people work in)."""
    index_lock, rwlock = root / ".git" / "index.lock", root / ".dvc" / "tmp" / "rwlock"
    with contextlib.suppress(FileNotFoundError):
        if time.time() - index_lock.stat().st_mtime >= STALE_GIT_LOCK_S:
            log.warning("removing stale lock %s left by a killed run", index_lock)
            index_lock.unlink()
    if rwlock.exists():
        try:
            held = any(json.loads(rwlock.read_text() or "{}").values())
        except ValueError:
            held = True
        if held:  # DVC keeps the file; it is stale only while it still names holders
            log.warning("removing stale DVC lock %s left by a killed run", rwlock)
            rwlock.unlink()


def period_sources(params: Params, start: str | dt.date) -> dict[str, Path]:
    """``{name in the archive: path in the workspace}`` of the period's artefacts that exist.

    Only what the period itself produced: archiving it again later, after other periods ran,
    finds the same files.
    """
    from reloop.data.logs.store import partition_dir
    from reloop.periods import (
        as_date,
        candidate_dir,
        decision_path,
        drift_dir,
        evaluation_path,
        joined_dir,
        period_dates,
        snapshot_dir,
    )

    start = as_date(start)
    found: dict[str, Path] = {}
    for day in period_dates(start, params.logs.period_days):
        d = date_part(day)
        found[f"logs/impressions/{d}"] = partition_dir(params.logs.root, "impressions", day)
        found[f"logs/feedback/{d}"] = partition_dir(params.logs.root, "feedback", day)
        found[f"oracle/{d}"] = Path(params.logs.oracle_root) / "oracle" / d
        found[f"validation/{d}"] = Path(params.validate_.out_root) / d
    found |= {
        "joined": joined_dir(params, start),
        "drift": drift_dir(params, start),
        "model": candidate_dir(params, start),
        "memory": snapshot_dir(params, start),
        "evaluation.json": evaluation_path(params, start),
        "decision.json": decision_path(params, start),
    }
    decision = found["decision.json"]
    if decision.is_file():
        candidate = read_json(decision).get("candidate")
        if candidate:
            found["registry/version.json"] = (Path(params.pipeline.registry_root) / "versions"
                                              / candidate / "version.json")
    return {name: path for name, path in found.items() if path.exists()}


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def _copy_period(sources: dict[str, Path], start: dt.date, dest: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = {"period": start.isoformat(), "entries": {}}
    for name, src in sorted(sources.items()):
        files = {}
        for f in _files(src):
            rel = f.relative_to(src) if src.is_dir() else Path()
            target = dest / name / rel if src.is_dir() else dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
            files[str(rel) if src.is_dir() else ""] = _sha256(target)
        manifest["entries"][name] = {"source": str(src), "files": files}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _tags(root: Path) -> dict[str, list[str]]:
    """``{period: [tags, oldest first]}``."""
    out: dict[str, list[tuple[int, str]]] = {}
    for tag in _git(root, "tag", "--list", "period-*").stdout.split():
        m = _TAG.match(tag)
        if m:
            out.setdefault(m.group(1), []).append((int(m.group(2) or 1), tag))
    return {day: [t for _, t in sorted(tags)] for day, tags in out.items()}


def archive_period(params: Params, start: str | dt.date) -> dict[str, Any]:
    """Version the period's artefacts in the archive repository (see the module docstring).

    Idempotent: an identical rerun commits nothing and returns the existing tag. The workspace's
    artefacts are only read.
    """
    from reloop.atomic import replace_dir
    from reloop.periods import as_date

    start = as_date(start)
    if not params.archive.enabled:
        return {"archived": False, "reason": "archive.enabled is false"}
    sources = period_sources(params, start)
    if "decision.json" not in sources:
        raise ArchiveError(f"period {start} has no decision ({params.pipeline.decisions_root}); "
                           "run its stages through promote before archiving it")
    root = ensure_repo(params)
    _clear_stale_locks(root)
    name = date_part(start)
    target = root / PERIODS / name
    manifest: dict[str, Any] = {}
    replace_dir(target, lambda tmp: manifest.update(_copy_period(sources, start, tmp)))
    _dvc(root, "add", "-q", f"{PERIODS}/{name}")
    _git(root, "add", f"{PERIODS}/{name}.dvc", f"{PERIODS}/.gitignore")
    tags = _tags(root).get(start.isoformat(), [])
    changed = _git(root, "diff", "--cached", "--quiet", check=False).returncode != 0
    if changed or not tags:
        decision = read_json(sources["decision.json"])
        verdict = "promoted" if decision.get("promote") else "kept the incumbent"
        if changed:
            _git(root, "commit", "-q", "-m",
                 f"period {start}: candidate {decision.get('candidate')} {verdict}")
        tag = f"period-{start.isoformat()}" + (f".{len(tags) + 1}" if tags else "")
        _git(root, "tag", tag)
        tags.append(tag)
    commit = _git(root, "rev-parse", f"{tags[-1]}^{{commit}}").stdout.strip()  # the period's
    pushed = False
    if params.archive.push:
        _dvc(root, "push", "-q", f"{PERIODS}/{name}.dvc", timeout=params.archive.push_timeout_s,
             timeout_param="archive.push_timeout_s")
        pushed = True
    n_files = sum(len(e["files"]) for e in manifest["entries"].values())
    log.info("archived period %s: %d files, tag %s, commit %s%s", start, n_files, tags[-1],
             commit[:10], ", pushed" if pushed else "")
    return {"archived": True, "tag": tags[-1], "commit": commit, "changed": changed,
            "files": n_files, "pushed": pushed, "repo": str(root)}


def list_periods(params: Params) -> list[dict[str, Any]]:
    """Every archived version of every period, oldest first: tag, commit, date, message."""
    root = Path(params.archive.root)
    if not (root / ".git").exists():
        return []
    out = []
    for day, tags in sorted(_tags(root).items()):
        for tag in tags:
            fmt = "%H%x00%cI%x00%s"
            commit, when, subject = _git(root, "log", "-1", f"--format={fmt}", tag).stdout.strip(
                ).split("\x00")
            out.append({"period": day, "tag": tag, "commit": commit, "committed": when,
                        "message": subject, "latest": tag == tags[-1]})
    return out


def restore_period(params: Params, start: str | dt.date | None, out: str | Path, *,
                   rev: str | None = None) -> dict[str, Any]:
    """Restore a period's archived artefacts into ``out`` (which must not exist), exactly.

    ``rev`` picks an archived version (a tag from :func:`list_periods` or a commit); by default the
    period's latest. Uses ``dvc get``, which reads the archive's cache or, failing that, its
    remote. Every restored file is checked against the manifest's sha256.
    """
    from reloop.periods import as_date

    root = Path(params.archive.root).resolve()
    out = Path(out).resolve()
    if out.exists():
        raise FileExistsError(f"--out {out} already exists; restore into a new directory")
    if not (root / ".git").exists():
        raise ArchiveError(f"no archive repository at archive.root={params.archive.root!r}")
    tags = _tags(root)
    if rev is None:
        if start is None:
            raise ValueError("give the period (--date) or an archived revision (--rev)")
        day = as_date(start, "--date").isoformat()
        if day not in tags:
            raise ArchiveError(f"period {day} is not archived in {root}; "
                               f"archived: {sorted(tags) or 'none'}")
        rev = tags[day][-1]
    elif start is None:
        m = _TAG.match(rev)
        if not m:
            raise ValueError(f"--rev {rev!r} is not a period tag; also give --date")
        day = m.group(1)
    else:
        day = as_date(start, "--date").isoformat()
    try:
        _run([sys.executable, "-m", "dvc", "get", str(root), f"{PERIODS}/{date_part(day)}", "--rev",
              rev, "-o", str(out)], out.parent if out.parent.exists() else Path.cwd())
    except ArchiveError:  # e.g. neither the cache nor the remote holds the data
        shutil.rmtree(out, ignore_errors=True)  # `out` did not exist: leave no half restore
        raise
    manifest = read_json(out / MANIFEST)
    bad = []
    for name, entry in manifest["entries"].items():
        for rel, digest in entry["files"].items():
            path = out / name / rel if rel else out / name
            if not path.is_file() or _sha256(path) != digest:
                bad.append(str(path))
    if bad:
        raise ArchiveError(f"restored period {day} does not match its manifest: {bad[:5]}")
    n_files = sum(len(e["files"]) for e in manifest["entries"].values())
    return {"period": day, "rev": rev, "out": str(out), "files": n_files, "verified": True}
