"""Atomic file writes: write beside the target under a temporary name, then rename.

A crash leaves either the old file or the new one, never half a file. Writers move a temporary
file or directory into place through this module only: derived artifacts of the data stages,
checkpoints, registry versions and pointer, downloads, Airflow's config. Durability: the
temporary file is fsynced before the rename (a directory published by :func:`replace_dir`: every
file and directory in it), and the parent directory is fsynced after it, so once a function
returns the new content survives a power loss.
Raw log parts use :func:`write_new` (through :func:`reloop.data.logs.store.write_part`), which
links into place and so never replaces an existing file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

__all__ = [
    "json_ready",
    "replace_dir",
    "sweep_leftovers",
    "write_bytes",
    "write_file",
    "write_json",
    "write_new",
    "write_parquet",
    "write_text",
]

log = logging.getLogger(__name__)

#: the infix of the hidden sibling :func:`replace_dir` moves the old directory into
_ASIDE = ".old."


def json_ready(obj: Any) -> Any:
    """``obj`` with NaN/inf floats turned into ``None`` (strict JSON), recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    return obj


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file or a directory) to stable storage."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (``root`` included), deepest first."""
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            if not os.path.islink(os.path.join(dirpath, name)):
                _fsync(Path(dirpath, name))
        _fsync(Path(dirpath))


def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it, a race for the
    server's threads): Linux reports it in ``/proc/self/status``; elsewhere the usual 022."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _file_mode() -> int:
    """What ``open()`` would give a new file: 0666 less the umask (``mkstemp`` gives 0600)."""
    return 0o666 & ~_umask()


def write_file(path: str | Path, write: Callable[[Path], None], *, mode: int | None = None
               ) -> Path:
    """Create or replace ``path`` with what ``write(tmp)`` writes to a temporary file beside it.

    The temporary file (``.<name>.<random>.tmp``, what :func:`sweep_leftovers` removes) is
    fsynced, renamed over ``path`` and the directory fsynced. If ``write`` raises, ``path`` is
    untouched and the temporary file removed. ``mode`` sets the file's permissions before it is
    moved into place (default: a plain new file's, 0666 less the umask, not
    :func:`tempfile.mkstemp`'s private 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode() if mode is None else mode)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)
    return path


def write_new(path: str | Path, write: Callable[[Path], None], *, tmp_dir: str | Path,
              prefix: str | None = None) -> Path:
    """Create ``path``, which must not exist, with what ``write(tmp)`` writes; never replaces.

    The temporary file is written in ``tmp_dir`` (same file system as ``path``) as
    ``<prefix><random>.tmp`` (``prefix`` defaults to ``.<name>.``), fsynced and hard-linked to
    ``path``, then the directory is fsynced; the temporary file is always removed. Raises
    :class:`FileExistsError` when ``path`` exists (whatever its content): of two writers, exactly
    one wins.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tmp_dir)
    fd, name = tempfile.mkstemp(prefix=prefix or f".{path.name}.", suffix=".tmp", dir=tmp_dir)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())  # a plain new file's permissions, not mkstemp's 0600
        _fsync(tmp)
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(path.parent)
    return path


def write_text(path: str | Path, text: str, *, mode: int | None = None) -> Path:
    """Write ``text`` as it is (the locale's encoding, as :meth:`Path.read_text` reads it);
    ``mode`` as in :func:`write_file`."""
    return write_file(path, lambda p: p.write_text(text), mode=mode)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON (NaN becomes null)."""
    text = json.dumps(json_ready(obj), indent=2, sort_keys=True, default=str) + "\n"
    return write_file(path, lambda p: p.write_text(text))


def write_bytes(path: str | Path, data: bytes) -> Path:
    return write_file(path, lambda p: p.write_bytes(data))


def write_parquet(path: str | Path, df: pl.DataFrame) -> Path:
    """Write ``df`` as zstd parquet with statistics."""
    return write_file(path, lambda p: df.write_parquet(p, compression="zstd", statistics=True))


def replace_dir(path: str | Path, build: Callable[[Path], None]) -> Path:
    """Build a directory with ``build(tmp_dir)`` and move it into place at ``path``.

    An existing directory at ``path`` is replaced (moved aside, then deleted) only once the new one
    is complete. Every file and directory of the new one is fsynced before it is moved into place,
    and the parent directory after. Between the two moves neither is at ``path``: an error there
    moves the old one back, and after a kill :func:`sweep_leftovers` does.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    aside = None
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # a plain new directory's, not mkdtemp's 0700
        build(tmp)
        _fsync_tree(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}{_ASIDE}", dir=path.parent))
            os.replace(path, old / path.name)
            aside = old / path.name
            os.replace(tmp, path)
            aside = None
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if aside is not None and not path.exists():
            os.replace(aside, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(path.parent)
    return path


def sweep_leftovers(path: str | Path) -> list[Path]:
    """Remove what killed writers of ``path`` left beside it; returns the removed paths.

    :func:`write_json` & co. and :func:`replace_dir` build ``path`` under a hidden sibling name,
    ``.<name>.*``, and move it into place; a writer killed before the move leaves that sibling
    behind. A :func:`replace_dir` killed between its two moves left the old directory aside and
    nothing at ``path``: it is moved back first. Call this only while no other writer of ``path``
    can be running (a stage holds the workspace lock), before writing ``path`` again.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    if not path.exists():
        for old in sorted(path.parent.glob(f".{path.name}{_ASIDE}*/{path.name}")):
            os.replace(old, path)
            log.warning("%s: restored the version a killed writer had moved aside", path)
            break
    removed = []
    for stale in sorted(path.parent.glob(f".{path.name}.*")):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed
