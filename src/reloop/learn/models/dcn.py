"""Deep & Cross Network (Wang et al., 2017)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reloop.config import ModelConfig
from reloop.learn.models.base import Backbone
from reloop.learn.models.layers import MLP, CrossNet, FeatureEmbedding


class DCN(Backbone):
    """Cross network and MLP in parallel over the flat embedding, joined by one linear layer.

    Hidden vector: ``concat(cross_out, mlp_out)``, the input of the output layer.
    """

    def __init__(self, cardinalities: list[int], cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(cardinalities, cfg.embedding_dim, cfg.embedding_init_std)
        in_dim = len(cardinalities) * cfg.embedding_dim
        self.cross = CrossNet(in_dim, cfg.cross_layers)
        self.mlp = MLP(in_dim, cfg.mlp_hidden, cfg.dropout, cfg.batch_norm)
        self.hidden_dim = in_dim + self.mlp.out_dim
        self.out = nn.Linear(self.hidden_dim, 1)

    def forward(self, indices: Tensor, values: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x0 = self.embedding(indices, values).flatten(1)
        hidden = torch.cat([self.cross(x0), self.mlp(x0)], dim=-1)
        return self.out(hidden).squeeze(-1), hidden
