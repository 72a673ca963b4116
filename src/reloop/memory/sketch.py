"""ReLoop2's error memory as an LSH sketch: constant size, O(K) writes and reads.

See :class:`ErrorMemory` and ``docs/error_memory.md``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from reloop.config.memory import MemoryConfig
from reloop.memory.estimator import fit_tree_cuts, make_planes, tree_depth
from reloop.memory.inputs import check_hidden, check_labels, check_probs
from reloop.memory.kernels import gather_compensate, refresh_readouts, scatter_write, tree_rows
from reloop.memory.snapshot import load_memory, memory_meta, write_snapshot

__all__ = ["BucketSums", "ErrorMemory"]

log = logging.getLogger(__name__)

#: Rows processed at once by write/compensate; bounds the temporaries of very large batches.
CHUNK_ROWS = 16384
#: Columns of the state table.
COUNT, SUM_Y, SUM_Y_BASE = 0, 1, 2
#: A first written batch smaller than this gets a warning: the hash's cuts are fitted on it.
MIN_FIT_ROWS = 256
#: Bytes of state per bucket: float64 sums, float32 readouts, float32 node threshold.
BUCKET_BYTES = 3 * 8 + 3 * 4 + 4


class _HashState(NamedTuple):
    """The fitted hash, read once per call: ``planes.T`` (contiguous), the tree, its depth."""

    planes_t: Tensor
    tree: Tensor
    depth: int


@dataclass(frozen=True)
class BucketSums:
    """The query's bucket in every array: ``(B, K)`` float64 running sums."""

    count: Tensor
    sum_y: Tensor
    sum_y_base: Tensor


