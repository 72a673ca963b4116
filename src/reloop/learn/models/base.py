"""The contract every backbone follows."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["Backbone"]


class Backbone(nn.Module):
    """A CTR model: ``forward(indices, values) -> (logits (B,), hidden (B, hidden_dim))``.

    ``hidden`` is the representation ReLoop2's error memory hashes: the last hidden layer, or for
    the shallow models (LR, FM) the documented equivalent. Probabilities are ``sigmoid(logits)``,
    applied at the edge, never inside the model.
    """

    hidden_dim: int

    def forward(self, indices: Tensor, values: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError
