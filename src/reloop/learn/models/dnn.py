"""Plain deep network over concatenated field embeddings."""

from __future__ import annotations

from torch import Tensor, nn

from reloop.config import ModelConfig
from reloop.learn.models.base import Backbone
from reloop.learn.models.layers import MLP, FeatureEmbedding


class DNN(Backbone):
    """``logit = w . MLP(concat(v_1..v_F))``; hidden vector: the MLP's last hidden layer."""

    def __init__(self, cardinalities: list[int], cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(cardinalities, cfg.embedding_dim, cfg.embedding_init_std)
        in_dim = len(cardinalities) * cfg.embedding_dim
        self.mlp = MLP(in_dim, cfg.mlp_hidden, cfg.dropout, cfg.batch_norm)
        self.out = nn.Linear(self.mlp.out_dim, 1)
        self.hidden_dim = self.mlp.out_dim

    def forward(self, indices: Tensor, values: Tensor | None = None) -> tuple[Tensor, Tensor]:
        hidden = self.mlp(self.embedding(indices, values).flatten(1))
        return self.out(hidden).squeeze(-1), hidden
