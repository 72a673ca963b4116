"""Factorization machine (Rendle, 2010)."""

from __future__ import annotations

import torch
from torch import Tensor

from reloop.config import ModelConfig
from reloop.learn.models.base import Backbone
from reloop.learn.models.layers import FeatureEmbedding, FirstOrder, fm_interaction


class FM(Backbone):
    """``logit = b + sum_f w_f + sum_{i<j} <v_i, v_j>``.

    Hidden vector: ``[w_1..w_F, p_1..p_D]``, the first-order contributions followed by the
    bi-interaction vector ``p`` (whose sum is the pairwise term), so ``logit = b + hidden.sum()``.
    """

    def __init__(self, cardinalities: list[int], cfg: ModelConfig) -> None:
        super().__init__()
        self.linear = FirstOrder(cardinalities)
        self.embedding = FeatureEmbedding(cardinalities, cfg.embedding_dim, cfg.embedding_init_std)
        self.hidden_dim = len(cardinalities) + cfg.embedding_dim

    def forward(self, indices: Tensor, values: Tensor | None = None) -> tuple[Tensor, Tensor]:
        hidden = torch.cat(
            [self.linear(indices, values), fm_interaction(self.embedding(indices, values))], dim=-1
        )
        return hidden.sum(-1) + self.linear.bias, hidden
