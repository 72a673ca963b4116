"""ReLoop2's error memory as an LSH sketch: constant size, O(K) writes and reads.

See :class:`ErrorMemory` and ``docs/error_memory.md``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from reloop.memory._inputs import check_hidden, check_labels, check_probs
from reloop.memory.config import MemoryConfig
from reloop.memory.estimator import compensate as compensate_eq
from reloop.memory.estimator import compensate_from_sums, make_planes
from reloop.memory.snapshot import load_memory, memory_meta, write_snapshot

__all__ = ["BucketSums", "ErrorMemory"]

log = logging.getLogger(__name__)

#: Rows processed at once by write/compensate; bounds the temporaries of very large batches.
CHUNK_ROWS = 16384
#: PCA whitening adds this multiple of the mean eigenvalue to every eigenvalue before scaling.
WHITEN_SHRINK = 1.0
#: Columns of the state table.
COUNT, SUM_Y, SUM_Y_BASE = 0, 1, 2
#: With ``similarity="count"`` the fast path stores ``count ** (1 / tau)`` in float32, which could
#: overflow below this temperature; such configs use the general (log-space softmax) read path.
MIN_COUNT_TAU = 0.5


@dataclass(frozen=True)
class BucketSums:
    """The query's bucket in every array: ``(B, K)`` float64 running sums."""

    count: Tensor
    sum_y: Tensor
    sum_y_base: Tensor


