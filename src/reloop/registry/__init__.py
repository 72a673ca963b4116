"""Model registry: a production pointer plus a history of versions with their lineage.

Layout under the registry root::

    versions/<model_id>/model/           the checkpoint (safetensors + JSON)
    versions/<model_id>/memory/          the ReLoop2 error-memory snapshot built for it (optional)
    versions/<model_id>/version.json     lineage: training period, parent, params, data hashes,
                                         evaluation
    production.json                      {"current": <model_id> | null, "history": [events]}

Registering copies the artefacts into a temporary directory beside ``versions/`` and renames it
into place (:func:`reloop.atomic.replace_dir`), so a version directory is either complete or
absent; registering the same model_id again is a no-op (reruns are safe). Promotion and rollback
rewrite ``production.json`` through a temporary file, fsynced and renamed with :func:`os.replace`
(:func:`reloop.atomic.write_text`), which is atomic on POSIX: a crash at any moment leaves the
old pointer or the new one, never a broken state. The history lives inside the pointer file for
the same reason. Callers serialise writers with :meth:`Registry.lock` (an OS-level file lock,
released by the kernel if the process dies, so a killed run leaves no stale lock).

**Version ids** are the checkpoints' ``model_id``: exactly 16 lowercase hexadecimal characters
(a sha256 prefix, :mod:`reloop.learn.checkpoint`). Every id the registry is asked for (``get``,
``register``, ``promote``, ``rollback --to``) or reads from ``production.json`` is checked against
that format before it touches a path, and must name a version the registry lists, so no id can
reach outside ``versions/``.

**Whose turn it is to move the pointer.** A period's promotion moves production forward; moving
it back is :meth:`Registry.rollback`'s job. :meth:`Registry.production_before` replays the
history up to the first event made by that period or a later one, so a rerun of a period sees
the incumbent its first run saw, whatever happened since; :meth:`Registry.pointer_held` says
why a (re)run of a period may not move the pointer any more: a later period has moved it, or it
was rolled back after this period's own decision. Every decided period has an event: a
``promote``, or a ``keep`` (:meth:`Registry.keep`) when its candidate was refused or its pointer
held, so a rerun of a period that kept its incumbent stops at that event too.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from reloop import atomic

__all__ = ["RERUN_KEYS", "VERSION_ID", "Registry", "RegistryError", "VersionRecord",
           "check_version_id"]

log = logging.getLogger(__name__)

POINTER = "production.json"
VERSIONS = "versions"
RECORD = "version.json"
#: A version id: a checkpoint's ``model_id``, the first 16 hex digits of a sha256.
VERSION_ID = re.compile(r"^[0-9a-f]{16}$")


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (unknown version, busy, inconsistent)."""


def check_version_id(model_id: object, what: str = "version") -> str:
    """``model_id`` if it has the exact version-id format, else a :class:`RegistryError` naming
    it and the format (checked before the id is ever joined to a path)."""
    if not isinstance(model_id, str) or not VERSION_ID.match(model_id):
        raise RegistryError(
            f"{what} {model_id!r} is not in the registry: a version id is exactly 16 lowercase "
            "hexadecimal characters (a model_id, as `reloop registry show` lists them, e.g. "
            "'9c5879678c6e6abc')"
        )
    return model_id


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


#: what a rerun of a version's period records over the first run's lineage: the gate's verdict
#: and what it compared (the version's data, parent and params stay the first run's)
RERUN_KEYS = ("decision", "evaluation")


