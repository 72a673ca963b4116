"""Labels arriving after serving, written into the error memory as they become known.

A served impression's label is final either when its click arrives inside the attribution window
(a positive, known at the click time) or when the window closes without one (a negative, known at
impression time + window); this is the same rule the join applies, so the memory never learns a
label the training table would contradict. :class:`PendingLabels` keeps each served row's hidden
vector, label, base score and that time, and :meth:`PendingLabels.release` hands the rows whose
time has come to :meth:`reloop.serving.scorer.Scorer.observe`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from reloop.serving.scorer import Scorer

__all__ = ["PendingLabels", "label_known_at"]


def label_known_at(
    served_at: np.ndarray, click_at: np.ndarray, clicked: np.ndarray, window: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(y, known_at)`` of each impression under an attribution window.

    ``y = 1`` when a click arrived within ``window`` of serving (inclusive), known at the click;
    otherwise ``y = 0``, known when the window closes (``served_at + window``). Times are in any
    consistent unit (the simulator uses seconds of the day).
    """
    served_at = np.asarray(served_at, dtype=np.float64)
    click_at = np.asarray(click_at, dtype=np.float64)
    in_window = np.asarray(clicked, dtype=bool) & (click_at - served_at <= window)
    known = np.where(in_window, click_at, served_at + window)
    return in_window.astype(np.int8), known


def _index(rows: np.ndarray):
    import torch

    return torch.from_numpy(rows)


@dataclass
class _Chunk:
    """Rows served together; ``done`` marks the ones already released."""

    known: np.ndarray
    hidden: torch.Tensor | None
    y: np.ndarray
    base: np.ndarray
    done: np.ndarray


@dataclass
class PendingLabels:
    """Served rows waiting for their labels to become known.

    Rows stay in the chunk they were served in until all of its labels are released; each row's
    hidden vector is gathered once, when it is released.
    """

    _chunks: list[_Chunk] = field(default_factory=list)
    written: int = 0

    def add(
        self,
        known_at: np.ndarray,
        hidden: torch.Tensor | None,
        y: np.ndarray,
        score_base: np.ndarray,
    ) -> None:
        known = np.asarray(known_at, dtype=np.float64)
        if known.shape[0]:
            self._chunks.append(_Chunk(known, hidden, np.asarray(y),
                                       np.asarray(score_base, dtype=np.float64),
                                       np.zeros(known.shape[0], dtype=bool)))

    def __len__(self) -> int:
        return int(sum((~c.done).sum() for c in self._chunks))

    def release(self, scorer: Scorer, until: float | None = None) -> int:
        """Write every row known at or before ``until`` (all rows when ``None``) into the
        scorer's memory; returns how many rows were released."""
        released = 0
        keep = []
        for c in self._chunks:
            due = ~c.done if until is None else (~c.done) & (c.known <= until)
            idx = np.flatnonzero(due)
            if idx.size:
                h = None if c.hidden is None else c.hidden[_index(idx)]
                self.written += scorer.observe(h, c.y[idx], c.base[idx])
                c.done[idx] = True
                released += idx.size
            if not c.done.all():
                keep.append(c)
        self._chunks = keep
        return released
