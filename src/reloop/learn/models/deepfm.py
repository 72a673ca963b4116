"""DeepFM (Guo et al., 2017)."""

from __future__ import annotations

from torch import Tensor, nn

from reloop.config import ModelConfig
from reloop.learn.models.base import Backbone
from reloop.learn.models.layers import MLP, FeatureEmbedding, FirstOrder, fm_interaction


class DeepFM(Backbone):
    """``logit = LR(x) + FM(emb) + w . MLP(emb)``, the FM and MLP sharing one embedding.

    Hidden vector: the MLP's last hidden layer.
    """

    def __init__(self, cardinalities: list[int], cfg: ModelConfig) -> None:
        super().__init__()
        self.linear = FirstOrder(cardinalities)
        self.embedding = FeatureEmbedding(cardinalities, cfg.embedding_dim, cfg.embedding_init_std)
        in_dim = len(cardinalities) * cfg.embedding_dim
        self.mlp = MLP(in_dim, cfg.mlp_hidden, cfg.dropout, cfg.batch_norm)
        self.out = nn.Linear(self.mlp.out_dim, 1)
        self.hidden_dim = self.mlp.out_dim

    def forward(self, indices: Tensor, values: Tensor | None = None) -> tuple[Tensor, Tensor]:
        emb = self.embedding(indices, values)
        hidden = self.mlp(emb.flatten(1))
        logit = (
            self.linear(indices, values).sum(-1)
            + self.linear.bias
            + fm_interaction(emb).sum(-1)
            + self.out(hidden).squeeze(-1)
        )
        return logit, hidden
