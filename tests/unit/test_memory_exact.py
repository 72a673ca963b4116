"""ExactMemory: true top-k by cosine, the bounded window, and the shared estimator."""

from __future__ import annotations

import math

import pytest
import torch

from reloop.memory import ExactMemory, MemoryConfig

F64 = torch.float64


def test_top_k_by_cosine_by_hand():
    gamma, lam = 0.5, 1.0
    mem = ExactMemory(2, MemoryConfig(K=2, gamma=gamma, lam=lam))
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    yb = torch.tensor([0.2, 0.3, 0.4, 0.6], dtype=F64)
    mem.write(keys * 3.0, y, yb)  # scale does not matter: cosine
    q = torch.tensor([[2.0, 0.5]])
    # cosines to the query: ~0.970, ~0.243, ~-0.970, ~0.857 -> top-2 are keys 0 and 3
    qn = q[0] / q[0].norm()
    cos = [float(qn @ (k / k.norm())) for k in keys]
    top = sorted(range(4), key=lambda i: -cos[i])[:2]
    assert top == [0, 3]
    e = [math.exp(cos[i]) for i in top]  # Eq. 12, s_i the cosine
    a = [v / sum(e) for v in e]
    y_bar = sum(ai * float(y[i]) for ai, i in zip(a, top, strict=True))
    y_bar_base = sum(ai * float(yb[i]) for ai, i in zip(a, top, strict=True))
    base = 0.5
    expected = base + lam * (gamma * (y_bar - base) + (1 - gamma) * (y_bar - y_bar_base))
    out = mem.compensate(q, torch.tensor([base], dtype=F64))
    assert out.item() == pytest.approx(expected, abs=1e-6)


def test_empty_memory_returns_base_and_fewer_than_k_stored():
    mem = ExactMemory(3, MemoryConfig(K=5, gamma=1.0, lam=1.0))
    yb = torch.tensor([0.25, 0.75])
    assert torch.equal(mem.compensate(torch.randn(2, 3), yb), yb)
    mem.write(torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([1.0]), torch.tensor([0.1]))
    # a single stored sample: every query's only neighbour, y_pred = y_bar = 1
    assert mem.compensate(torch.randn(2, 3), yb).tolist() == [1.0, 1.0]


def test_window_keeps_the_newest():
    mem = ExactMemory(2, MemoryConfig(K=1, exact_window=3, gamma=1.0, lam=1.0))
    for i in range(5):  # y alternates 1, 0, 1, 0, 1; all at the same direction
        mem.write(torch.tensor([[1.0, float(i)]]), torch.tensor([float(i % 2 == 0)]),
                  torch.tensor([0.5]))
    assert len(mem) == 3 and mem.n_written_ == 5
    assert mem.y_[:3].tolist() == [0.0, 1.0, 1.0]  # ring: sample 3 and 4 overwrote 0 and 1
    assert mem.keys_[:, 1].div(mem.keys_[:, 0]).round().tolist() == [3.0, 4.0, 2.0]
    # nearest to (1, 4) is sample 4 itself, y = 1
    assert mem.compensate(torch.tensor([[1.0, 4.0]]), torch.tensor([0.0])).item() == 1.0
    size = mem.nbytes
    mem.write(torch.randn(10, 2), torch.ones(10), torch.rand(10))
    assert mem.nbytes == size and len(mem) == 3


def test_one_batch_larger_than_window():
    mem = ExactMemory(2, MemoryConfig(K=1, exact_window=4))
    h = torch.stack([torch.ones(10), torch.arange(10.0)], dim=1)
    mem.write(h, torch.ones(10), torch.rand(10))
    assert len(mem) == 4
    assert sorted(mem.keys_[:, 1].div(mem.keys_[:, 0]).round().tolist()) == [6.0, 7.0, 8.0, 9.0]


def test_decay_weights_the_attention():
    mem = ExactMemory(2, MemoryConfig(K=2, gamma=1.0, lam=1.0))
    mem.write(torch.tensor([[1.0, 0.0]]), torch.tensor([1.0]), torch.tensor([0.5]))
    mem.decay(0.25)
    mem.write(torch.tensor([[1.0, 0.0]]), torch.tensor([0.0]), torch.tensor([0.5]))
    # both at cosine 1; weights 0.25 and 1 -> y_bar = 0.25 / 1.25
    out = mem.compensate(torch.tensor([[1.0, 0.0]]), torch.tensor([0.5])).item()
    assert out == pytest.approx(0.2, abs=1e-6)
    mem.decay(0.0)
    assert len(mem) == 0


def test_lambda_zero_and_bad_input():
    mem = ExactMemory(4, MemoryConfig(K=3, lam=0.0))
    mem.write(torch.randn(50, 4), torch.ones(50), torch.rand(50))
    yb = torch.rand(20, dtype=F64)
    assert torch.equal(mem.compensate(torch.randn(20, 4), yb), yb)
    with pytest.raises(ValueError, match="hidden dimension 3"):
        mem.write(torch.randn(2, 3), torch.ones(2), torch.rand(2))
    with pytest.raises(ValueError, match="labels y must be 0 or 1"):
        mem.write(torch.randn(2, 4), torch.tensor([1.0, 3.0]), torch.rand(2))
    with pytest.raises(ValueError, match="y_base holds 1 NaN"):
        mem.compensate(torch.randn(1, 4), torch.tensor([float("nan")]))
