"""Input checks shared by the memories. Each error names the argument and what is wrong."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["check_hidden", "check_labels", "check_probs"]


def _as_tensor(x: object, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach()
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a tensor or array, got {type(x).__name__}: {err}"
        ) from None


def check_hidden(h: object, dim: int) -> Tensor:
    """``h`` as a contiguous float32 ``(B, dim)`` tensor with only finite values."""
    t = _as_tensor(h, "h")
    if t.ndim != 2:
        raise ValueError(f"h must be a 2-D (batch, hidden_dim) tensor, got shape {tuple(t.shape)}")
    if t.shape[1] != dim:
        raise ValueError(
            f"h has hidden dimension {t.shape[1]}, but this memory was built for hidden_dim={dim}"
        )
    if not t.is_floating_point():
        raise TypeError(f"h must be a floating-point tensor, got {t.dtype}")
    t = t.to(torch.float32).contiguous()
    # one cheap reduction first; the exact count only when something is wrong
    if t.numel() and not bool(torch.isfinite(t.sum())):
        bad = ~torch.isfinite(t)
        n_nan = int(torch.isnan(t).sum())
        n_bad = int(bad.sum())
        if n_bad:
            rows = int(bad.any(dim=1).sum())
            raise ValueError(
                f"h holds {n_bad} non-finite values ({n_nan} NaN) in {rows} rows; hidden vectors "
                "must be finite"
            )
    return t


def check_probs(p: object, n: int, name: str = "y_base") -> Tensor:
    """``p`` as a float64 ``(n,)`` tensor of probabilities in [0, 1]."""
    t = _as_tensor(p, name)
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match h, got {tuple(t.shape)}")
    if t.is_complex():
        raise TypeError(f"{name} must be real-valued, got {t.dtype}")
    t = t.to(torch.float64)
    if bool(((t >= 0.0) & (t <= 1.0)).all()):  # NaN fails both comparisons
        return t
    n_nan = int(torch.isnan(t).sum())
    if n_nan:
        raise ValueError(f"{name} holds {n_nan} NaN values; base predictions must be probabilities")
    out = (t < 0.0) | (t > 1.0)
    if bool(out.any()):
        raise ValueError(
            f"{name} must hold probabilities in [0, 1]; {int(out.sum())} values are outside, "
            f"e.g. {t[out][:3].tolist()}"
        )
    return t


def check_labels(y: object, n: int) -> Tensor:
    """``y`` as a float64 ``(n,)`` tensor of 0/1 labels."""
    t = _as_tensor(y, "y")
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"y must have shape ({n},) to match h, got {tuple(t.shape)}")
    t = t.to(torch.float64)
    if bool(((t == 0.0) | (t == 1.0)).all()):
        return t
    bad = (t != 0.0) & (t != 1.0)
    if bool(bad.any()):
        raise ValueError(
            f"labels y must be 0 or 1; {int(bad.sum())} values are not, e.g. {t[bad][:3].tolist()}"
        )
    return t
