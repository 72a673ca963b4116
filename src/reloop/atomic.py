"""Atomic file writes: write beside the target under a temporary name, then rename.

A crash leaves either the old file or the new one, never half a file. Used for every derived
artifact of the data stages (joined tables, stats, validation and drift reports, quarantine
records). Raw log parts use :func:`reloop.data.logs.store.write_part`, which in addition never replaces
an existing file.
"""

from __future__ import annotations

import json
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
    "write_json",
    "write_parquet",
]


def json_ready(obj: Any) -> Any:
    """``obj`` with NaN/inf floats turned into ``None`` (strict JSON), recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    return obj


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON (NaN becomes null)."""
    text = json.dumps(json_ready(obj), indent=2, sort_keys=True, default=str) + "\n"
    return _atomic(Path(path), lambda p: p.write_text(text))


def write_bytes(path: str | Path, data: bytes) -> Path:
    return _atomic(Path(path), lambda p: p.write_bytes(data))


def write_parquet(path: str | Path, df: pl.DataFrame) -> Path:
    """Write ``df`` as zstd parquet with statistics."""
    return _atomic(Path(path), lambda p: df.write_parquet(p, compression="zstd", statistics=True))


def replace_dir(path: str | Path, build: Callable[[Path], None]) -> Path:
    """Build a directory with ``build(tmp_dir)`` and move it into place at ``path``.

    An existing directory at ``path`` is replaced (moved aside, then deleted) only once the new one
    is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        build(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def sweep_leftovers(path: str | Path) -> list[Path]:
    """Remove what killed writers of ``path`` left beside it; returns the removed paths.

    :func:`write_json` & co. and :func:`replace_dir` build ``path`` under a hidden sibling name,
    ``.<name>.*``, and move it into place; a writer killed before the move leaves that sibling
    behind. Call this only while no other writer of ``path`` can be running (a stage holds the
    workspace lock), before writing ``path`` again.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for stale in sorted(path.parent.glob(f".{path.name}.*")):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed
