"""DCN-V2 (Wang et al., 2021), with the paper's parallel and stacked structures."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reloop.config import ModelConfig
from reloop.learn.models.base import Backbone
from reloop.learn.models.layers import MLP, CrossNetV2, FeatureEmbedding


class DCNv2(Backbone):
    """Full-rank cross network with an MLP, ``parallel`` (default) or ``stacked``.

    Hidden vector: the input of the output layer: ``concat(cross_out, mlp_out)`` when parallel,
    ``MLP(cross_out)`` when stacked.
    """

    def __init__(self, cardinalities: list[int], cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(cardinalities, cfg.embedding_dim, cfg.embedding_init_std)
        in_dim = len(cardinalities) * cfg.embedding_dim
        self.cross = CrossNetV2(in_dim, cfg.cross_layers)
        self.mlp = MLP(in_dim, cfg.mlp_hidden, cfg.dropout, cfg.batch_norm)
        self.stacked = cfg.dcnv2_structure == "stacked"
        self.hidden_dim = self.mlp.out_dim if self.stacked else in_dim + self.mlp.out_dim
        self.out = nn.Linear(self.hidden_dim, 1)

    def forward(self, indices: Tensor, values: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x0 = self.embedding(indices, values).flatten(1)
        if self.stacked:
            hidden = self.mlp(self.cross(x0))
        else:
            hidden = torch.cat([self.cross(x0), self.mlp(x0)], dim=-1)
        return self.out(hidden).squeeze(-1), hidden
