"""Impression ids, and scored candidates waiting to be shown.

**Ids.** Every scored candidate gets ``<replica>-<served ms, hex>-<boot>-<request, hex>-<row>``:
the replica that scored it (a click must reach that replica: it holds the hidden vector the
memory needs), when it was served (so a click on an impression no longer held can be told "older
than the attribution window" rather than "unknown"), a random token per process start (ids stay
unique across restarts), the request's sequence number in this process and the candidate's
position. The impression log's ``request_id`` is this id.

**Shown vs scored.** Only shown impressions are logged (see :mod:`reloop.serving.server`): a
request scored with ``shown: false`` waits in :class:`ScoredCache` until ``POST /v1/impressions``
names the candidates the caller showed, for at most ``serve.show_timeout_s``.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from reloop.serving.errors import BadRequest

if TYPE_CHECKING:  # pragma: no cover
    from reloop.learn.features import EncodedFeatures
    from reloop.serving.live import LiveModel

__all__ = ["ImpressionIds", "Scored", "ScoredCache"]


@dataclass(frozen=True)
class ParsedId:
    replica: str
    served_us: int
    key: str  # the request's part of the id
    row: int


class ImpressionIds:
    """Makes and parses the impression ids of one replica (see the module docstring)."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self._boot = secrets.token_hex(3)
        self._seq = 0
        self._lock = threading.Lock()

    def request_key(self, served_us: int) -> str:
        """The id prefix of a new request's candidates."""
        with self._lock:
            self._seq += 1
            seq = self._seq
        return f"{self.replica}-{served_us // 1000:x}-{self._boot}-{seq:x}"

    @staticmethod
    def ids(key: str, n: int, rows: list[int] | None = None) -> list[str]:
        """The ids of a request's ``n`` candidates (of ``rows`` only, when given)."""
        return [f"{key}-{j:x}" for j in (range(n) if rows is None else rows)]

    @staticmethod
    def parse(impression_id: object, what: str) -> ParsedId:
        """The parts of an id; a 404 :class:`BadRequest` naming ``what`` if it is not one."""
        if not isinstance(impression_id, str):
            raise BadRequest(422, what, f"expected a string, got {type(impression_id).__name__}")
        parts = impression_id.split("-")
        try:
            if len(parts) != 5 or len(impression_id) > 128:
                raise ValueError
            return ParsedId(parts[0], int(parts[1], 16) * 1000, "-".join(parts[:4]),
                            int(parts[4], 16))
        except ValueError:
            raise BadRequest(404, what, f"{impression_id!r} is not an impression id this "
                                        "service issued") from None

    def check_replica(self, parsed: ParsedId, impression_id: str, what: str) -> None:
        """421 when another replica issued the id: its feedback belongs there."""
        if parsed.replica != self.replica:
            raise BadRequest(421, what, f"{impression_id!r} was scored by replica "
                                        f"{parsed.replica!r}, not {self.replica!r}: send it to "
                                        "that replica")


@dataclass(slots=True)
class Scored:
    """One scored request whose candidates have not all been shown yet. Its request body is
    kept as bytes (parsed again for the candidates shown): thousands of these wait at a time,
    and a few objects each keep the garbage collector's pauses short."""

    live: LiveModel
    served_us: int
    key: str
    body: bytes
    encoded: EncodedFeatures | None
    score: np.ndarray
    score_base: np.ndarray
    shown: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.shown = np.zeros(self.score.shape[0], dtype=bool)


class ScoredCache:
    """Scored requests waiting for ``POST /v1/impressions``, oldest first, bounded in time and
    count. Thread-safe."""

    def __init__(self, timeout_us: int, capacity: int) -> None:
        self.timeout_us = timeout_us
        self.capacity = capacity
        self._items: OrderedDict[str, Scored] = OrderedDict()
        self._lock = threading.Lock()
        self.dropped = 0  # requests dropped unshown (expired or over capacity)

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: str, scored: Scored) -> None:
        with self._lock:
            self._items[key] = scored
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
                self.dropped += 1

    def expire(self, now_us: int) -> int:
        """Drop requests older than the timeout; returns how many."""
        n = 0
        with self._lock:
            while self._items:
                key, first = next(iter(self._items.items()))
                if first.served_us + self.timeout_us >= now_us:
                    break
                del self._items[key]
                n += 1
            self.dropped += n
        return n

    def take(self, ids: list[str], parse: Any, now_us: int) -> list[tuple[Scored, np.ndarray]]:
        """Mark ``ids`` shown and return them grouped by request: ``[(scored, rows)]``.

        All or nothing: an id that is malformed, unknown, expired or already shown is a
        :class:`BadRequest` naming its position, and nothing is marked.
        """
        groups: dict[str, list[int]] = {}
        with self._lock:
            for i, impression_id in enumerate(ids):
                what = f"impression_ids[{i}]"
                parsed = parse(impression_id, what)
                scored = self._items.get(parsed.key)
                if scored is None or scored.served_us + self.timeout_us < now_us:
                    raise BadRequest(404, what, f"{impression_id!r} is unknown, or was scored "
                                                "more than serve.show_timeout_s ago")
                if parsed.row >= scored.shown.shape[0] or impression_id != \
                        f"{parsed.key}-{parsed.row:x}":
                    raise BadRequest(404, what, f"{impression_id!r} is unknown")
                rows = groups.setdefault(parsed.key, [])
                if scored.shown[parsed.row] or parsed.row in rows:
                    raise BadRequest(409, what, f"{impression_id!r} was already shown")
                rows.append(parsed.row)
            out = []
            for key, rows in groups.items():
                scored = self._items[key]
                idx = np.asarray(rows, dtype=np.int64)
                scored.shown[idx] = True
                if scored.shown.all():
                    del self._items[key]
                out.append((scored, idx))
        return out
