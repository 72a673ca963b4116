"""Logistic regression."""

from __future__ import annotations

from torch import Tensor

from reloop.config import ModelConfig
from reloop.learn.models.base import Backbone
from reloop.learn.models.layers import FirstOrder


class LR(Backbone):
    """``logit = b + sum_f w_f``.

    Hidden vector: the per-field contributions ``w_f`` (shape ``(B, F)``); the logit is their sum
    plus the bias, so two queries are close exactly when their fields contribute alike.
    """

    def __init__(self, cardinalities: list[int], cfg: ModelConfig) -> None:
        super().__init__()
        self.linear = FirstOrder(cardinalities)
        self.hidden_dim = len(cardinalities)

    def forward(self, indices: Tensor, values: Tensor | None = None) -> tuple[Tensor, Tensor]:
        hidden = self.linear(indices, values)
        return hidden.sum(-1) + self.linear.bias, hidden
