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
class PendingLabels:
    """Served rows waiting for their labels to become known."""

    _known: list[np.ndarray] = field(default_factory=list)
    _hidden: list[torch.Tensor | None] = field(default_factory=list)
    _y: list[np.ndarray] = field(default_factory=list)
    _base: list[np.ndarray] = field(default_factory=list)
    written: int = 0

    def add(
        self,
        known_at: np.ndarray,
        hidden: torch.Tensor | None,
        y: np.ndarray,
        score_base: np.ndarray,
    ) -> None:
        if len(known_at):
            self._known.append(np.asarray(known_at, dtype=np.float64))
            self._hidden.append(hidden)
            self._y.append(np.asarray(y))
            self._base.append(np.asarray(score_base, dtype=np.float64))

    def __len__(self) -> int:
        return int(sum(k.shape[0] for k in self._known))

    def release(self, scorer: Scorer, until: float | None = None) -> int:
        """Write every row known at or before ``until`` (all rows when ``None``) into the
        scorer's memory; returns how many rows were released."""
        released = 0
        keep: tuple[list, list, list, list] = ([], [], [], [])
        for known, hidden, y, base in zip(self._known, self._hidden, self._y, self._base,
                                          strict=True):
            due = np.ones(known.shape[0], bool) if until is None else known <= until
            n_due = int(due.sum())
            if n_due:
                idx = np.flatnonzero(due)
                h = None if hidden is None else hidden[_index(idx)]
                self.written += scorer.observe(h, y[idx], base[idx])
                released += n_due
            if n_due < known.shape[0]:
                rest = np.flatnonzero(~due)
                keep[0].append(known[rest])
                keep[1].append(None if hidden is None else hidden[_index(rest)])
                keep[2].append(y[rest])
                keep[3].append(base[rest])
        self._known, self._hidden, self._y, self._base = keep
        return released