class ErrorMemory:
    """LSH error memory (ReLoop2, Sec. 3.2.2): K sign-random-projection arrays of 2^L buckets.

    **Write** ``write(h, y, y_base)``: each sample's hidden vector ``h`` is hashed by every array
    ``k`` with its own ``L`` hyperplanes (bit ``l`` is ``w_{k,l} . h > 0``) into one of ``2**L``
    buckets, and the bucket's running sums are increased. **Read** ``compensate(h, y_base)``:
    the query's bucket in each of the ``K`` arrays gives one readout, the ``K`` readouts are the
    paper's top-k neighbours, and Eq. 11-13 and 9 turn them into ``y_pred`` (see
    :mod:`reloop.memory.estimator`). The state has a constant size whatever the stream length.

    Decisions on the points the paper leaves open, each measured in
    ``benchmarks/error_memory.py`` (figures in ``docs/error_memory.md``; mean AUC gains on three
    layouts of a drifting stream, slots 2-10):

    * **What a bucket stores**: three running sums, ``count``, ``sum y`` and ``sum y_base``
      (float64, exact counts up to 2**53), the paper's ``2**L x K x 3``; readouts are the means.
      ``similarity="centroid"`` also keeps the sum of the L projections of the normalised hidden
      vectors; it tied with ``uniform`` (-0.00005 AUC) at a much higher read cost.
    * **Similarity** ``s_k`` (``config.similarity``): ``"uniform"`` (``s_k = 0``: the mean of
      the K bucket readouts, +0.0086 AUC), ``"count"`` (``s_k = log count``; with ``tau = 1``
      the K buckets are pooled, ``y_bar = sum sum_y / sum count``, +0.0077: the large buckets
      that dominate a pool are the coarse, mixed ones) or ``"centroid"``.
    * **Empty buckets** (count < ``config.min_count``) are masked out of the softmax; a query whose
      buckets are all empty is returned unchanged (``y_err = 0``). ``min_count`` 2-5 were within
      +0.0003 AUC of 1 (a tie).
    * **Write filter** ``config.sigma`` (store only ``|y - y_base| > sigma``): off by default; it
      biases the bucket means toward the errors (-0.08 AUC at 0.1).
    * **Reset**: the memory belongs to one model version (``model_id``); a snapshot is refused next
      to any other, so replacing the base model always starts a fresh memory. Within a model's
      life, :meth:`decay` multiplies the sums by ``config.decay`` (0.7) at each slot/period
      boundary (+0.0008 AUC over keeping everything on a drifting stream).
    * **Hash input** ``config.normalize``: ``h`` is standardised with the mean and std of the
      first written batch (folded into the planes, free at query time). ReLU hidden vectors sit
      in one orthant, nearly on a line; unnormalised hyperplanes hardly split them (-0.0003 AUC
      against +0.0022 standardised).
    * **Multi-probe** reads (also reading the L Hamming-1 neighbours of each bucket, weighted
      lower) were measured and rejected: they widen the neighbourhood, which is already too
      coarse (-0.0022 AUC at weight 0.25).

    **Thread safety**: safe to share between threads. Writes, :meth:`reset` and :meth:`decay`
    apply their change under one lock; a read hashes outside the lock and gathers its buckets
    under it, so every read sees the state after a whole number of write batches (never half a
    batch, never a count without its sums). Hashing, the bincounts of a write and the estimator
    run outside the lock and in parallel (torch releases the GIL).

    Following scikit-learn's habits the constructor only stores its arguments and derives the
    fixed parts from them (the hash planes, from ``config.seed``); the learned state is
    ``offset_``/``transform_`` (the normalisation, fitted by the first write), the ``table_`` (and
    ``centroid_``) tensor and the ``n_written_``/``n_filtered_`` counters.

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
        per_row = 3 * 8 + 3 * 4 + (cfg.L * 4 if cfg.similarity == "centroid" else 0)
        need = n_rows * per_row
        if need > cfg.max_state_bytes:
            raise ValueError(
                f"K={cfg.K}, L={cfg.L} needs {need:,} bytes of bucket state "
                f"({cfg.K} x 2**{cfg.L} buckets), more than max_state_bytes="
                f"{cfg.max_state_bytes:,}; lower L or K, or raise memory.max_state_bytes"
            )
        self.planes_ = make_planes(hidden_dim, cfg.K, cfg.L, cfg.seed)
        # normalisation (config.normalize): the hash is sign(((h - offset_) @ transform_) @
        # planes_), with offset_ and transform_ fitted on the first written batch and frozen;
        # it is computed as h @ proj > thr with proj = transform_ @ planes_ and
        # thr = offset_ @ proj. _hash_state holds that (proj, thr) pair, or None while not
        # fitted.
        self.offset_ = torch.zeros(hidden_dim, dtype=torch.float32)
        self.transform_ = torch.eye(hidden_dim, dtype=torch.float32)
        self._hash_state: tuple[Tensor, Tensor | None] | None = None
        # bucket ids are computed as bits @ 2**l (plus the array's base row) in floating point,
        # exact while K * 2**L fits the mantissa (float32 up to 2**24, float64 beyond)
        # (writes compute 2 * row + y the same way, hence the factor 2)
        self._id_dtype = torch.float32 if 2 * n_rows <= (1 << 24) else torch.float64
        self._pow2 = torch.pow(2.0, torch.arange(cfg.L, dtype=torch.float64)).to(self._id_dtype)
        self._array_base = torch.arange(cfg.K, dtype=self._id_dtype) * cfg.n_buckets
        self._n_rows = n_rows
        # bucket weights that do not depend on the query: keep weighted readouts per bucket
        self._fast = cfg.similarity == "uniform" or (
            cfg.similarity == "count" and cfg.tau >= MIN_COUNT_TAU
        )
        # count similarity with tau = 1 and no extra masking: attention weights are the counts
        # and the weighted readouts are the raw sums (empty buckets add nothing)
        self._pooled = cfg.similarity == "count" and cfg.tau == 1.0 and cfg.min_count == 1
        self._lock = threading.Lock()
        self._local = threading.local()  # per-thread scratch buffer of the hash
        self.table_ = torch.zeros(n_rows, 3, dtype=torch.float64)
        self.centroid_: Tensor | None = (
            torch.zeros(n_rows, cfg.L, dtype=torch.float32)
            if cfg.similarity == "centroid"
            else None
        )
        # derived from table_ after every change: per bucket [w, w * mean_y, w * mean_y_base]
        # in float32, the layout the read path sums with one embedding_bag call
        self._readout = torch.zeros(n_rows, 3, dtype=torch.float32) if self._fast else None
        self.n_written_ = 0
        self.n_filtered_ = 0

    # ------------------------------------------------------------------ properties

    @property
    def nbytes(self) -> int:
        """Size of the state in bytes: bucket sums, derived readouts, centroids, hash planes.

        Constant: it depends on K, L, the hidden dimension and the similarity only.
        """
        tensors = [
            self.table_, self.planes_, self.offset_, self.transform_, self.centroid_, self._readout
        ]
        return sum(t.nbytes for t in tensors if t is not None)

    def __len__(self) -> int:
        """Samples written since the last reset (after the write filter)."""
        return self.n_written_

    def __repr__(self) -> str:
        c = self.config
        return (
            f"ErrorMemory(hidden_dim={self.hidden_dim}, K={c.K}, L={c.L}, tau={c.tau}, "
            f"gamma={c.gamma}, lam={c.lam}, sigma={c.sigma}, similarity={c.similarity!r}, "
            f"model_id={self.model_id!r}, written={self.n_written_})"
        )

    # ------------------------------------------------------------------ hashing

    @property
    def fitted(self) -> bool:
        """Whether the hash is fixed: always with ``normalize="none"``, else after a write."""
        return self._state() is not None

    def _state(self) -> tuple[Tensor, Tensor | None] | None:
        """The (projection, threshold) pair the hash uses now, read once per call; None: unfitted.

        A bit is ``h @ projection > threshold`` (threshold None: ``> 0``).
        """
        if self.config.normalize == "none":
            return self.planes_, None
        return self._hash_state

    def _fit_normalization(self, h: Tensor) -> None:
        """Fit ``offset_`` and ``transform_`` on the first written batch, once."""
        with self._lock:
            if self._hash_state is not None or h.shape[0] == 0:
                return
            mode = self.config.normalize
            offset = h.mean(dim=0)
            transform = torch.eye(self.hidden_dim, dtype=torch.float32)
            if mode in ("standardize", "whiten") and h.shape[0] > 1:
                x = (h - offset).to(torch.float64)
                if mode == "standardize":
                    std = x.std(dim=0)
                    # constant coordinates (dead units) keep scale 1 instead of dividing by 0
                    floor = 1e-6 * float(std.max()) if float(std.max()) > 0 else 1.0
                    scale = torch.where(std > floor, 1.0 / std, torch.ones_like(std))
                    transform = torch.diag(scale).to(torch.float32)
                else:  # PCA whitening, eigenvalues shrunk by their mean (no blow-up of noise)
                    ev, vecs = torch.linalg.eigh(torch.cov(x.T))
                    ev = ev.clamp_min(0.0)
                    shrunk = ev + max(float(ev.mean()), 1e-12) * WHITEN_SHRINK
                    transform = (vecs / shrunk.sqrt()).to(torch.float32)
            self.offset_ = offset
            self.transform_ = transform
            proj = transform @ self.planes_
            self._hash_state = (proj, offset @ proj)

    def _scratch(self, n: int) -> Tensor:
        """A float32 buffer of ``n`` elements private to the calling thread (grown on demand).

        The hash writes its ``(B, K*L)`` projection into it instead of allocating a fresh
        ``B x K*L`` tensor per call (3 MiB at B=4096, K=16, L=12); the sign bits overwrite the
        projection in place. Per thread, so concurrent reads and writes never share one.
        """
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.numel() < n:
            buf = torch.empty(max(n, 1), dtype=torch.float32)
            self._local.buf = buf
        return buf[:n]

    def _hash(
        self,
        h: Tensor,
        state: tuple[Tensor, Tensor | None],
        keep_projection: bool = False,
        labels: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Flat row of the query's bucket in every array ``(B, K)`` (array offsets added).

        Bit ``l`` of array ``k`` is ``x . planes[:, k*L + l] > 0`` for the normalised
        ``x = (h - offset_) @ transform_`` (see :func:`reloop.memory.estimator.srp_bucket_ids`).
        ``state`` is a ``_state()`` read once by the caller. With 0/1 ``labels`` it returns
        ``2 * row + y`` instead (the index a write bincounts), in the same matrix product.
        Returns the projection too if asked.

        Three passes over the ``(B, K*L)`` block: the projection (one ``mm``, into a per-thread
        buffer), the sign bits (``gt_`` against the normalisation's threshold, in place, 1.0 or
        0.0) and their packing (one matrix-vector product of the ``(B*K, L)`` bits with
        ``2**l``); then the ``(B, K)`` array offsets (and labels) are added and the ids
        converted to int64.
        """
        proj, thr = state
        B, K, L = h.shape[0], self.config.K, self.config.L
        if keep_projection or self._id_dtype != torch.float32:
            z = h @ proj if thr is None else torch.sub(h @ proj, thr)
            bits = (z > 0).to(self._id_dtype)
        else:  # the bits overwrite the projection in the thread's scratch buffer
            z = torch.mm(h, proj, out=self._scratch(B * K * L).view(B, K * L))
            bits = z.gt_(0.0 if thr is None else thr)
        if labels is None:
            ids = torch.mv(bits.view(B * K, L), self._pow2).view(B, K)
            rows = ids.add_(self._array_base)
        else:  # 2 * row + y = bits @ 2**(l+1) + 2 * base + y
            ids = torch.mv(bits.view(B * K, L), self._pow2 * 2.0).view(B, K)
            rows = ids.add_(self._array_base * 2.0).add_(labels.to(self._id_dtype)[:, None])
        return rows.to(torch.int64), (z if keep_projection else None)

    def _normalized_norm(self, h: Tensor) -> Tensor:
        """``||(h - offset_) @ transform_||`` per row, ``(B, 1)``: the centroid's normaliser."""
        if self.config.normalize == "none":
            x = h
        elif self.config.normalize == "center":
            x = h - self.offset_
        else:
            x = (h - self.offset_) @ self.transform_
        return x.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def bucket_ids(self, h: Tensor) -> Tensor:
        """The bucket of every row of ``h`` in every array: ``(B, K)`` int64 in ``[0, 2**L)``.

        Before the first write fits the normalisation, ``h`` is hashed as it is.
        """
        h = check_hidden(h, self.hidden_dim)
        state = self._state() or (self.planes_, None)
        rows, _ = self._hash(h, state)
        return rows - self._array_base.to(torch.int64)

    # ------------------------------------------------------------------ write

    def write(self, h: Tensor, y: Tensor, y_base: Tensor) -> int:
        """Add a batch of labelled samples; returns how many passed the write filter.

        ``h`` ``(B, hidden_dim)`` hidden vectors, ``y`` ``(B,)`` 0/1 labels, ``y_base`` ``(B,)``
        the base model's probabilities for the same samples. O(K) per sample.
        """
        h = check_hidden(h, self.hidden_dim)
        y = check_labels(y, h.shape[0])
        y_base = check_probs(y_base, h.shape[0])
        n_drop = 0
        if self.config.sigma > 0.0:
            keep = (y - y_base).abs() > self.config.sigma
            n_drop = int((~keep).sum())
            if n_drop:
                h, y, y_base = h[keep], y[keep], y_base[keep]
        if self._state() is None:
            self._fit_normalization(h)
        for start in range(0, h.shape[0], CHUNK_ROWS):
            stop = start + CHUNK_ROWS
            self._write_chunk(h[start:stop], y[start:stop], y_base[start:stop])
        if n_drop:
            with self._lock:
                self.n_filtered_ += n_drop
        return h.shape[0]

    def _weighted_readouts(self, sums: np.ndarray, out: np.ndarray) -> None:
        """Per bucket ``[w, w * mean_y, w * mean_y_base]`` from ``[count, sum_y, sum_y_base]``.

        ``w`` is the bucket's unnormalised attention weight ``exp(s_k / tau)``, 0 when masked:
        1 for ``uniform``, ``count ** (1 / tau)`` for ``count``. Written into ``out`` (float32;
        numpy, single-threaded: this runs under the lock).
        """
        if self._pooled:  # w = count: the weighted readouts are the sums themselves
            out[...] = sums
            return
        count = sums[:, COUNT]
        valid = count >= self.config.min_count
        if self.config.similarity == "uniform":  # w = 1 for valid buckets: [valid, means]
            # column by column: numpy's broadcast over rows of 3 costs ~5x a column pass (1 ms
            # instead of ~0.3 at 2**16 buckets); the means in float64, then rounded once
            inv = np.maximum(count, 1.0)  # valid buckets have count >= min_count >= 1
            np.reciprocal(inv, out=inv)
            inv *= valid
            out[:, COUNT] = valid.astype(np.float32)
            out[:, SUM_Y] = sums[:, SUM_Y] * inv
            out[:, SUM_Y_BASE] = sums[:, SUM_Y_BASE] * inv
            return
        # count: w = count ** (1 / tau), so w / count = count ** (1 / tau - 1)
        scale = np.power(np.maximum(count, 1e-300), 1.0 / self.config.tau - 1.0)
        scale *= valid
        # one pass for all three columns, then the weights themselves exactly
        np.multiply(sums, scale[:, None], out=out, casting="same_kind")
        out[:, 0] = scale * count

    def _write_chunk(self, h: Tensor, y: Tensor, y_base: Tensor) -> None:
        B, K = h.shape[0], self.config.K
        if B == 0:
            return
        centroid = self.centroid_ is not None
        if self._n_rows <= B * K * 4:
            # large batch: bincounts over the whole table (numpy's are the fastest here, and
            # single-threaded). Labels are 0/1, so the hash returns 2 * row + y and one
            # bincount gives count and sum_y, a weighted one sum_y_base.
            labelled, z = self._hash(h, self._state(), keep_projection=centroid, labels=y)
            lab = labelled.view(-1).numpy()
            c01 = np.bincount(lab, minlength=2 * self._n_rows).reshape(-1, 2)
            s01 = np.bincount(
                lab, weights=np.repeat(y_base.numpy(), K), minlength=2 * self._n_rows
            ).reshape(-1, 2)
            count = c01[:, 0] + c01[:, 1]
            sum_yb = s01[:, 0] + s01[:, 1]
            flat = (labelled >> 1).view(-1) if centroid else None
            cz = (z / self._normalized_norm(h)).view(B * K, self.config.L) if centroid else None
            with self._lock:
                table = self.table_.numpy()
                table[:, COUNT] += count
                table[:, SUM_Y] += c01[:, 1]
                table[:, SUM_Y_BASE] += sum_yb
                if self._readout is not None:
                    self._weighted_readouts(table, self._readout.numpy())
                if cz is not None:
                    self.centroid_.index_add_(0, flat, cz)
                self.n_written_ += B
        else:
            # small batch (serving): touch only the B*K buckets
            rows, z = self._hash(h, self._state(), keep_projection=centroid)
            flat = rows.view(-1)
            src = torch.stack([torch.ones_like(y), y, y_base], dim=1).repeat_interleave(K, dim=0)
            cz = (z / self._normalized_norm(h)).view(B * K, self.config.L) if centroid else None
            with self._lock:
                self.table_.index_add_(0, flat, src)
                if self._readout is not None:
                    touched = torch.unique(flat)
                    fresh = np.empty((touched.shape[0], 3), dtype=np.float32)
                    self._weighted_readouts(self.table_[touched].numpy(), fresh)
                    self._readout[touched] = torch.from_numpy(fresh)
                if cz is not None:
                    self.centroid_.index_add_(0, flat, cz)
                self.n_written_ += B

    # ------------------------------------------------------------------ read

    def lookup(self, h: Tensor) -> BucketSums:
        """The running sums of the query's bucket in every array (no side effects)."""
        h = check_hidden(h, self.hidden_dim)
        B, K = h.shape[0], self.config.K
        state = self._state()
        if state is None:  # nothing written yet
            zeros = torch.zeros(B, K, dtype=torch.float64)
            return BucketSums(zeros, zeros.clone(), zeros.clone())
        rows, _ = self._hash(h, state)
        with self._lock:
            g = self.table_.index_select(0, rows.view(-1))
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
        state = self._state()
        if state is None:  # nothing written yet
            return yb.to(out_dtype, copy=True)
        step = CHUNK_ROWS
        chunk = self._compensate_fast if self._fast else self._compensate_general
        parts = [
            chunk(h[s : s + step], yb[s : s + step], state) for s in range(0, h.shape[0], step)
        ]
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        return out.to(out_dtype)

    def _compensate_fast(
        self, h: Tensor, y_base: Tensor, state: tuple[Tensor, Tensor | None]
    ) -> Tensor:
        """Query-independent bucket weights: sum the K weighted readouts (no softmax needed)."""
        rows, _ = self._hash(h, state)
        with self._lock:  # gather and sum the K weighted readouts of every query in one call
            sums = F.embedding_bag(rows, self._readout, mode="sum")
        sums = sums.to(torch.float64)
        return compensate_from_sums(
            sums[:, 0], sums[:, 1], sums[:, 2], y_base,
            gamma=self.config.gamma, lam=self.config.lam,
        )

    def _compensate_general(
        self, h: Tensor, y_base: Tensor, state: tuple[Tensor, Tensor | None]
    ) -> Tensor:
        """Query-dependent similarities (or a tiny tau): per-neighbour softmax, Eq. 11-13."""
        cfg = self.config
        B, K = h.shape[0], cfg.K
        rows, z = self._hash(h, state, keep_projection=cfg.similarity == "centroid")
        flat = rows.view(-1)
        with self._lock:
            g = self.table_.index_select(0, flat)
            cent = None if self.centroid_ is None else self.centroid_.index_select(0, flat)
        g = g.view(B, K, 3)
        count = g[..., COUNT]
        valid = count >= cfg.min_count
        inv = 1.0 / count.clamp_min(1e-300)
        y_nb = g[..., SUM_Y] * inv
        yb_nb = g[..., SUM_Y_BASE] * inv
        if cfg.similarity == "centroid":  # cosine in each array's own L-dim projected space
            s = torch.nn.functional.cosine_similarity(
                z.view(B, K, cfg.L), cent.view(B, K, cfg.L), dim=-1, eps=1e-12
            ).to(torch.float64)
        elif cfg.similarity == "count":
            s = torch.log(count.clamp_min(1e-300))
        else:
            s = torch.zeros_like(count)
        return compensate_eq(
            s, valid, y_nb, yb_nb, y_base, tau=cfg.tau, gamma=cfg.gamma, lam=cfg.lam
        )

    # ------------------------------------------------------------------ lifecycle

    def reset(self) -> None:
        """Forget everything written (the hash planes stay)."""
        with self._lock:
            self.table_.zero_()
            if self._readout is not None:
                self._readout.zero_()
            if self.centroid_ is not None:
                self.centroid_.zero_()
            self.n_written_ = 0
            self.n_filtered_ = 0

    def decay(self, factor: float | None = None) -> None:
        """Multiply every running sum by ``factor`` (default ``config.decay``); 0 resets.

        Called at a slot or period boundary it down-weights older samples geometrically while
        keeping each bucket's readouts (means) unchanged.
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
            if self._readout is not None:
                self._weighted_readouts(self.table_.numpy(), self._readout.numpy())
            if self.centroid_ is not None:
                self.centroid_.mul_(f)

    # ------------------------------------------------------------------ snapshots

    def save(self, path: str | Path) -> Path:
        """Write a snapshot (safetensors, no pickle) holding planes, sums, config and model_id."""
        with self._lock:
            tensors = {
                "planes": self.planes_.clone(),
                "offset": self.offset_.clone(),
                "transform": self.transform_.clone(),
                "table": self.table_.clone(),
            }
            if self.centroid_ is not None:
                tensors["centroid"] = self.centroid_.clone()
            meta = memory_meta(self, fitted=self.fitted)
        return write_snapshot(path, self.kind, tensors, meta, self.model_id)

    @classmethod
    def load(cls, path: str | Path, *, model_id: str) -> ErrorMemory:
        """Load a snapshot built for ``model_id``; refuses one built for another model."""
        return load_memory(cls, path, model_id, cls._restore)

    def _restore(self, tensors: dict[str, Tensor], meta: dict) -> None:
        cfg = self.config
        expected = {
            "planes": self.planes_, "offset": self.offset_, "transform": self.transform_,
            "table": self.table_,
        }
        if self.centroid_ is not None:
            expected["centroid"] = self.centroid_
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
        self.offset_ = tensors["offset"].contiguous()
        self.transform_ = tensors["transform"].contiguous()
        if meta.get("fitted") and cfg.normalize != "none":
            proj = self.transform_ @ self.planes_
            self._hash_state = (proj, self.offset_ @ proj)
        self.table_ = tensors["table"].contiguous()
        if self._readout is not None:
            self._weighted_readouts(self.table_.numpy(), self._readout.numpy())
        if self.centroid_ is not None:
            self.centroid_ = tensors["centroid"].contiguous()
