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
from reloop.memory.estimator import compensate as compensate_eq
from reloop.memory.estimator import (
    fit_tree_cuts,
    make_planes,
    tree_depth,
    tree_node_levels,
)
from reloop.memory.inputs import check_hidden, check_labels, check_probs
from reloop.memory.kernels import (
    bucket_rows,
    gather_compensate,
    refresh_readouts,
    scatter_write,
    tree_rows,
)
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
#: Added to ``config.seed`` for the generator of the cosine hash's cut levels (the planes use
#: ``config.seed`` itself).
CUT_SEED_OFFSET = 7919
#: A first written batch smaller than this gets a warning: the normalisation is fitted on it.
MIN_FIT_ROWS = 256
#: ``bucket_rows``'s "no per-sample threshold scale".
_NO_SCALE = np.empty(0, dtype=np.float32)


class _HashState(NamedTuple):
    """What the fitted hash needs, read once per call (see :meth:`ErrorMemory._state`).

    Bit ``j`` is ``h @ proj[:, j] > thr[j]`` (``cosine``: ``> ||h|| thr[j]``) with plane cuts; with
    tree cuts, ``tree`` ``(K, 2**L)`` holds the node thresholds in the same units and ``proj_t``
    the contiguous ``proj.T`` the tree kernel projects with, and ``depth`` the number of levels
    with a cut node (the levels below always give bit 0).
    """

    proj: Tensor
    thr: Tensor
    tree: Tensor | None = None
    proj_t: Tensor | None = None
    depth: int = 0


@dataclass(frozen=True)
class BucketSums:
    """The query's bucket in every array: ``(B, K)`` float64 running sums."""

    count: Tensor
    sum_y: Tensor
    sum_y_base: Tensor


