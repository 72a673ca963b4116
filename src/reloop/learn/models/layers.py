"""Shared layers the backbones are composed from.

Only :class:`FeatureEmbedding` and :class:`FirstOrder` know about fields; every other layer takes
and returns plain tensors: ``(B, F, D)`` field embeddings or ``(B, D)`` vectors.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MLP", "CrossNet", "CrossNetV2", "FeatureEmbedding", "FirstOrder", "fm_interaction"]


class FeatureEmbedding(nn.Module):
    """All fields' embeddings in one table, looked up in a single call.

    Field ``j`` owns rows ``offsets[j] .. offsets[j] + cardinalities[j] - 1``. ``values``, when
    given, scales each field's vector (normalised numeric fields); categorical fields carry 1.
    """

    def __init__(self, cardinalities: list[int], dim: int, init_std: float = 1e-4) -> None:
        super().__init__()
        offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.table = nn.Embedding(sum(cardinalities), dim)
        nn.init.normal_(self.table.weight, mean=0.0, std=init_std)

    def forward(self, indices: Tensor, values: Tensor | None = None) -> Tensor:
        emb = self.table(indices + self.offsets)
        return emb if values is None else emb * values.unsqueeze(-1)


class FirstOrder(nn.Module):
    """Logistic-regression term: one weight per feature value, plus a global bias.

    Returns the per-field contributions ``(B, F)``; the first-order logit is their sum plus
    :attr:`bias`.
    """

    def __init__(self, cardinalities: list[int]) -> None:
        super().__init__()
        self.weights = FeatureEmbedding(cardinalities, 1, init_std=1e-4)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, indices: Tensor, values: Tensor | None = None) -> Tensor:
        return self.weights(indices, values).squeeze(-1)


def fm_interaction(emb: Tensor) -> Tensor:
    """FM bi-interaction vector ``0.5 * ((sum_f v_f)^2 - sum_f v_f^2)`` of shape ``(B, D)``.

    Its sum over ``D`` is the FM second-order term ``sum_{i<j} <v_i, v_j>``.
    """
    square_of_sum = emb.sum(dim=1).pow(2)
    sum_of_square = emb.pow(2).sum(dim=1)
    return 0.5 * (square_of_sum - sum_of_square)


class MLP(nn.Module):
    """Linear -> [BatchNorm] -> ReLU -> [Dropout] blocks; with no hidden sizes, the identity."""

    def __init__(
        self, in_dim: int, hidden: tuple[int, ...], dropout: float = 0.0, batch_norm: bool = False
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for units in hidden:
            layers.append(nn.Linear(in_dim, units))
            if batch_norm:
                layers.append(nn.BatchNorm1d(units))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = units
        self.net = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CrossNet(nn.Module):
    """DCN cross network (Wang et al., 2017): ``x_{l+1} = x_0 * (x_l . w_l) + b_l + x_l``."""

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.empty(num_layers, dim))
        self.b = nn.Parameter(torch.zeros(num_layers, dim))
        nn.init.xavier_normal_(self.w)

    def forward(self, x0: Tensor) -> Tensor:
        x = x0
        for w, b in zip(self.w, self.b, strict=True):
            x = x0 * (x @ w).unsqueeze(-1) + b + x
        return x


class CrossNetV2(nn.Module):
    """DCN-V2 cross network (Wang et al., 2021): ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l``."""

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_layers))

    def forward(self, x0: Tensor) -> Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x
