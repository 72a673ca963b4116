"""ReLoop2's error memory: an LSH sketch (:class:`ErrorMemory`), its exact reference
(:class:`ExactMemory`), snapshots, and the paper's streaming evaluation (:func:`stream_eval`).

Names are imported lazily, so ``import reloop.config.memory`` (done by :mod:`reloop.config`) does
not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "BucketSums",
    "ErrorMemory",
    "ExactMemory",
    "MemoryConfig",
    "ModelMismatchError",
    "SnapshotError",
    "SnapshotVersionError",
    "StreamReport",
    "stream_eval",
    "stream_eval_checkpoint",
]

_WHERE = {
    "BucketSums": "reloop.memory.sketch",
    "ErrorMemory": "reloop.memory.sketch",
    "ExactMemory": "reloop.memory.exact",
    "MemoryConfig": "reloop.config.memory",
    "ModelMismatchError": "reloop.memory.snapshot",
    "SnapshotError": "reloop.memory.snapshot",
    "SnapshotVersionError": "reloop.memory.snapshot",
    "StreamReport": "reloop.memory.stream",
    "stream_eval": "reloop.memory.stream",
    "stream_eval_checkpoint": "reloop.memory.stream",
}

if TYPE_CHECKING:  # pragma: no cover
    from reloop.config.memory import MemoryConfig
    from reloop.memory.exact import ExactMemory
    from reloop.memory.sketch import BucketSums, ErrorMemory
    from reloop.memory.snapshot import ModelMismatchError, SnapshotError, SnapshotVersionError
    from reloop.memory.stream import StreamReport, stream_eval, stream_eval_checkpoint


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'reloop.memory' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
