"""The pure math of ReLoop2: the hash's planes and tree cuts, and the compensation equations.

Every function takes tensors and returns tensors, with no state; the memories in
:mod:`reloop.memory.sketch` and :mod:`reloop.memory.exact` only decide *which* neighbours feed
the equations.

Equations (ReLoop2, KDD 2023; numbering of the paper):

* Eq. 12, attention over the k retrieved neighbours: ``a_i = softmax_i(s_i)`` (the paper's
  temperature is 1 here; the sketch's ``s_k = log count_k`` then pools its buckets).
* Eq. 11, attended readouts: ``y_bar = sum_i a_i y_i`` and ``y_bar_base = sum_i a_i y_base_i``.
* Eq. 13, error estimate (reconstructed from the text, the image is lost):
  ``y_err = gamma * (y_bar - y_base) + (1 - gamma) * (y_bar - y_bar_base)``.
* Eq. 9, compensation: ``y_pred = clamp(y_base + lambda * y_err, 0, 1)``.

Neighbours that do not exist (an empty bucket) are masked out of the softmax; a query with no
valid neighbour at all gets ``y_err = 0``, so ``y_pred = y_base``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["compensate", "fit_tree_cuts", "make_planes", "tree_depth"]


def make_planes(dim: int, K: int, L: int, seed: int) -> Tensor:
    """The ``(dim, K*L)`` Gaussian hyperplane matrix; column ``k*L + l`` is bit ``l`` of array k.

    Drawn from a private ``torch.Generator`` seeded with ``seed``, so the global RNG is untouched
    and the same seed gives the same planes (and so the same buckets).
    """
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(dim, K * L, generator=gen, dtype=torch.float32)


def fit_tree_cuts(z: Tensor, L: int, min_leaf: int) -> Tensor:
    """Per-node thresholds of the tree cuts, fitted on a batch's projections ``z`` ``(n, K*L)``.

    Array ``k`` decides its bits in order: bit ``l`` is ``z[:, k*L + l] > T[k, node]``, where
    ``node`` is the heap index of the bits before it (the root is 1, node ``v``'s children are
    ``2v`` (bit 0) and ``2v + 1`` (bit 1)); the leaf ``node - 2**L`` is the bucket. A node reached
    by ``m >= 2 * min_leaf`` rows of ``z`` is cut at their median: the threshold is the midpoint
    of the ``m // 2``-th and ``m // 2 + 1``-th smallest projections, so ``m // 2`` rows take bit
    0. Smaller nodes are not cut (threshold ``+inf``, every row takes bit 0), so every leaf the
    batch reaches holds at least ``min_leaf`` of its rows (ties apart), and the tree is
    balanced: it cuts ``floor(log2(n / min_leaf))`` levels deep at most.

    Returns ``T`` ``(K, 2**L)`` float32; column 0 is unused (``+inf``). The walk down this tree
    is :func:`reloop.memory.kernels.tree_rows`.
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


def tree_depth(tree: Tensor) -> int:
    """Levels of a :func:`fit_tree_cuts` tree that cut at least one node (0 if none does).

    Node ``v = 1 .. 2**L - 1`` (heap order) is on level ``floor(log2 v)``.
    """
    L = tree.shape[1].bit_length() - 1
    levels = torch.repeat_interleave(torch.arange(L), 1 << torch.arange(L))
    cut = torch.isfinite(tree[:, 1:]).any(dim=0)
    if not bool(cut.any()):
        return 0
    return int(levels[cut].max()) + 1


def compensate(
    s: Tensor,
    valid: Tensor,
    y_nb: Tensor,
    y_base_nb: Tensor,
    y_base: Tensor,
    *,
    gamma: float,
    lam: float,
) -> Tensor:
    """Eq. 9, 11-13 for a batch: neighbours ``(B, k)`` and the query's base prediction ``(B,)``.

    ``s``: similarities (the attention logits); ``valid``: bool mask of neighbours that exist;
    ``y_nb``/``y_base_nb``: each neighbour's label and base prediction. Values of masked
    neighbours are ignored (they may be anything finite). Returns ``y_pred`` ``(B,)``.
    :class:`~reloop.memory.ExactMemory` reads with it; the sketch's pooled read
    (:func:`reloop.memory.kernels.gather_compensate`) is the same with ``s_k = log count_k``.
    """
    has_any = valid.any(dim=-1)
    logits = torch.where(valid, s, torch.full_like(s, float("-inf")))
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
