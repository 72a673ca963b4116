"""Model registry: a production pointer plus a history of versions with their lineage.

Layout under the registry root::

    versions/<model_id>/model/           the checkpoint (safetensors + JSON)
    versions/<model_id>/memory/          the ReLoop2 error-memory snapshot built for it (optional)
    versions/<model_id>/version.json     lineage: training period, parent, params, data hashes,
                                         evaluation
    production.json                      {"current": <model_id> | null, "history": [events]}

Registering copies the artefacts into a temporary directory beside ``versions/`` and renames it
into place, so a version directory is either complete or absent; registering the same model_id
again is a no-op (reruns are safe). Promotion and rollback rewrite ``production.json`` through a
temporary file and :func:`os.replace`, which is atomic on POSIX: a crash at any moment leaves the
old pointer or the new one, never a broken state. The history lives inside the pointer file for
the same reason. Callers serialise writers with :meth:`Registry.lock` (an OS-level file lock,
released by the kernel if the process dies, so a killed run leaves no stale lock).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

__all__ = ["Registry", "RegistryError", "VersionRecord"]

log = logging.getLogger(__name__)

POINTER = "production.json"
VERSIONS = "versions"
RECORD = "version.json"


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (unknown version, busy, inconsistent)."""


@dataclass(frozen=True)
class VersionRecord:
    """One registered model version."""

    model_id: str
    path: Path
    lineage: dict[str, Any]

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "model"

    @property
    def memory_dir(self) -> Path | None:
        mem = self.path / "memory"
        return mem if mem.exists() else None

    def as_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "path": str(self.path), **self.lineage}


def _atomic_write_json(path: Path, payload: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Registry:
    """The model registry rooted at ``root`` (created on first write, not on construction)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ---- locking -----------------------------------------------------------------------------

    @contextmanager
    def lock(self, timeout: float = 600.0) -> Iterator[None]:
        """Hold the registry's write lock; a second writer waits up to ``timeout`` seconds."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / ".lock"))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise RegistryError(
                f"registry {self.root} is locked by another run; waited {timeout:.0f}s"
            ) from None
        try:
            yield
        finally:
            lock.release()

    # ---- reading -----------------------------------------------------------------------------

    def _pointer(self) -> dict[str, Any]:
        path = self.root / POINTER
        if not path.exists():
            return {"current": None, "history": []}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise RegistryError(f"{path} is not valid JSON: {err}") from None

    def get(self, model_id: str) -> VersionRecord:
        path = self.root / VERSIONS / model_id
        record = path / RECORD
        if not record.is_file():
            known = [v.model_id for v in self.versions()]
            raise RegistryError(f"version {model_id!r} is not in the registry; known: {known}")
        return VersionRecord(model_id, path, json.loads(record.read_text()))

    def versions(self) -> list[VersionRecord]:
        """Every registered version, oldest training period first."""
        base = self.root / VERSIONS
        if not base.is_dir():
            return []
        out = [
            VersionRecord(p.name, p, json.loads((p / RECORD).read_text()))
            for p in base.iterdir()
            if not p.name.startswith(".") and (p / RECORD).is_file()  # skip in-flight copies
        ]
        return sorted(out, key=lambda v: (str(v.lineage.get("period", "")), v.model_id))

    def production(self) -> VersionRecord | None:
        """The version in production, or ``None`` before the first promotion."""
        current = self._pointer().get("current")
        return None if current is None else self.get(current)

    def production_before(self, period: str) -> VersionRecord | None:
        """The version that was in production when the period ``period`` started.

        Replays the pointer history, ignoring promotions made by ``period`` itself or a later one,
        so a rerun of a period sees the same incumbent as its first run did. Rollbacks are
        applied where they happened.
        """
        current = None
        for event in self.history():
            made_by = event.get("period")
            if event.get("action") == "promote" and made_by is not None and made_by >= period:
                continue
            current = event["model_id"]
        return None if current is None else self.get(current)

    def history(self) -> list[dict[str, Any]]:
        return list(self._pointer().get("history", []))

    # ---- writing -----------------------------------------------------------------------------

    def register(
        self,
        model_id: str,
        checkpoint_dir: str | Path,
        lineage: dict[str, Any],
        memory_dir: str | Path | None = None,
    ) -> VersionRecord:
        """Copy a checkpoint (and its memory snapshot) into the registry as a new version.

        Idempotent: a version that is already registered is returned unchanged.
        """
        target = self.root / VERSIONS / model_id
        if (target / RECORD).is_file():
            return self.get(model_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f".{model_id}.*"):  # a copy a killed run left behind
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{model_id}.", dir=target.parent))
        try:
            shutil.copytree(checkpoint_dir, tmp / "model")
            if memory_dir is not None:
                src = Path(memory_dir)
                if src.is_dir():
                    shutil.copytree(src, tmp / "memory")
                else:
                    (tmp / "memory").mkdir()
                    shutil.copy2(src, tmp / "memory" / src.name)
            (tmp / RECORD).write_text(
                json.dumps({"model_id": model_id, **lineage}, indent=2, sort_keys=True) + "\n"
            )
            if target.exists():  # a half-copied leftover cannot exist (rename is atomic)
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("registered version %s", model_id)
        return self.get(model_id)

    def _move_pointer(self, model_id: str, event: dict[str, Any]) -> None:
        self.get(model_id)  # refuses unknown versions
        pointer = self._pointer()
        history = pointer.get("history", [])
        history.append({"model_id": model_id, "previous": pointer.get("current"), **event})
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(self.root / POINTER, {"current": model_id, "history": history})

    def promote(self, model_id: str, period: str | None = None, reason: str = "") -> None:
        """Make ``model_id`` the production version (atomic)."""
        self._move_pointer(model_id, {"action": "promote", "period": period, "reason": reason})
        log.info("promoted %s (period %s)", model_id, period)

    def rollback(self, to: str, reason: str = "manual rollback") -> VersionRecord:
        """Point production back at an earlier version, with the memory snapshot stored with it."""
        record = self.get(to)
        self._move_pointer(to, {"action": "rollback", "period": None, "reason": reason})
        log.info("rolled back production to %s", to)
        return record