class ErrorMemory:
    """LSH error memory (ReLoop2, Sec. 3.2.2): K arrays of 2^L buckets over cosine tree cuts.

    **Hash.** Array ``k`` has ``L`` Gaussian hyperplanes ``w_{k,l}`` (from ``config.seed``) and
    decides its bits in order: bit ``l`` is ``(h / ||h||) . w_{k,l} > T[k, node]``, where
    ``node`` is the path of the bits before it, so each bit's threshold depends on the earlier
    ones (a random-projection tree whose levels share one hyperplane each). The thresholds are
    fitted once, on the first written batch, so that every node splits the rows reaching it at
    their median, down to ``config.leaf_share`` of the batch and ``config.min_leaf_rows`` rows
    (:func:`reloop.memory.estimator.fit_tree_cuts`); then they are frozen for the memory's life.
    The comparison is made as ``h . w > ||h|| T``: one norm per query more than plain SRP.

    **Write** ``write(h, y, y_base)``: each sample is added to its bucket in every array: the
    bucket's ``[count, sum y, sum y_base]`` (float64) grows. O(K) per sample, only the ``B*K``
    buckets written are touched. **Read** ``compensate(h, y_base)``: the query's bucket in each
    of the ``K`` arrays is one of the paper's top-k neighbours; the K buckets are pooled,
    ``y_bar = sum_k sum_y_k / sum_k count_k`` and ``y_bar_base`` likewise (Eq. 11-12 with
    ``s_k = log count_k``), then Eq. 13 and 9 with ``config.gamma`` and ``config.lam`` give
    ``y_pred``; a query whose buckets are all empty keeps ``y_base``. The per-sample loops are
    compiled (:mod:`reloop.memory.kernels`). The state has a constant size whatever the stream
    length.

    **Reset and forgetting**: the memory belongs to one model version (``model_id``); a snapshot
    is refused next to any other, so replacing the base model always starts a fresh memory.
    Within a model's life :meth:`decay` multiplies the sums by ``config.decay`` at each
    slot/period boundary.

    Each of these choices, and the alternatives measured against them, is in
    ``docs/error_memory.md``.

    **Snapshots** (:meth:`save`, :meth:`load`) hold the learned state (planes, tree, bucket sums)
    and the write-time config (every field but ``lam`` and ``gamma``), which is authoritative for
    the structure. ``lam`` and ``gamma`` are read-time knobs: a loaded memory takes them from the
    ``memory`` section it is loaded with, so the evaluation and serving compensate with the same
    ``params.yaml`` values.

    **Thread safety**: safe to share between threads. Writes, :meth:`reset` and :meth:`decay`
    apply their change under one lock; a read hashes outside the lock and gathers its buckets
    under it, so every read sees the state after a whole number of write batches (never half a
    batch, never a count without its sums). Hashing and the estimator run outside the lock and
    in parallel (torch and the compiled kernels release the GIL).

    Following scikit-learn's habits the constructor only stores its arguments and derives the
    fixed parts from them (the hash planes, from ``config.seed``); the learned state is
    ``tree_`` (fitted by the first write), the ``table_`` tensor and the ``n_written_`` counter.

    Args:
        hidden_dim: dimension of the hidden vectors (the backbone's ``hidden_dim``).
        config: the ``memory`` section; defaults to :class:`MemoryConfig()`.
        model_id: the model version whose hidden vectors are written (a checkpoint's
            ``model_id``); recorded in snapshots, required to save one.
    """

    kind = "sketch"

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
        cfg = self.config
        n_rows = cfg.K * cfg.n_buckets
        need = n_rows * BUCKET_BYTES
        if need > cfg.max_state_bytes:
            raise ValueError(
                f"K={cfg.K}, L={cfg.L} needs {need:,} bytes of bucket state "
                f"({cfg.K} x 2**{cfg.L} buckets), more than max_state_bytes="
                f"{cfg.max_state_bytes:,}; lower L or K, or raise memory.max_state_bytes"
            )
        self.planes_ = make_planes(hidden_dim, cfg.K, cfg.L, cfg.seed)
        # per-node thresholds of the unit vectors' projections (+inf: a node not cut), fitted
        # by the first write; _hash_state is None until then
        self.tree_ = torch.full((cfg.K, cfg.n_buckets), float("inf"), dtype=torch.float32)
        self._hash_state: _HashState | None = None
        self._lock = threading.Lock()
        self._local = threading.local()  # per-thread scratch buffer of the hash
        self.table_ = torch.zeros(n_rows, 3, dtype=torch.float64)
        # derived from table_ after every change: per bucket [count, sum_y, sum_y_base] in
        # float32 (zeros while empty), the rows the read sums (kernels.gather_compensate)
        self._readout = torch.zeros(n_rows, 3, dtype=torch.float32)
        self.n_written_ = 0

    # ------------------------------------------------------------------ properties

    @property
    def nbytes(self) -> int:
        """Size of the state in bytes: bucket sums, derived readouts, tree and hash planes.

        Constant: it depends on K, L and the hidden dimension only.
        """
        tensors = [self.table_, self._readout, self.tree_, self.planes_]
        return sum(t.nbytes for t in tensors)

    def __len__(self) -> int:
        """Samples written since the last reset."""
        return self.n_written_

    def __repr__(self) -> str:
        c = self.config
        return (
            f"ErrorMemory(hidden_dim={self.hidden_dim}, K={c.K}, L={c.L}, gamma={c.gamma}, "
            f"lam={c.lam}, model_id={self.model_id!r}, written={self.n_written_})"
        )

    # ------------------------------------------------------------------ hashing

    @property
    def fitted(self) -> bool:
        """Whether the hash's cuts are fixed (by the first write, or a snapshot's)."""
        return self._hash_state is not None

    def _set_tree(self, tree: Tensor) -> None:
        self.tree_ = tree.contiguous()
        self._hash_state = _HashState(
            self.planes_.T.contiguous(), self.tree_, tree_depth(self.tree_)
        )

    def _fit(self, h: Tensor) -> None:
        """Fit the tree cuts on the first written batch, once."""
        with self._lock:
            if self._hash_state is not None or h.shape[0] == 0:
                return
            if h.shape[0] < MIN_FIT_ROWS:
                log.warning(
                    "the error memory's hash is fitted on the first written batch, which has "
                    "only %d rows; its cuts are fixed from them for the memory's life (write a "
                    "larger first batch, e.g. the recent labelled window, for evenly filled "
                    "buckets)", h.shape[0],
                )
            z = F.normalize(h, dim=1) @ self.planes_
            min_leaf = max(self.config.min_leaf_rows, round(self.config.leaf_share * z.shape[0]))
            self._set_tree(fit_tree_cuts(z, self.config.L, min_leaf))

    def _scratch(self, n: int) -> Tensor:
        """A float32 buffer of ``n`` elements private to the calling thread (grown on demand).

        The hash writes its ``(K*L, B)`` projection into it instead of allocating a fresh
        tensor per call (3 MiB at B=4096, K=16, L=12). Per thread, so concurrent reads and
        writes never share one.
        """
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.numel() < n:
            buf = torch.empty(max(n, 1), dtype=torch.float32)
            self._local.buf = buf
        return buf[:n]

    def _hash(self, h: Tensor, state: _HashState) -> np.ndarray:
        """Flat table row of the query's bucket in every array, ``(B, K)`` int64 (numpy).

        One matrix product ``planes.T @ h.T`` into the thread's scratch buffer (transposed: the
        walk reads it plane by plane), then one compiled walk down every array's tree
        (:func:`reloop.memory.kernels.tree_rows`) against ``||h||`` times the thresholds.
        ``state`` is the caller's one read of ``_hash_state``.
        """
        B, K, L = h.shape[0], self.config.K, self.config.L
        rows = np.empty((B, K), dtype=np.int64)
        norm = torch.linalg.vector_norm(h, dim=1)
        zt = torch.mm(state.planes_t, h.T, out=self._scratch(B * K * L).view(K * L, B))
        tree_rows(zt.numpy(), state.tree.numpy(), norm.numpy(), K, L, state.depth, rows)
        return rows

    def bucket_ids(self, h: Tensor) -> Tensor:
        """The bucket of every row of ``h`` in every array: ``(B, K)`` int64 in ``[0, 2**L)``.

        Only the first ``2**depth`` buckets of an array are used (the tree's depth). Raises
        before the first write has fitted the hash.
        """
        h = check_hidden(h, self.hidden_dim)
        state = self._hash_state
        if state is None:
            raise ValueError("the hash is fitted by the first write; nothing was written yet")
        return torch.from_numpy(self._hash(h, state)) - torch.arange(self.config.K) * \
            self.config.n_buckets

    # ------------------------------------------------------------------ write

    def write(self, h: Tensor, y: Tensor, y_base: Tensor) -> int:
        """Add a batch of labelled samples; returns how many were written.

        ``h`` ``(B, hidden_dim)`` hidden vectors, ``y`` ``(B,)`` 0/1 labels, ``y_base`` ``(B,)``
        the base model's probabilities for the same samples. O(K) per sample: only the ``B*K``
        buckets written are touched, whatever the table's size. The first write fits the hash.
        """
        h = check_hidden(h, self.hidden_dim)
        y = check_labels(y, h.shape[0])
        y_base = check_probs(y_base, h.shape[0])
        if self._hash_state is None:
            self._fit(h)
        for start in range(0, h.shape[0], CHUNK_ROWS):
            stop = start + CHUNK_ROWS
            self._write_chunk(h[start:stop], y[start:stop], y_base[start:stop])
        return h.shape[0]

    def _write_chunk(self, h: Tensor, y: Tensor, y_base: Tensor) -> None:
        if h.shape[0] == 0:
            return
        rows = self._hash(h, self._hash_state)
        y_np, yb_np = y.numpy(), y_base.numpy()
        with self._lock:
            # the sums of the B*K buckets written, and their readouts, in one compiled pass
            scatter_write(rows, y_np, yb_np, self.table_.numpy(), self._readout.numpy())
            self.n_written_ += h.shape[0]

    # ------------------------------------------------------------------ read

    def lookup(self, h: Tensor) -> BucketSums:
        """The running sums of the query's bucket in every array (no side effects)."""
        h = check_hidden(h, self.hidden_dim)
        B, K = h.shape[0], self.config.K
        state = self._hash_state
        if state is None:  # nothing written yet
            zeros = torch.zeros(B, K, dtype=torch.float64)
            return BucketSums(zeros, zeros.clone(), zeros.clone())
        rows = self._hash(h, state)
        with self._lock:
            g = self.table_.index_select(0, torch.from_numpy(rows).view(-1))
        g = g.view(B, K, 3)
        return BucketSums(g[..., COUNT], g[..., SUM_Y], g[..., SUM_Y_BASE])

    def compensate(self, h: Tensor, y_base: Tensor) -> Tensor:
        """Compensated predictions ``y_pred`` ``(B,)`` in [0, 1] (Eq. 9, 11-13). No side effects.

        Returned in ``y_base``'s floating dtype (float32 unless given float64).
        """
        h = check_hidden(h, self.hidden_dim)
        yb = check_probs(y_base, h.shape[0])
        out_dtype = (
            y_base.dtype
            if isinstance(y_base, Tensor) and y_base.is_floating_point()
            else torch.float32
        )
        if h.shape[0] == 0:
            return torch.empty(0, dtype=out_dtype)
        state = self._hash_state
        if state is None:  # nothing written yet
            return yb.to(out_dtype, copy=True)
        out = np.empty(h.shape[0], dtype=np.float64)
        for s in range(0, h.shape[0], CHUNK_ROWS):
            rows = self._hash(h[s : s + CHUNK_ROWS], state)
            with self._lock:  # pool the K readouts of every query and compensate
                gather_compensate(rows, self._readout.numpy(), yb[s : s + CHUNK_ROWS].numpy(),
                                  self.config.gamma, self.config.lam, out[s : s + CHUNK_ROWS])
        return torch.from_numpy(out).to(out_dtype)

    # ------------------------------------------------------------------ lifecycle

    def reset(self) -> None:
        """Forget everything written (the hash planes and cuts stay)."""
        with self._lock:
            self.table_.zero_()
            self._readout.zero_()
            self.n_written_ = 0

    def decay(self, factor: float | None = None) -> None:
        """Multiply every running sum by ``factor`` (default ``config.decay``); 0 resets.

        Called at a slot or period boundary it down-weights older samples geometrically while
        keeping each bucket's means unchanged.
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
            self.table_.mul_(f)
            refresh_readouts(self.table_.numpy(), self._readout.numpy())

    # ------------------------------------------------------------------ snapshots

    def save(self, path: str | Path) -> Path:
        """Write a snapshot (safetensors, no pickle): planes, tree, sums, structure, model_id."""
        with self._lock:
            tensors = {
                "planes": self.planes_.clone(),
                "tree": self.tree_.clone(),
                "table": self.table_.clone(),
            }
            meta = memory_meta(self, fitted=self.fitted)
        return write_snapshot(path, self.kind, tensors, meta, self.model_id)

    @classmethod
    def load(
        cls, path: str | Path, *, model_id: str, config: MemoryConfig | None = None
    ) -> ErrorMemory:
        """Load a snapshot built for ``model_id``; refuses one built for another model.

        The snapshot's write-time config gives the structure; ``config`` (the ``memory`` section
        in use, default :class:`MemoryConfig()`) gives the read-time ``lam`` and ``gamma``.
        """
        return load_memory(cls, path, model_id, cls._restore, config)

    def _restore(self, tensors: dict[str, Tensor], meta: dict) -> None:
        expected = {"planes": self.planes_, "tree": self.tree_, "table": self.table_}
        if set(tensors) != set(expected):
            raise ValueError(f"tensors {sorted(tensors)}, expected {sorted(expected)}")
        for name, ref in expected.items():
            t = tensors[name]
            if t.shape != ref.shape or t.dtype != ref.dtype:
                raise ValueError(
                    f"tensor {name!r} has shape {tuple(t.shape)} {t.dtype}, expected "
                    f"{tuple(ref.shape)} {ref.dtype}"
                )
        self.planes_ = tensors["planes"].contiguous()
        if meta.get("fitted"):
            self._set_tree(tensors["tree"])
        else:
            self.tree_ = tensors["tree"].contiguous()
        self.table_ = tensors["table"].contiguous()
        refresh_readouts(self.table_.numpy(), self._readout.numpy())
