"""Training losses as pure functions over tensors.

Notation (ReLoop, SIGIR 2022, Eq. 2-4): ``y`` is the click label in {0, 1}, ``y_hat`` the
probability predicted by the model being trained, and ``y_last`` the probability the previous
model version gave the same impression (in production: the score serving logged).

    L_sc = y * max(y_last - y_hat, 0) + (1 - y) * max(y_hat - y_last, 0)     (Eq. 2)
    L_ce = -y log y_hat - (1 - y) log(1 - y_hat)                             (Eq. 3)
    L    = alpha * L_sc + (1 - alpha) * L_ce                                 (Eq. 4)

The knowledge-distillation baseline of the paper replaces ``L_sc`` by the cross-entropy against the
soft label ``y_last``.

Two forms exist for each loss: the public probability form (``reloop_loss(y_hat, ...)``), and a
``*_with_logits`` form the trainer uses, which computes the cross-entropy terms from logits for
numerical stability. Both return the mean over the batch as a scalar tensor.

The probability forms are safe at probabilities of exactly 0 and 1: the cross-entropy uses
:func:`torch.nn.functional.binary_cross_entropy`, which clamps each log term at -100, so the loss
and its gradient stay finite.

Two optional per-row tensors refine the mixture without changing its meaning:

* ``mask`` (0/1): where it is 0, ``y_last`` is not a previous model's prediction (the bootstrap
  policy logged a constant), so that row's extra term is dropped and the row is trained on
  cross-entropy alone: ``L_i = a_i * extra_i + (1 - a_i) * ce_i`` with ``a_i = alpha * mask_i``.
* ``weight`` (>= 0): the batch loss is the weighted mean ``sum(w_i L_i) / sum(w_i)`` (recency
  weighting of older periods in a sliding training window).

With neither given, every loss is the plain mean of Eq. 4.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LOSSES",
    "LossFn",
    "ce_loss",
    "ce_loss_with_logits",
    "check_alpha",
    "kd_loss",
    "kd_loss_with_logits",
    "reloop_loss",
    "reloop_loss_with_logits",
    "self_correction",
]


def check_alpha(alpha: float) -> float:
    """Return ``alpha`` as a float, or raise naming it when it is outside [0, 1]."""
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:  # also rejects NaN
        raise ValueError(f"alpha={alpha!r} is out of range; expected a value in [0, 1]")
    return alpha


def self_correction(y_hat: Tensor, y: Tensor, y_last: Tensor) -> Tensor:
    """Per-sample self-correction term of Eq. 2 (no reduction).

    Zero exactly where the new prediction is at least as good as ``y_last``: for a click
    (``y=1``) when ``y_hat >= y_last``, for a non-click when ``y_hat <= y_last``. Otherwise it is
    the linear shortfall ``|y_hat - y_last|``.
    """
    return y * torch.relu(y_last - y_hat) + (1.0 - y) * torch.relu(y_hat - y_last)


def _mix(alpha: float, extra: Tensor, ce: Tensor) -> Tensor:
    if alpha == 0.0:  # exactly cross-entropy, no 0 * inf surprises
        return ce
    return alpha * extra + (1.0 - alpha) * ce


def _reduce(rows: Tensor, weight: Tensor | None) -> Tensor:
    if weight is None:
        return rows.mean()
    total = weight.sum()
    if not total > 0:
        raise ValueError("the sample weights of a batch sum to zero; every weight must be > 0")
    return (weight * rows).sum() / total


#: ``term(reduction)``: a loss term as a batch mean (``"mean"``) or per row (``"none"``).
Term = Callable[[str], Tensor]


def _mixture(alpha: float, extra: Term, ce: Term, mask: Tensor | None,
             weight: Tensor | None) -> Tensor:
    """``alpha * extra + (1 - alpha) * ce``: batch means when neither ``mask`` nor ``weight`` is
    given, else per row with ``a_i = alpha * mask_i`` and the (weighted) mean over the batch."""
    alpha = check_alpha(alpha)
    if alpha == 0.0:  # exactly cross-entropy, no 0 * inf surprises
        return ce("mean") if weight is None else _reduce(ce("none"), weight)
    if mask is None and weight is None:
        return _mix(alpha, extra("mean"), ce("mean"))
    a = alpha if mask is None else alpha * mask
    return _reduce(a * extra("none") + (1.0 - a) * ce("none"), weight)


def _mean_or_rows(rows: Tensor, reduction: str) -> Tensor:
    return rows.mean() if reduction == "mean" else rows


# ---- probability forms (public API) ---------------------------------------------------------


def ce_loss(y_hat: Tensor, y: Tensor, y_last: Tensor | None = None, alpha: float = 0.0) -> Tensor:
    """Mean binary cross-entropy (Eq. 3). ``y_last`` and ``alpha`` are accepted and ignored."""
    return F.binary_cross_entropy(y_hat, y)


def reloop_loss(
    y_hat: Tensor,
    y: Tensor,
    y_last: Tensor,
    alpha: float,
    *,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
) -> Tensor:
    """Mean ReLoop loss, Eq. 4: ``alpha * L_sc + (1 - alpha) * L_ce`` over probabilities."""
    return _mixture(
        alpha,
        lambda r: _mean_or_rows(self_correction(y_hat, y, y_last), r),
        lambda r: F.binary_cross_entropy(y_hat, y, reduction=r),
        mask, weight,
    )


def kd_loss(
    y_hat: Tensor,
    y: Tensor,
    y_last: Tensor,
    alpha: float,
    *,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
) -> Tensor:
    """Mean KD baseline: ``alpha * CE(y_hat, y_last) + (1 - alpha) * CE(y_hat, y)``."""
    return _mixture(
        alpha,
        lambda r: F.binary_cross_entropy(y_hat, y_last, reduction=r),
        lambda r: F.binary_cross_entropy(y_hat, y, reduction=r),
        mask, weight,
    )


# ---- logit forms (used by the trainer) -------------------------------------------------------


def ce_loss_with_logits(
    logits: Tensor,
    y: Tensor,
    y_last: Tensor | None = None,
    alpha: float = 0.0,
    *,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
) -> Tensor:
    """Mean binary cross-entropy computed from logits (weighted when ``weight`` is given)."""
    if weight is None:
        return F.binary_cross_entropy_with_logits(logits, y)
    return _reduce(F.binary_cross_entropy_with_logits(logits, y, reduction="none"), weight)


def reloop_loss_with_logits(
    logits: Tensor,
    y: Tensor,
    y_last: Tensor,
    alpha: float,
    *,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
) -> Tensor:
    """:func:`reloop_loss` computed from logits (same value, stable cross-entropy)."""
    return _mixture(
        alpha,
        lambda r: _mean_or_rows(self_correction(torch.sigmoid(logits), y, y_last), r),
        lambda r: F.binary_cross_entropy_with_logits(logits, y, reduction=r),
        mask, weight,
    )


def kd_loss_with_logits(
    logits: Tensor,
    y: Tensor,
    y_last: Tensor,
    alpha: float,
    *,
    mask: Tensor | None = None,
    weight: Tensor | None = None,
) -> Tensor:
    """:func:`kd_loss` computed from logits."""
    return _mixture(
        alpha,
        lambda r: F.binary_cross_entropy_with_logits(logits, y_last, reduction=r),
        lambda r: F.binary_cross_entropy_with_logits(logits, y, reduction=r),
        mask, weight,
    )


LossFn = Callable[..., Tensor]
"""``fn(logits, y, y_last, alpha, *, mask=None, weight=None) -> scalar``."""

#: Losses the trainer can use, by config name (``train.loss``), in their logit form.
LOSSES: dict[str, LossFn] = {
    "ce": ce_loss_with_logits,
    "kd": kd_loss_with_logits,
    "reloop": reloop_loss_with_logits,
}

#: Losses that read the ``y_last`` column.
NEEDS_Y_LAST = frozenset({"kd", "reloop"})


def get_loss(name: str) -> LossFn:
    """Look a loss up by name, raising an error that names the parameter when it is unknown."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(
            f"loss={name!r} is not supported; expected one of {sorted(LOSSES)}"
        ) from None
