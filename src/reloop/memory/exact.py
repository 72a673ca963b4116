"""Reference error memory: raw samples in a bounded window, exact top-k by cosine similarity.

See :class:`ExactMemory`.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from torch import Tensor

from reloop.config.memory import MemoryConfig
from reloop.memory.estimator import compensate as compensate_eq
from reloop.memory.inputs import check_hidden, check_labels, check_probs
from reloop.memory.snapshot import load_memory, memory_meta, write_snapshot

__all__ = ["ExactMemory"]

#: Similarity-matrix elements computed at once by a read (queries x stored), ~256 MB of float32.
MAX_SIM_ELEMENTS = 1 << 26


class ExactMemory:
    """The exact-neighbour error memory ReLoop2's sketch approximates; same API as ErrorMemory.

    Keeps the last ``config.exact_window`` written samples (a ring buffer of unit-normalised
    hidden vectors, labels and base predictions; the oldest is overwritten first) and answers a
    query with the true top-``config.K`` stored samples by cosine similarity, fed to the same
    Eq. 11-13 and 9 (:func:`reloop.memory.estimator.compensate`) with ``s_i`` the cosine. It is
    O(window) per read: a reference for measuring how much of the exact-neighbour gain the sketch
    keeps, and for testing the estimator, not a serving component.

    :meth:`decay` keeps a weight per stored sample; weights enter the attention as
    ``a_i ∝ w_i exp(s_i)``, the exact analogue of decaying the sketch's sums.

    Like the sketch's, its snapshots store the write-time config; ``lam`` and ``gamma`` come
    from the ``config`` it is loaded with (:meth:`load`).

    Thread safety: every public method holds one lock for its whole duration (reads included), so
    reads and writes from several threads are safe and serialised.
    """

    kind = "exact"

    def __init__(
        self,
        hidden_dim: int,
        config: MemoryConfig | None = None,
        *,
        model_id: str | None = None,
    ) -> None:
        self.hidden_dim = hidden_dim
        self.config = config if config is not None else MemoryConfig()
        self.model_id = model_id
        if not isinstance(hidden_dim, int) or hidden_dim < 1:
            raise ValueError(f"hidden_dim={hidden_dim!r} must be a positive integer")
        self._lock = threading.Lock()
        self._alloc(0)

    def _alloc(self, capacity: int) -> None:
        self.keys_ = torch.zeros(capacity, self.hidden_dim, dtype=torch.float32)
        self.y_ = torch.zeros(capacity, dtype=torch.float64)
        self.y_base_ = torch.zeros(capacity, dtype=torch.float64)
        self.weight_ = torch.zeros(capacity, dtype=torch.float64)
        self.size_ = 0  # filled slots
        self.next_ = 0  # ring position of the next write
        self.n_written_ = 0

    @property
    def window(self) -> int:
        return self.config.exact_window

    @property
    def nbytes(self) -> int:
        """Bytes held now; grows with writes up to the window, then stays constant."""
        return sum(t.nbytes for t in (self.keys_, self.y_, self.y_base_, self.weight_))

    def __len__(self) -> int:
        return self.size_

    def __repr__(self) -> str:
        return (
            f"ExactMemory(hidden_dim={self.hidden_dim}, k={self.config.K}, "
            f"window={self.window}, stored={self.size_}, model_id={self.model_id!r})"
        )

    def _grow(self, need: int) -> None:
        cap = self.keys_.shape[0]
        if need <= cap or cap >= self.window:
            return
        new_cap = min(self.window, max(need, 2 * cap, 1024))
        for name in ("keys_", "y_", "y_base_", "weight_"):
            old = getattr(self, name)
            new = torch.zeros((new_cap, *old.shape[1:]), dtype=old.dtype)
            new[:cap] = old
            setattr(self, name, new)

    def write(self, h: Tensor, y: Tensor, y_base: Tensor) -> int:
        """Store a batch; returns how many samples were written."""
        h = check_hidden(h, self.hidden_dim)
        y = check_labels(y, h.shape[0])
        y_base = check_probs(y_base, h.shape[0])
        keys = torch.nn.functional.normalize(h, dim=1, eps=1e-12)
        n = keys.shape[0]
        if n > self.window:  # only the newest `window` samples would survive anyway
            keys, y, y_base = keys[-self.window :], y[-self.window :], y_base[-self.window :]
        with self._lock:
            # while the buffer is not full, next_ == size_ and the positions stay below the
            # grown capacity; once full, capacity == window and positions wrap around
            self._grow(self.size_ + keys.shape[0])
            pos = (self.next_ + torch.arange(keys.shape[0])) % self.window
            self.keys_[pos] = keys
            self.y_[pos] = y
            self.y_base_[pos] = y_base
            self.weight_[pos] = 1.0
            self.next_ = (self.next_ + keys.shape[0]) % self.window
            self.size_ = min(self.window, self.size_ + keys.shape[0])
            self.n_written_ += n
        return n

    def compensate(self, h: Tensor, y_base: Tensor) -> Tensor:
        """Compensated predictions from the exact top-K neighbours. No side effects."""
        h = check_hidden(h, self.hidden_dim)
        yb = check_probs(y_base, h.shape[0])
        out_dtype = (
            y_base.dtype
            if isinstance(y_base, Tensor) and y_base.is_floating_point()
            else torch.float32
        )
        cfg = self.config
        with self._lock:
            n = self.size_
            if n == 0 or h.shape[0] == 0:
                return yb.to(out_dtype).clone()
            q = torch.nn.functional.normalize(h, dim=1, eps=1e-12)
            keys = self.keys_[:n]
            log_w = torch.log(self.weight_[:n])
            k = min(cfg.K, n)
            step = max(1, MAX_SIM_ELEMENTS // n)
            parts = []
            for s in range(0, q.shape[0], step):
                sims = q[s : s + step] @ keys.T
                top, idx = torch.topk(sims, k, dim=1, sorted=False)
                s_i = top.to(torch.float64) + log_w[idx]
                valid = torch.isfinite(s_i)
                parts.append(
                    compensate_eq(
                        torch.where(valid, s_i, torch.zeros_like(s_i)),
                        valid,
                        self.y_[idx],
                        self.y_base_[idx],
                        yb[s : s + step],
                        gamma=cfg.gamma,
                        lam=cfg.lam,
                    )
                )
        return torch.cat(parts).to(out_dtype)

    def reset(self) -> None:
        """Forget every stored sample."""
        with self._lock:
            self._alloc(0)

    def decay(self, factor: float | None = None) -> None:
        """Multiply every stored sample's weight by ``factor`` (default: ``config.decay``).

        0 resets the memory.
        """
        f = self.config.decay if factor is None else float(factor)
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"decay factor={f} is out of range; expected 0..1")
        if f == 1.0:
            return
        if f == 0.0:
            self.reset()
            return
        with self._lock:
            self.weight_.mul_(f)

    def save(self, path: str | Path) -> Path:
        """Write a snapshot (safetensors, no pickle) of the window, config and model_id."""
        with self._lock:
            n = self.size_
            tensors = {
                "keys": self.keys_[:n].clone(),
                "y": self.y_[:n].clone(),
                "y_base": self.y_base_[:n].clone(),
                "weight": self.weight_[:n].clone(),
            }
            meta = memory_meta(self, next=self.next_)
        return write_snapshot(path, self.kind, tensors, meta, self.model_id)

    @classmethod
    def load(
        cls, path: str | Path, *, model_id: str, config: MemoryConfig | None = None
    ) -> ExactMemory:
        """Load a snapshot built for ``model_id``; refuses one built for another model.

        ``config`` (default :class:`MemoryConfig()`) gives the read-time ``lam`` and ``gamma``.
        """
        return load_memory(cls, path, model_id, cls._restore, config)

    def _restore(self, tensors: dict[str, Tensor], meta: dict) -> None:
        keys = tensors["keys"]
        n = keys.shape[0]
        window = self.config.exact_window
        if keys.ndim != 2 or keys.shape[1] != self.hidden_dim or n > window:
            raise ValueError(f"keys have shape {tuple(keys.shape)}")
        for name in ("y", "y_base", "weight"):
            if tensors[name].shape != (n,):
                raise ValueError(f"{name!r} has shape {tuple(tensors[name].shape)}, not ({n},)")
        self._grow(n)
        self.keys_[:n] = keys
        self.y_[:n] = tensors["y"]
        self.y_base_[:n] = tensors["y_base"]
        self.weight_[:n] = tensors["weight"]
        self.size_ = n
        self.next_ = int(meta["next"]) % window