def _atomic_write_json(path: Path, payload: dict[str, Any]) -> None:
    # plain json.dumps (not atomic.write_json, which turns NaN into null): the pointer's bytes
    # stay what they always were
    atomic.write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


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
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RegistryError(f"{path} is not valid JSON: {err}") from None

    def _listed(self) -> list[str]:
        """Ids of the complete versions under ``versions/`` (in-flight copies start with ``.``)."""
        base = self.root / VERSIONS
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir()
                      if VERSION_ID.match(p.name) and (p / RECORD).is_file())

    def get(self, model_id: str) -> VersionRecord:
        """The version ``model_id``: a :class:`RegistryError` naming it unless it has the version-id
        format and the registry lists it."""
        try:
            check_version_id(model_id)
        except RegistryError as err:
            raise RegistryError(f"{err}; known: {self._listed()}") from None
        if not (self.root / VERSIONS / model_id / RECORD).is_file():
            raise RegistryError(
                f"version {model_id!r} is not in the registry; known: {self._listed()}"
            )
        return self._record(self.root / VERSIONS / model_id)

    @staticmethod
    def _record(path: Path) -> VersionRecord:
        try:
            lineage = json.loads((path / RECORD).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RegistryError(f"{path / RECORD} is not valid JSON: {err}") from None
        return VersionRecord(path.name, path, lineage)

    def versions(self) -> list[VersionRecord]:
        """Every registered version, oldest training period first."""
        out = [self._record(self.root / VERSIONS / name) for name in self._listed()]
        return sorted(out, key=lambda v: (str(v.lineage.get("period", "")), v.model_id))

    def production(self) -> VersionRecord | None:
        """The version in production, or ``None`` before the first promotion."""
        current = self._pointer().get("current")
        if current is None:
            return None
        try:
            return self.get(current)
        except RegistryError as err:
            raise RegistryError(f"{self.root / POINTER} names {current!r} as production: {err}"
                                ) from None

    def production_before(self, period: str) -> VersionRecord | None:
        """The version that was in production when the period ``period`` started.

        Replays the pointer history up to the first event made by ``period`` itself or a later
        one, so a rerun of a period sees the incumbent its first run saw, whatever was promoted or
        rolled back since. Rollbacks made before that point are applied where they happened.
        """
        current = None
        for event in self.history():
            made_by = event.get("period")
            if made_by is not None and made_by >= period:
                break
            current = event["model_id"]
        return None if current is None else self.get(current)

    def pointer_held(self, period: str) -> str | None:
        """Why a (re)run of ``period`` may not move the production pointer, or ``None``.

        Held when a later period has moved the pointer (its history event), or when production was
        rolled back after this period's own promotion: moving production back is a rollback's
        job, and undoing a rollback is not a rerun's.
        """
        own = False
        for event in self.history():
            made_by = event.get("period")
            if made_by is not None and made_by > period:
                return (f"period {made_by} moved production after {period} "
                        f"({event.get('action')} of {event.get('model_id')})")
            if made_by == period:
                own = True
            elif own:
                return (f"production was moved back to {event.get('model_id')} "
                        f"({event.get('action')}: {event.get('reason') or 'no reason given'}) "
                        f"after period {period} was decided")
        return None

    def history(self) -> list[dict[str, Any]]:
        return list(self._pointer().get("history", []))

    # ---- writing -----------------------------------------------------------------------------

    def register(
        self,
        model_id: str,
        checkpoint_dir: str | Path,
        lineage: dict[str, Any],
        memory_dir: str | Path | None = None,
        verify: Callable[[VersionRecord], dict[str, Any]] | None = None,
    ) -> VersionRecord:
        """Copy a checkpoint (and its memory snapshot) into the registry as a new version.

        ``verify`` is called with the complete copy (a :class:`VersionRecord` at its temporary
        path) before it is renamed into place: if it raises, nothing is registered; what it
        returns is added to the lineage. Idempotent: a version that is already registered keeps
        its files and its lineage, and is verified again; a rerun of the period that registered
        it (its gate rerun with other thresholds, say) records what the gate said this time
        (:data:`RERUN_KEYS` of ``lineage``, and what ``verify`` returns).
        """
        check_version_id(model_id)
        target = self.root / VERSIONS / model_id
        if (target / RECORD).is_file():
            record = self.get(model_id)
            checked = {} if verify is None else verify(record)
            if lineage.get("period") != record.lineage.get("period"):
                return record
            lineage = {**record.lineage, **{k: lineage[k] for k in RERUN_KEYS if k in lineage},
                       **(checked or {})}
            if lineage != record.lineage:
                _atomic_write_json(target / RECORD, lineage)
                log.info("version %s: lineage updated by a rerun of period %s", model_id,
                         lineage.get("period"))
                record = self.get(model_id)
            return record
        atomic.sweep_leftovers(target)  # a copy a killed run left behind
        # artefacts only: not the temporary files a killed writer left beside them
        artefacts = shutil.ignore_patterns(".*")

        def build(tmp: Path) -> None:
            nonlocal lineage
            shutil.copytree(checkpoint_dir, tmp / "model", ignore=artefacts)
            if memory_dir is not None:
                src = Path(memory_dir)
                if src.is_dir():
                    shutil.copytree(src, tmp / "memory", ignore=artefacts)
                else:
                    (tmp / "memory").mkdir()
                    shutil.copy2(src, tmp / "memory" / src.name)
            if verify is not None:
                lineage = {**lineage, **verify(VersionRecord(model_id, tmp, lineage))}
            (tmp / RECORD).write_text(
                json.dumps({"model_id": model_id, **lineage}, indent=2, sort_keys=True) + "\n"
            )

        atomic.replace_dir(target, build)
        log.info("registered version %s", model_id)
        return self.get(model_id)

    def _move_pointer(self, model_id: str, event: dict[str, Any]) -> None:
        self.get(model_id)  # refuses unknown versions
        pointer = self._pointer()
        history = pointer.get("history", [])
        history.append({"model_id": model_id, "previous": pointer.get("current"), **event})
        self._write_pointer(model_id, history)

    def _write_pointer(self, current: str | None, history: list[dict[str, Any]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(f".{POINTER}.*"):  # a new pointer a killed writer left
            stale.unlink(missing_ok=True)  # (writers hold the registry lock: none is live)
        _atomic_write_json(self.root / POINTER, {"current": current, "history": history})

    def promote(self, model_id: str, period: str | None = None, reason: str = "") -> None:
        """Make ``model_id`` the production version (atomic)."""
        self._move_pointer(model_id, {"action": "promote", "period": period, "reason": reason})
        log.info("promoted %s (period %s)", model_id, period)

    def keep(self, period: str, reason: str = "") -> None:
        """Record that ``period`` was decided without moving production (its candidate was
        refused, or its pointer held): a ``keep`` event naming the version in production, the
        pointer unchanged. Once per period (a rerun adds nothing).

        The event marks where the period sits in the history: a rerun of the period replays the
        history up to it (:meth:`production_before`: the incumbent its first run saw, not a
        version rolled back to since) and a later rollback holds its pointer
        (:meth:`pointer_held`), as a promotion's event does.
        """
        pointer = self._pointer()
        history = pointer.get("history", [])
        if any(e.get("period") == period for e in history):
            return
        current = pointer.get("current")
        history.append({"model_id": current, "previous": current, "action": "keep",
                        "period": period, "reason": reason})
        self._write_pointer(current, history)
        log.info("period %s kept production at %s", period, current)

    def rollback(self, to: str, reason: str = "manual rollback",
                 verify: Callable[[VersionRecord], Any] | None = None) -> VersionRecord:
        """Point production back at an earlier version, with the memory snapshot stored with it.

        ``verify(record)`` runs first and raises when the version cannot serve (a corrupt
        checkpoint or snapshot): the pointer then stays where it is.
        """
        record = self.get(to)
        if verify is not None:
            verify(record)
        self._move_pointer(to, {"action": "rollback", "period": None, "reason": reason})
        log.info("rolled back production to %s", to)
        return record