class ErrorMemory:
    """LSH error memory (ReLoop2, Sec. 3.2.2): K sign-random-projection arrays of 2^L buckets.

    **Write** ``write(h, y, y_base)``: each sample's hidden vector ``h`` is hashed by every array
    ``k`` with its own ``L`` hyperplanes (bit ``l`` is ``w_{k,l} . x > t_{k,l}`` for the
    normalised ``x``, below) into one of ``2**L`` buckets, and the bucket's running sums are
    increased. **Read** ``compensate(h, y_base)``: the query's bucket in each of the ``K`` arrays
    gives one readout, the ``K`` readouts are the paper's top-k neighbours, and Eq. 11-13 and 9
    turn them into ``y_pred`` (see :mod:`reloop.memory.estimator`). The state has a constant
    size whatever the stream length. The per-sample loops are compiled
    (:mod:`reloop.memory.kernels`); a write touches only the ``B*K`` buckets it adds to.

    Decisions on the points the paper leaves open, each measured in
    ``benchmarks/error_memory.py`` (figures in ``docs/error_memory.md``; mean AUC gains over
    four drifting streams, three hidden-space segment layouts and a raw-feature drift, three
    plane seeds each, slots 2-10, after the study's last pass):

    * **Hash input** ``config.normalize``: ``"cosine"`` hashes ``h / ||h||`` (the geometry of
      :class:`~reloop.memory.ExactMemory`) with hyperplanes moved off the origin to cut through
      the data: +0.0123 AUC, against +0.0100 for standardising or centring, +0.0006
      unnormalised (ReLU hidden vectors sit in one orthant, nearly on a line, and hyperplanes
      through the origin hardly split them). The query's norm enters the comparison
      (``h . w > ||h|| t``), so hashing costs one norm per query more.
    * **Where each bit cuts** ``config.cuts``: ``"tree"`` (+0.0123) against one cut per plane
      (+0.0073; the sketch keeps 0.905 of the tuned exact memory's gain, against 0.73 with
      one cut per plane). The normalised hidden vectors are nearly two-dimensional, where L
      lines make at most ``1 + L + L(L-1)/2`` regions and one quantile cut per plane leaves a
      few huge outer buckets; with tree cuts bit ``l``'s
      threshold depends on the bits before it (each node cuts the first batch's rows reaching
      it at their median, down to ``leaf_share`` of the batch, 0.003), so the buckets fill
      evenly. The walk costs ~0.1 ms per 4096 queries more than comparing with fixed cuts.
    * **Hash subspace** ``config.hash_rank`` (0: the whole space): planes drawn in the first
      batch's top principal directions. Ranks 8-12 tie with the whole space (+0.0001 to
      +0.0003); ranks 4-6 lose the raw-feature drift entirely (its signal lives outside the
      top directions), so the default keeps the whole space.
    * **What a bucket stores**: three running sums, ``count``, ``sum y`` and ``sum y_base``
      (float64, exact counts up to 2**53), the paper's ``2**L x K x 3``.
      ``similarity="centroid"`` also keeps the sum of the L projections of the normalised hidden
      vectors: +0.0001 AUC for a read several times slower, so it is not the default.
    * **Similarity** ``s_k`` (``config.similarity``): ``"count"`` (``s_k = log count``; with
      ``tau = 1``, the default, the K buckets are pooled, ``y_bar = sum sum_y / sum count``:
      +0.0123 AUC, the cheapest, the readouts are the sums), ``"uniform"`` (``s_k = 0``: the
      mean of the K bucket means, +0.0124, a tie now that the tree fills buckets evenly; with
      one cut per plane pooling lost 0.002, dominated by the huge outer buckets) or
      ``"centroid"``.
    * **Empty buckets** (count < ``config.min_count``) are masked out of the softmax; a query whose
      buckets are all empty is returned unchanged (``y_err = 0``). ``min_count`` 2-5 change
      nothing (a tie).
    * **Write filter** ``config.sigma`` (store only ``|y - y_base| > sigma``): off by default; it
      biases the bucket means toward the errors (-0.196 AUC at 0.1).
    * **Reset**: the memory belongs to one model version (``model_id``); a snapshot is refused next
      to any other, so replacing the base model always starts a fresh memory. Within a model's
      life, :meth:`decay` multiplies the sums by ``config.decay`` (0.7) at each slot/period
      boundary (+0.0007 AUC over keeping everything on these drifting streams).
    * **Multi-probe** reads (also reading the L Hamming-1 neighbours of each bucket, weighted
      lower) were measured and rejected (-0.004 AUC at weight 0.25).

    **Thread safety**: safe to share between threads. Writes, :meth:`reset` and :meth:`decay`
    apply their change under one lock; a read hashes outside the lock and gathers its buckets
    under it, so every read sees the state after a whole number of write batches (never half a
    batch, never a count without its sums). Hashing and the estimator run outside the lock and
    in parallel (torch and the compiled kernels release the GIL).

    Following scikit-learn's habits the constructor only stores its arguments and derives the
    fixed parts from them (the hash planes, from ``config.seed``); the learned state is
    ``offset_``/``transform_``/``cuts_``/``tree_`` (the normalisation and the hash's cuts,
    fitted by the first write), the ``table_`` (and ``centroid_``) tensor and the
    ``n_written_``/``n_filtered_`` counters.

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
        # tree cuts apply to a fitted hash only (normalize="none" fits nothing)
        self._tree = cfg.cuts == "tree" and cfg.normalize != "none"
        per_row = (
            3 * 8 + 3 * 4 + (cfg.L * 4 if cfg.similarity == "centroid" else 0)
            + (4 if self._tree else 0)
        )
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
        # normalize="cosine" hashes h / ||h|| against per-plane thresholds cuts_ (the first
        # batch's quantiles) instead
        self.cuts_ = torch.zeros(cfg.K * cfg.L, dtype=torch.float32)
        # cuts="tree": per-node thresholds of the normalised projections (fitted by the first
        # write; +inf: a node not cut)
        self.tree_: Tensor | None = (
            torch.full((cfg.K, cfg.n_buckets), float("inf"), dtype=torch.float32)
            if self._tree
            else None
        )
        self._hash_state: _HashState | None = None
        # thresholds of a hash through the origin (normalize="none", or before the first write)
        self._no_cuts = torch.zeros(cfg.K * cfg.L, dtype=torch.float32)
        # bucket weights that do not depend on the query: keep weighted readouts per bucket
        self._fast = cfg.similarity == "uniform" or (
            cfg.similarity == "count" and cfg.tau >= MIN_COUNT_TAU
        )
        # the readout's attention weight is count ** power (0: uniform); count similarity with
        # tau = 1 and min_count = 1 pools the K buckets' raw sums with no masking
        self._power = 0.0 if cfg.similarity == "uniform" else 1.0 / cfg.tau
        pooled = cfg.similarity == "count" and cfg.tau == 1.0 and cfg.min_count == 1
        self._mask_below = 0.0 if pooled else float(cfg.min_count)
        self._lock = threading.Lock()
        self._local = threading.local()  # per-thread scratch buffer of the hash
        self.table_ = torch.zeros(n_rows, 3, dtype=torch.float64)
        self.centroid_: Tensor | None = (
            torch.zeros(n_rows, cfg.L, dtype=torch.float32)
            if cfg.similarity == "centroid"
            else None
        )
        # derived from table_ after every change: per bucket [w, w * mean_y, w * mean_y_base]
        # in float32, the rows the read path sums (reloop.memory.kernels.gather_compensate)
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
            self.table_, self.planes_, self.offset_, self.transform_, self.cuts_, self.centroid_,
            self._readout, self.tree_,
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

    def _state(self) -> _HashState | None:
        """The hash's :class:`_HashState` now, read once per call; None: not fitted yet."""
        if self.config.normalize == "none":
            return _HashState(self.planes_, self._no_cuts)
        return self._hash_state

    def _fit_normalization(self, h: Tensor) -> None:
        """Fit ``offset_`` and ``transform_`` on the first written batch, once."""
        with self._lock:
            if self._hash_state is not None or h.shape[0] == 0:
                return
            mode = self.config.normalize
            if h.shape[0] < MIN_FIT_ROWS and mode != "none":
                log.warning(
                    "memory.normalize=%s is fitted on the first written batch, which has only %d "
                    "rows; the hash is fixed from them for the memory's life (write a larger "
                    "first batch, e.g. the recent labelled window, for evenly filled buckets)",
                    mode, h.shape[0],
                )
            if mode == "cosine":
                unit = F.normalize(h, dim=1)
                self.transform_ = self._principal_projector(unit)
                proj = self._project(self.transform_)
                z = unit @ proj
                self.cuts_ = self._cosine_cuts(z)
                if self._tree:
                    self.tree_ = self._fit_tree(z)
                self._hash_state = self._with_tree(_HashState(proj, self.cuts_))
                return
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
            transform = transform @ self._principal_projector((h - offset) @ transform)
            self.offset_ = offset
            self.transform_ = transform
            state = self._fold(offset, transform)
            if self._tree:  # on the normalised projections (h - offset) @ proj
                self.tree_ = self._fit_tree(h @ state.proj - state.thr)
            self._hash_state = self._with_tree(state)

    def _principal_projector(self, x: Tensor) -> Tensor:
        """``config.hash_rank``: the orthogonal projector onto ``x``'s top principal directions.

        ``(d, d)`` float32, ``V_r V_r^T`` for the ``r = hash_rank`` leading eigenvectors of
        ``x``'s covariance (computed in float64); the identity when ``hash_rank`` is 0 or at
        least the hidden dimension. Multiplying the planes by it projects each random plane
        onto that subspace: the bits then split the traffic along the directions it varies in.
        """
        d, rank = self.hidden_dim, self.config.hash_rank
        if rank == 0 or rank >= d or x.shape[0] < 2:
            return torch.eye(d, dtype=torch.float32)
        x64 = x.to(torch.float64)
        centred = x64 - x64.mean(dim=0)
        _, vecs = torch.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
        top = vecs[:, d - rank:]
        return (top @ top.T).to(torch.float32)

    def _cosine_cuts(self, z: Tensor) -> Tensor:
        """``normalize="cosine"``: the thresholds ``t_j`` at which the planes cut ``h / ||h||``.

        ``z`` is the first batch's ``(h / ||h||) @ projection``. Plane ``j`` cuts it at its own
        quantile level, drawn uniformly from ``[0.5 - cut_spread, 0.5 + cut_spread]`` with a
        generator seeded by ``config.seed`` (nearest-rank quantile of the batch's projections).
        """
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed + CUT_SEED_OFFSET)
        levels = 0.5 + cfg.cut_spread * (2.0 * torch.rand(z.shape[1], generator=gen) - 1.0)
        rank = (levels * (z.shape[0] - 1)).round().to(torch.int64)
        ordered = z.sort(dim=0).values
        return ordered[rank, torch.arange(z.shape[1])].contiguous()

    def _fit_tree(self, z: Tensor) -> Tensor:
        """``cuts="tree"``: the node thresholds on the first batch's normalised projections ``z``.

        See :func:`reloop.memory.estimator.fit_tree_cuts`: median cuts, no node cut below
        ``leaf_share`` of the batch nor below ``min_leaf_rows`` rows.
        """
        min_leaf = max(self.config.min_leaf_rows, round(self.config.leaf_share * z.shape[0]))
        return fit_tree_cuts(z, self.config.L, min_leaf)

    def _with_tree(self, state: _HashState) -> _HashState:
        """``state`` with the tree cuts (if any) in the units the hash compares against.

        The cosine hash compares ``h . w`` with ``||h|| t``, so the normalised thresholds are used
        as they are; the other normalisations compare ``h . w`` with ``offset . w + t``: each
        node's threshold gets its level's plane offset added.
        """
        if not self._tree:
            return state
        cfg = self.config
        tree = self.tree_
        depth = tree_depth(tree)
        if cfg.normalize != "cosine":  # node v's plane is k*L + its level, in array k
            tree = tree.clone()
            tree[:, 1:] += state.thr.view(cfg.K, cfg.L)[:, tree_node_levels(cfg.L)]
        return _HashState(
            state.proj, state.thr, tree.contiguous(), state.proj.T.contiguous(), depth
        )

    def _project(self, transform: Tensor) -> Tensor:
        """The planes seen through the normalisation's linear part: ``transform @ planes``."""
        return (transform @ self.planes_).contiguous()

    def _fold(self, offset: Tensor, transform: Tensor) -> _HashState:
        """The normalisation folded into the planes: ``(transform @ planes, offset @ that)``."""
        proj = self._project(transform)
        return _HashState(proj, (offset @ proj).contiguous())

    def _scratch(self, n: int) -> Tensor:
        """A float32 buffer of ``n`` elements private to the calling thread (grown on demand).

        The hash writes its ``(B, K*L)`` projection into it instead of allocating a fresh
        ``B x K*L`` tensor per call (3 MiB at B=4096, K=16, L=12). Per thread, so concurrent
        reads and writes never share one.
        """
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.numel() < n:
            buf = torch.empty(max(n, 1), dtype=torch.float32)
            self._local.buf = buf
        return buf[:n]

    def _hash(
        self, h: Tensor, state: _HashState, keep_projection: bool = False
    ) -> tuple[np.ndarray, Tensor | None]:
        """Flat table row of the query's bucket in every array, ``(B, K)`` int64 (numpy).

        Bit ``l`` of array ``k`` is ``x . planes[:, k*L + l] > t`` for the normalised
        ``x = (h - offset_) @ transform_`` (see :func:`reloop.memory.estimator.srp_bucket_ids`;
        ``t`` is the plane's cut, or with tree cuts its node's), computed from ``h @ proj``
        with ``state`` (a ``_state()`` read once by the caller): one matrix product into the
        thread's scratch buffer, then one compiled pass
        (:func:`reloop.memory.kernels.bucket_rows` / ``tree_rows``) for the bits and their
        packing. With ``keep_projection`` it also returns the normalised projection
        ``x @ planes`` less the plane cuts.
        """
        B, K, L = h.shape[0], self.config.K, self.config.L
        rows = np.empty((B, K), dtype=np.int64)
        cosine = self.config.normalize == "cosine" and self._hash_state is not None
        # cosine: bit j is (h / ||h||) . w_j > t_j, compared as h . w_j > ||h|| t_j
        norm = torch.linalg.vector_norm(h, dim=1) if cosine else None
        scale = norm.numpy() if cosine else _NO_SCALE
        tree = state.tree
        if keep_projection:
            z = h @ state.proj
            if tree is not None:
                tree_rows(z.T.contiguous().numpy(), tree.numpy(), scale, K, L, state.depth, rows)
            if cosine:
                z = z / norm.unsqueeze(1).clamp_min(1e-12)
            z = torch.sub(z, state.thr)
            if tree is None:
                bucket_rows(z.numpy(), self._no_cuts.numpy(), _NO_SCALE, K, L, rows)
            return rows, z
        buf = self._scratch(B * K * L)
        if tree is not None:  # the walk reads the projection plane by plane: compute it so
            zt = torch.mm(state.proj_t, h.T, out=buf.view(K * L, B))
            tree_rows(zt.numpy(), tree.numpy(), scale, K, L, state.depth, rows)
        else:
            z = torch.mm(h, state.proj, out=buf.view(B, K * L))
            bucket_rows(z.numpy(), state.thr.numpy(), scale, K, L, rows)
        return rows, None

    def _normalized_norm(self, h: Tensor) -> Tensor:
        """``||(h - offset_) @ transform_||`` per row, ``(B, 1)``: the centroid's normaliser."""
        if self.config.normalize == "cosine":  # the hash's input (h / ||h||) @ transform_
            x = F.normalize(h, dim=1) @ self.transform_
        elif self.config.normalize == "none":
            x = h
        else:
            x = (h - self.offset_) @ self.transform_
        return x.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def bucket_ids(self, h: Tensor) -> Tensor:
        """The bucket of every row of ``h`` in every array: ``(B, K)`` int64 in ``[0, 2**L)``.

        Before the first write fits the normalisation, ``h`` is hashed as it is.
        """
        h = check_hidden(h, self.hidden_dim)
        state = self._state() or _HashState(self.planes_, self._no_cuts)
        rows, _ = self._hash(h, state)
        return torch.from_numpy(rows) - torch.arange(self.config.K) * self.config.n_buckets

    # ------------------------------------------------------------------ write

    def write(self, h: Tensor, y: Tensor, y_base: Tensor) -> int:
        """Add a batch of labelled samples; returns how many passed the write filter.

        ``h`` ``(B, hidden_dim)`` hidden vectors, ``y`` ``(B,)`` 0/1 labels, ``y_base`` ``(B,)``
        the base model's probabilities for the same samples. O(K) per sample: only the ``B*K``
        buckets written are touched, whatever the table's size.
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

    def _readout_array(self) -> np.ndarray:
        """The readouts as the kernels take them (no rows when this similarity keeps none)."""
        if self._readout is None:
            return np.empty((0, 3), dtype=np.float32)
        return self._readout.numpy()

    def _refresh_all(self) -> None:
        """Recompute every bucket's readout from ``table_`` (caller holds the lock)."""
        if self._readout is not None:
            refresh_readouts(self.table_.numpy(), self._readout.numpy(), self._power,
                             self._mask_below)

    def _write_chunk(self, h: Tensor, y: Tensor, y_base: Tensor) -> None:
        B, K = h.shape[0], self.config.K
        if B == 0:
            return
        centroid = self.centroid_ is not None
        rows, z = self._hash(h, self._state(), keep_projection=centroid)
        if centroid:
            flat = torch.from_numpy(rows).view(-1)
            cz = (z / self._normalized_norm(h)).view(B * K, self.config.L)
        y_np, yb_np = y.numpy(), y_base.numpy()
        with self._lock:
            # the sums of the B*K buckets written, and their readouts, in one compiled pass
            scatter_write(rows, y_np, yb_np, self.table_.numpy(), self._readout_array(),
                          self._power, self._mask_below)
            if centroid:
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
        self, h: Tensor, y_base: Tensor, state: _HashState
    ) -> Tensor:
        """Query-independent bucket weights: sum the K weighted readouts (no softmax needed).

        :func:`reloop.memory.estimator.compensate_from_sums` on the summed readouts, computed
        in the same compiled pass as the gather (``gather_compensate``).
        """
        rows, _ = self._hash(h, state)
        out = np.empty(h.shape[0], dtype=np.float64)
        yb = y_base.numpy()
        with self._lock:  # gather the K weighted readouts of every query and compensate
            gather_compensate(rows, self._readout.numpy(), yb, self.config.gamma,
                              self.config.lam, out)
        return torch.from_numpy(out)

    def _compensate_general(
        self, h: Tensor, y_base: Tensor, state: _HashState
    ) -> Tensor:
        """Query-dependent similarities (or a tiny tau): per-neighbour softmax, Eq. 11-13."""
        cfg = self.config
        B, K = h.shape[0], cfg.K
        rows, z = self._hash(h, state, keep_projection=cfg.similarity == "centroid")
        flat = torch.from_numpy(rows).view(-1)
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
            self._refresh_all()
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
            if self.config.normalize == "cosine":
                tensors["cuts"] = self.cuts_.clone()
            if self.tree_ is not None:
                tensors["tree"] = self.tree_.clone()
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
        if cfg.normalize == "cosine":
            expected["cuts"] = self.cuts_
        if self.tree_ is not None:
            expected["tree"] = self.tree_
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
        if self.tree_ is not None:
            self.tree_ = tensors["tree"].contiguous()
        if cfg.normalize == "cosine":
            self.cuts_ = tensors["cuts"].contiguous()
            if meta.get("fitted"):
                self._hash_state = self._with_tree(
                    _HashState(self._project(self.transform_), self.cuts_)
                )
        elif meta.get("fitted") and cfg.normalize != "none":
            self._hash_state = self._with_tree(self._fold(self.offset_, self.transform_))
        self.table_ = tensors["table"].contiguous()
        self._refresh_all()
        if self.centroid_ is not None:
            self.centroid_ = tensors["centroid"].contiguous()
