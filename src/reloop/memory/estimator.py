"""The pure math of ReLoop2: sign-random-projection hashing and the compensation equations.

Every function takes tensors and returns tensors, with no state; the memories in
:mod:`reloop.memory.sketch` and :mod:`reloop.memory.exact` only decide *which* neighbours feed
:func:`compensate`.

Equations (ReLoop2, KDD 2023; numbering of the paper):

* Eq. 12, attention over the k retrieved neighbours: ``a_i = softmax_i(s_i / tau)``.
* Eq. 11, attended readouts: ``y_bar = sum_i a_i y_i`` and ``y_bar_base = sum_i a_i y_base_i``.
* Eq. 13, error estimate (reconstructed from the text, the image is lost):
  ``y_err = gamma * (y_bar - y_base) + (1 - gamma) * (y_bar - y_bar_base)``.
* Eq. 9, compensation: ``y_pred = clamp(y_base + lambda * y_err, 0, 1)``.

Neighbours that do not exist (an empty bucket, a bucket below ``min_count``) are masked out of the
softmax; a query with no valid neighbour at all gets ``y_err = 0``, so ``y_pred = y_base``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "compensate",
    "compensate_from_sums",
    "fit_tree_cuts",
    "make_planes",
    "srp_bits",
    "srp_bucket_ids",
    "tree_bucket_ids",
    "tree_depth",
    "tree_node_levels",
]


def make_planes(dim: int, K: int, L: int, seed: int) -> Tensor:
    """The ``(dim, K*L)`` Gaussian hyperplane matrix; column ``k*L + l`` is bit ``l`` of array k.

    Drawn from a private ``torch.Generator`` seeded with ``seed``, so the global RNG is untouched
    and the same seed gives the same planes (and so the same buckets).
    """
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(dim, K * L, generator=gen, dtype=torch.float32)


def srp_bits(h: Tensor, planes: Tensor) -> Tensor:
    """Sign bits ``w^T h > 0`` as a bool tensor ``(B, K*L)``; ``h @ planes`` is the projection."""
    return (h @ planes) > 0


def srp_bucket_ids(h: Tensor, planes: Tensor, L: int) -> Tensor:
    """Bucket id of every row of ``h`` in every array: ``(B, K)`` int64 in ``[0, 2**L)``.

    Bit ``l`` of array ``k``'s id is ``1`` when ``h . planes[:, k*L + l] > 0`` (a zero projection
    counts as ``0``). Reference implementation with integer shifts, valid for every ``L <= 62``;
    :class:`~reloop.memory.ErrorMemory` computes the same ids as the product of the bits with
    ``2**l`` in floating point (one matrix-vector product), tested equal to this.
    """
    bits = srp_bits(h, planes)
    B = bits.shape[0]
    K = bits.shape[1] // L
    shifts = torch.arange(L, dtype=torch.int64)
    return (bits.view(B, K, L).to(torch.int64) << shifts).sum(-1)


def fit_tree_cuts(z: Tensor, L: int, min_leaf: int) -> Tensor:
    """Per-node thresholds of the "tree" cuts, fitted on a batch's projections ``z`` ``(n, K*L)``.

    Array ``k`` decides its bits in order: bit ``l`` is ``z[:, k*L + l] > T[k, node]``, where
    ``node`` is the heap index of the bits before it (the root is 1, node ``v``'s children are
    ``2v`` (bit 0) and ``2v + 1`` (bit 1)); the leaf ``node - 2**L`` is the bucket. A node reached
    by ``m >= 2 * min_leaf`` rows of ``z`` is cut at their median: the threshold is the midpoint
    of the ``m // 2``-th and ``m // 2 + 1``-th smallest projections, so ``m // 2`` rows take bit
    0. Smaller nodes are not cut (threshold ``+inf``, every row takes bit 0), so every leaf the
    batch reaches holds at least ``min_leaf`` of its rows (ties apart), and the tree is
    balanced: it cuts ``floor(log2(n / min_leaf))`` levels deep at most.

    Returns ``T`` ``(K, 2**L)`` float32; column 0 is unused (``+inf``).
    """
    n, KL = z.shape
    K = KL // L
    zz = z.detach().to(torch.float64).numpy().reshape(n, K, L)
    tree = np.full((K, 1 << L), np.inf)
    for k in range(K):
        node = np.ones(n, dtype=np.int64)
        for level in range(L):
            vals = zz[:, k, level]
            order = np.lexsort((vals, node))  # rows grouped by node, ascending within
            sorted_node, sorted_vals = node[order], vals[order]
            ids = np.arange(1 << level, 1 << (level + 1))
            start = np.searchsorted(sorted_node, ids, side="left")
            m = np.searchsorted(sorted_node, ids, side="right") - start
            cut = m >= 2 * min_leaf
            if not cut.any():
                break
            mid = (start + m // 2)[cut]
            tree[k, ids[cut]] = 0.5 * (sorted_vals[mid - 1] + sorted_vals[mid])
            node = 2 * node + (vals > tree[k, node])
    return torch.from_numpy(tree.astype(np.float32))


def tree_node_levels(L: int) -> Tensor:
    """The level of every tree node ``v = 1 .. 2**L - 1`` (heap order): ``floor(log2 v)``."""
    return torch.repeat_interleave(torch.arange(L), 1 << torch.arange(L))


def tree_depth(tree: Tensor) -> int:
    """Levels of a :func:`fit_tree_cuts` tree that cut at least one node (0 if none does)."""
    cut = torch.isfinite(tree[:, 1:]).any(dim=0)  # node v = 1..2**L - 1
    if not bool(cut.any()):
        return 0
    L = tree.shape[1].bit_length() - 1
    return int(tree_node_levels(L)[cut].max()) + 1


def tree_bucket_ids(z: Tensor, tree: Tensor, L: int) -> Tensor:
    """Bucket id of every row in every array under "tree" cuts: ``(B, K)`` int64.

    Reference implementation of the walk :func:`fit_tree_cuts` describes (``z`` ``(B, K*L)``
    projections, ``tree`` ``(K, 2**L)`` node thresholds), down the ``D = tree_depth(tree)``
    levels that cut (deeper ones give bit 0 only): the id is the node reached at level ``D``
    less ``2**D``, in ``[0, 2**D)``, so the buckets in use are the first ``2**D`` of each array.
    The first bit decided is the id's most significant.
    """
    B = z.shape[0]
    K = tree.shape[0]
    zz = z.view(B, K, L)
    node = torch.ones(B, K, dtype=torch.int64)
    arrays = torch.arange(K).expand(B, K)
    depth = tree_depth(tree)
    for level in range(depth):
        node = 2 * node + (zz[:, :, level] > tree[arrays, node]).to(torch.int64)
    return node - (1 << depth)


def compensate(
    s: Tensor,
    valid: Tensor,
    y_nb: Tensor,
    y_base_nb: Tensor,
    y_base: Tensor,
    *,
    tau: float,
    gamma: float,
    lam: float,
) -> Tensor:
    """Eq. 9, 11-13 for a batch: neighbours ``(B, k)`` and the query's base prediction ``(B,)``.

    ``s``: similarities; ``valid``: bool mask of neighbours that exist; ``y_nb``/``y_base_nb``:
    each neighbour's label and base prediction (bucket readouts for the sketch). Values of masked
    neighbours are ignored (they may be anything finite). Returns ``y_pred`` ``(B,)``.
    """
    has_any = valid.any(dim=-1)
    logits = torch.where(valid, s / tau, torch.full_like(s, float("-inf")))
    # rows without any valid neighbour would softmax to NaN: give them finite logits; their
    # estimate is discarded below
    logits = torch.where(has_any.unsqueeze(-1), logits, torch.zeros_like(logits))
    a = torch.softmax(logits, dim=-1)
    y_nb = torch.where(valid, y_nb, torch.zeros_like(y_nb))
    y_base_nb = torch.where(valid, y_base_nb, torch.zeros_like(y_base_nb))
    y_bar = (a * y_nb).sum(-1)
    y_bar_base = (a * y_base_nb).sum(-1)
    y_err = gamma * (y_bar - y_base) + (1.0 - gamma) * (y_bar - y_bar_base)
    y_err = torch.where(has_any, y_err, torch.zeros_like(y_err))
    return (y_base + lam * y_err).clamp(0.0, 1.0)


def compensate_from_sums(
    w_sum: Tensor,
    wy_sum: Tensor,
    wyb_sum: Tensor,
    y_base: Tensor,
    *,
    gamma: float,
    lam: float,
) -> Tensor:
    """Eq. 9, 11 and 13 when the attention weights are known up to a common factor.

    With unnormalised weights ``w_i = valid_i * exp(s_i / tau)`` (Eq. 12 before normalising),
    ``w_sum = sum_i w_i``, ``wy_sum = sum_i w_i y_i`` and ``wyb_sum = sum_i w_i y_base_i``, the
    attended readouts are ``y_bar = wy_sum / w_sum`` and ``y_bar_base = wyb_sum / w_sum``; this is
    :func:`compensate` in another order of operations, for when ``s_i`` depends on the bucket
    only (the sketch then stores ``w``, ``w y``, ``w y_base`` per bucket); the reference of its
    compiled read, :func:`reloop.memory.kernels.gather_compensate`. A query with
    ``w_sum = 0`` (no valid neighbour) keeps ``y_base``.
    """
    has_any = w_sum > 0
    denom = torch.where(has_any, w_sum, torch.ones_like(w_sum))
    y_bar = wy_sum / denom
    y_bar_base = wyb_sum / denom
    y_err = gamma * (y_bar - y_base) + (1.0 - gamma) * (y_bar - y_bar_base)
    y_err = torch.where(has_any, y_err, torch.zeros_like(y_err))
    return (y_base + lam * y_err).clamp(0.0, 1.0)
