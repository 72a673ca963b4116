"""Digests of files and directory trees, and ``git`` in a directory."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from tests.support.params import ARTEFACT_ROOTS


def sha(path: Path) -> str:
    """The sha256 of a file's bytes, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """``{relative path: (sha256, mtime_ns)}`` of every file under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = (sha(p), p.stat().st_mtime_ns)
    return out


def period_digest(root: Path, day: str) -> dict[str, str]:
    """``{relative path: sha256}`` of the artefacts :func:`tests.support.params.loop_params`
    puts under ``root`` for the period ``day``."""
    out = {}
    for name in ARTEFACT_ROOTS:
        for p in sorted((root / name / f"date={day}").rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = sha(p)
    return out


def git(root: Path, *args: str) -> str:
    """``git ARGS`` in ``root``; its stdout, stripped (a failure raises)."""
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          check=True).stdout.strip()
