"""Shown impressions waiting for their label, and the label entering the live memory.

A shown impression's label becomes final by the join's own rule
(:func:`reloop.serving.online.label_known_at`): a click within ``join.window_minutes`` of
serving is a positive, final at the click's time; the window closing without one is a negative,
final at ``served + window``. So the memory never learns a label the training table would
contradict. Positives are written into the memory as soon as the click is accepted; negatives by
the upkeep tick once the serving clock passes the window's end.

Each impression keeps the hidden vector of the model version that scored it; a label whose
version is no longer the one serving is not written (another version's hidden space has other
buckets). Clicks are checked here, all or nothing per call: unknown id (404), another replica's
id (421), a duplicate click (409), a click before the impression or after its window (422), and
a click that arrives once the window has closed on the serving clock (422: the negative is
already final, so the click is refused rather than logged, and the join agrees with the memory).
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from reloop.serving.errors import BadRequest
from reloop.serving.online import label_known_at

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from reloop.serving.live import LiveModel

__all__ = ["LabelBook", "Released"]

_US = 1_000_000


@dataclass(slots=True)
class _Shown:
    """Impressions shown together (one request, or one confirmation), scored by one version;
    their global row numbers are ``start .. start + len(ids) - 1``."""

    live: LiveModel | None  # None: restored after a restart
    ids: list[str]
    start: int
    served_us: np.ndarray  # int64
    hidden: torch.Tensor | None
    base: np.ndarray
    click_us: np.ndarray  # int64, -1 until clicked
    done: np.ndarray  # label released
    expires_us: int


@dataclass
class Released:
    """What one release wrote into the memory (and what it could not)."""

    positives: int = 0
    negatives: int = 0
    dropped: int = 0  # scored by a version no longer serving
    delays: list[float] | None = None  # per written label: clock now - final time, seconds


class LabelBook:
    """Shown impressions of the last attribution window (thread-safe).

    An hour of traffic holds millions of impressions, so nothing is kept per impression but a
    ``str -> int`` entry (impression id -> global row), which the garbage collector never
    scans; everything else is in numpy arrays per batch.
    """

    def __init__(self, window_s: float, capacity: int) -> None:
        self.window_us = int(round(window_s * _US))
        self.capacity = capacity
        self._batches: list[_Shown] = []  # oldest first; rows ascending from _head on
        self._starts: list[int] = []
        self._head = 0
        self._next = 0
        self._index: dict[str, int] = {}
        self._clicked: list[tuple[_Shown, int]] = []
        self._lock = threading.Lock()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._index)

    def _append(self, live: LiveModel | None, ids: list[str], served: np.ndarray,
                hidden: torch.Tensor | None, base: np.ndarray, click: np.ndarray,
                done: np.ndarray) -> None:
        """Add a batch (caller holds the lock)."""
        batch = _Shown(live, ids, self._next, served, hidden, base, click, done,
                       int(served.max()) + self.window_us)
        self._batches.append(batch)
        self._starts.append(self._next)
        self._index.update(zip(ids, range(self._next, self._next + len(ids)), strict=True))
        self._next += len(ids)

    def _pop(self) -> _Shown:
        """Remove the oldest batch and its ids (caller holds the lock)."""
        batch = self._batches[self._head]
        self._batches[self._head] = None  # type: ignore[call-overload]
        self._head += 1
        if self._head > 1024 and self._head * 2 > len(self._batches):
            del self._batches[:self._head], self._starts[:self._head]
            self._head = 0
        for impression_id in batch.ids:
            self._index.pop(impression_id, None)
        return batch

    def _oldest(self) -> _Shown | None:
        return self._batches[self._head] if self._head < len(self._batches) else None

    def _find(self, impression_id: str) -> tuple[_Shown, int] | None:
        g = self._index.get(impression_id)
        if g is None:
            return None
        batch = self._batches[bisect.bisect_right(self._starts, g, lo=self._head) - 1]
        return batch, g - batch.start

    def add(self, live: LiveModel, ids: list[str], served_us: np.ndarray,
            hidden: torch.Tensor | None, base: np.ndarray) -> None:
        n = len(ids)
        with self._lock:
            self._append(live, ids, np.asarray(served_us, dtype=np.int64), hidden,
                         np.asarray(base, dtype=np.float64), np.full(n, -1, dtype=np.int64),
                         np.zeros(n, dtype=bool))
            while len(self._index) > self.capacity and self._oldest() is not None:
                self.evicted += int((~self._pop().done).sum())

    def restore(self, ids: list[str], served_us: np.ndarray, clicked: set[str]) -> None:
        """Re-index impressions logged before a restart: their clicks are accepted (once), but
        their labels cannot reach the memory (their hidden vectors are gone)."""
        if not ids:
            return
        served = np.asarray(served_us, dtype=np.int64)
        click = np.where([i in clicked for i in ids], served, -1).astype(np.int64)
        with self._lock:
            self._append(None, list(ids), served, None, np.zeros(len(ids)), click,
                         np.ones(len(ids), dtype=bool))

    def click(self, clicks: list[tuple[str, int, Any]], now_us: int,
              arrived_us: int | None = None) -> None:
        """Accept ``[(impression_id, click time, parsed id)]``, all or nothing.

        ``parsed`` is the id's :class:`~reloop.serving.impressions.ParsedId` (checked for the
        replica by the caller). ``arrived_us``: the serving clock when the clicks arrived (before
        their own times moved a client clock; default ``now_us``): a click whose window had
        closed by then is refused. Accepted positives are released by :meth:`release_clicked`.
        """
        arrived = now_us if arrived_us is None else arrived_us
        with self._lock:
            rows = []
            seen = set()
            for i, (impression_id, t_us, parsed) in enumerate(clicks):
                what = f"clicks[{i}]"
                hit = self._find(impression_id)
                served = parsed.served_us if hit is None else int(hit[0].served_us[hit[1]])
                if t_us < served:
                    raise BadRequest(422, f"{what}.event_time",
                                     f"the click is {(served - t_us) / _US:.3f} s before the "
                                     "impression was served")
                if t_us - served > self.window_us:
                    raise BadRequest(422, f"{what}.event_time",
                                     f"the click is {(t_us - served) / _US:.3f} s after the "
                                     "impression, outside the attribution window "
                                     f"(join.window_minutes = {self.window_us / 60 / _US:g}): "
                                     "its label is already final (a negative)")
                if arrived > served + self.window_us:  # whether or not the tick released it
                    raise BadRequest(422, f"{what}.impression_id",
                                     f"{impression_id!r}: its attribution window closed "
                                     f"{(arrived - served - self.window_us) / _US:.3f} s ago "
                                     "(serving clock), so its label is final (a negative, in "
                                     "the memory and in the join); a click arriving after "
                                     "that is refused")
                if hit is None:
                    raise BadRequest(404, f"{what}.impression_id",
                                     f"{impression_id!r} is not a shown impression of this "
                                     "replica (unknown, never shown, or lost in a restart)")
                if hit[0].click_us[hit[1]] >= 0 or impression_id in seen:
                    raise BadRequest(409, f"{what}.impression_id",
                                     f"{impression_id!r} was already clicked (a duplicate)")
                if t_us > now_us + 5 * _US:
                    raise BadRequest(422, f"{what}.event_time", "the click is in the future")
                seen.add(impression_id)
                rows.append((hit, t_us))
            for (batch, j), t_us in rows:
                batch.click_us[j] = t_us
                self._clicked.append((batch, j))

    def release_clicked(self, current: LiveModel | None, now_us: int) -> Released:
        """Write the accepted clicks' positive labels into the memory now."""
        with self._lock:
            due, self._clicked = self._clicked, []
            by_batch: dict[int, tuple[_Shown, list[int]]] = {}
            for batch, j in due:
                by_batch.setdefault(id(batch), (batch, []))[1].append(j)
            todo = [(b, self._take(b, np.asarray(rows, dtype=np.int64)))
                    for b, rows in by_batch.values()]
        return self._write(todo, current, now_us)

    def release(self, current: LiveModel | None, now_us: int) -> Released:
        """Write every label final by ``now_us`` whose window has closed (negatives, and any
        positive not yet written), and forget those impressions."""
        with self._lock:
            todo = []
            while (oldest := self._oldest()) is not None and oldest.expires_us <= now_us:
                batch = self._pop()
                todo.append((batch, self._take(batch, np.arange(len(batch.ids)))))
        return self._write(todo, current, now_us)

    @staticmethod
    def _take(batch: _Shown, rows: np.ndarray) -> np.ndarray:
        """The rows not released yet, marked released (caller holds the lock)."""
        rows = rows[~batch.done[rows]]
        batch.done[rows] = True
        return rows

    def _write(self, todo: list[tuple[_Shown, np.ndarray]], current: LiveModel | None,
               now_us: int) -> Released:
        import torch

        out = Released(delays=[])
        for batch, rows in todo:
            if not rows.size:
                continue
            clicked = batch.click_us[rows] >= 0
            y, known = label_known_at(batch.served_us[rows] / _US, batch.click_us[rows] / _US,
                                      clicked, self.window_us / _US)
            if batch.live is not current:
                out.dropped += rows.size
                continue
            hidden = None if batch.hidden is None else batch.hidden[torch.from_numpy(rows)]
            if batch.live.observe(hidden, y, batch.base[rows]):
                out.positives += int(y.sum())
                out.negatives += int(rows.size - y.sum())
                out.delays.extend((now_us / _US - known).tolist())
        return out
