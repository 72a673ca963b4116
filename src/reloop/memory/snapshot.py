"""Memory snapshots: one safetensors file, no pickle.

A snapshot is a single ``.safetensors`` file (a JSON header followed by raw tensor bytes, the
same format as model checkpoints). The tensors are the memory's state (hash planes, bucket sums or
raw window); one metadata entry, ``reloop``, holds a canonical JSON object (a single entry keeps
the file bytes identical across reruns) with:

* ``format`` (``reloop-memory-snapshot``) and ``format_version``. A file of another version is
  refused with :class:`SnapshotVersionError`, which names both versions: a snapshot is rebuilt
  (``reloop stage memory --date D``), never converted;
* ``kind``: ``sketch`` (:class:`~reloop.memory.ErrorMemory`) or ``exact``
  (:class:`~reloop.memory.ExactMemory`);
* ``model_id``: the model version whose hidden vectors built the memory. Loading next to any other
  model version is refused with :class:`ModelMismatchError`: another model's hidden space is
  different, so the stored buckets would be meaningless for it;
* ``meta``: JSON with the memory's write-time config (every field but the read-time knobs
  :data:`reloop.config.memory.READ_KNOBS`), the hidden dimension and counters;
* ``sha256``: a digest of every tensor's name, dtype, shape and bytes, checked on load, so a
  flipped byte in the data region (which the safetensors header cannot notice) is reported.

Writes go to a temporary file beside the target and are renamed into place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from reloop.atomic import write_file

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelMismatchError",
    "SnapshotError",
    "SnapshotVersionError",
    "read_snapshot",
    "tensors_digest",
    "write_snapshot",
]

FORMAT = "reloop-memory-snapshot"
#: 2: the measured design only (planes, tree, table; no lam/gamma in the config).
FORMAT_VERSION = 2


class SnapshotError(ValueError):
    """A memory snapshot is missing, corrupt, truncated, or of the wrong kind. Names the file."""


class SnapshotVersionError(SnapshotError):
    """A snapshot was written in another format version; it must be rebuilt."""


class ModelMismatchError(SnapshotError):
    """A snapshot was built from a different model version than the one it is loaded next to."""


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


#: The one safetensors metadata key holding the snapshot header.
HEADER_KEY = "reloop"


def write_snapshot(
    path: str | Path,
    kind: str,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    model_id: str,
) -> Path:
    """Write ``tensors`` and ``meta`` to ``path`` atomically; returns the path."""
    if not isinstance(model_id, str) or not model_id:
        raise ValueError(
            f"model_id={model_id!r}: a snapshot must record the model version it was built for; "
            "construct the memory with model_id=<checkpoint.model_id>"
        )
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": kind,
        "model_id": model_id,
        "meta": json.dumps(meta, sort_keys=True),
        "sha256": tensors_digest(tensors),
    }
    # one metadata entry: safetensors keeps metadata in a hash map whose order varies per
    # process, so several entries would make reruns write different bytes
    metadata = {HEADER_KEY: json.dumps(header, sort_keys=True)}
    write_file(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return path


def read_snapshot(
    path: str | Path, kind: str, model_id: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and check a snapshot written by :func:`write_snapshot`: ``(tensors, meta)``.

    Raises :class:`SnapshotError` naming the file for a missing, unreadable, truncated or
    corrupted file or one of another kind, and :class:`ModelMismatchError` when the snapshot was
    built for a model other than ``model_id``.
    """
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(f"memory snapshot {str(path)!r} does not exist or is not a file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw_header = (fh.metadata() or {}).get(HEADER_KEY, "{}")
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as err:
        raise SnapshotError(
            f"memory snapshot {str(path)!r} is corrupt or truncated: {err}"
        ) from None
    try:
        header = json.loads(raw_header)
    except json.JSONDecodeError as err:
        raise SnapshotError(f"memory snapshot {str(path)!r}: invalid header JSON: {err}") from None
    if not isinstance(header, dict):
        raise SnapshotError(f"memory snapshot {str(path)!r}: header must be a JSON object")
    if header.get("format") != FORMAT:
        raise SnapshotError(
            f"memory snapshot {str(path)!r}: format={header.get('format')!r} is not a reloop "
            f"memory snapshot (expected {FORMAT!r})"
        )
    if header.get("format_version") != str(FORMAT_VERSION):
        # a stage's snapshot lies in its period's folder, date=D; a registry copy does not
        from reloop.periods import parse_date_part

        date = next((str(d) for d in map(parse_date_part, reversed(path.parts)) if d),
                    "D (the period that built it)")
        raise SnapshotVersionError(
            f"memory snapshot {str(path)!r} has format_version {header.get('format_version')}, "
            f"this reloop reads format_version {FORMAT_VERSION}; rebuild the snapshot: "
            f"`reloop stage memory --date {date}`"
        )
    if header.get("kind") != kind:
        raise SnapshotError(
            f"memory snapshot {str(path)!r} holds a {header.get('kind')!r} memory, not {kind!r}"
        )
    if tensors_digest(tensors) != header.get("sha256"):
        raise SnapshotError(
            f"memory snapshot {str(path)!r} is corrupt: its tensors do not match the recorded "
            "sha256"
        )
    if header.get("model_id") != model_id:
        raise ModelMismatchError(
            f"memory snapshot {str(path)!r} was built for model_id={header.get('model_id')!r}; "
            f"refusing to load it next to model_id={model_id!r} (another model's hidden vectors "
            "do not share its buckets; build a fresh memory for the new model)"
        )
    try:
        meta = json.loads(header.get("meta", ""))
    except json.JSONDecodeError as err:
        raise SnapshotError(f"memory snapshot {str(path)!r}: invalid meta JSON: {err}") from None
    if not isinstance(meta, dict):
        raise SnapshotError(f"memory snapshot {str(path)!r}: meta must be a JSON object")
    return tensors, meta


M = TypeVar("M")


def memory_meta(mem: Any, **extra: Any) -> dict[str, Any]:
    """The metadata every memory snapshot carries: write-time config, hidden size, counter."""
    return {
        "config": mem.config.structure(),
        "hidden_dim": mem.hidden_dim,
        "n_written": mem.n_written_,
        **extra,
    }


def load_memory(
    cls: type[M],
    path: str | Path,
    model_id: str,
    restore: Callable[[M, dict[str, torch.Tensor], dict[str, Any]], None],
    config: Any = None,
) -> M:
    """Read a snapshot of ``cls`` built for ``model_id`` into a fresh instance.

    Builds ``cls(hidden_dim, config, model_id=...)`` with the snapshot's write-time config and
    the read-time knobs (``lam``, ``gamma``) of ``config`` (a :class:`MemoryConfig`, default
    ``MemoryConfig()``), lets ``restore`` check and install the tensors, then restores the
    counter. Anything inconsistent raises :class:`SnapshotError` naming the file.
    """
    from reloop.config.memory import MemoryConfig

    tensors, meta = read_snapshot(path, cls.kind, model_id)
    try:
        cfg = MemoryConfig.model_validate(meta["config"]).with_read_knobs(
            config if config is not None else MemoryConfig()
        )
        mem = cls(int(meta["hidden_dim"]), cfg, model_id=model_id)
        mem.n_written_ = int(meta["n_written"])
        restore(mem, tensors, meta)
    except (KeyError, TypeError, ValueError) as err:
        raise SnapshotError(f"memory snapshot {str(path)!r} is inconsistent: {err}") from None
    return mem
