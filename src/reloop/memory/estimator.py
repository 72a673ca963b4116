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

import torch
from torch import Tensor

__all__ = [
    "compensate",
    "compensate_from_sums",
    "make_planes",
    "srp_bits",
    "srp_bucket_ids",
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
    :func:`compensate` in another order of operations, used by the sketch when ``s_i`` depends on
    the bucket only (it then stores ``w``, ``w y``, ``w y_base`` per bucket). A query with
    ``w_sum = 0`` (no valid neighbour) keeps ``y_base``.
    """
    has_any = w_sum > 0
    denom = torch.where(has_any, w_sum, torch.ones_like(w_sum))
    y_bar = wy_sum / denom
    y_bar_base = wyb_sum / denom
    y_err = gamma * (y_bar - y_base) + (1.0 - gamma) * (y_bar - y_bar_base)
    y_err = torch.where(has_any, y_err, torch.zeros_like(y_err))
    return (y_base + lam * y_err).clamp(0.0, 1.0)
