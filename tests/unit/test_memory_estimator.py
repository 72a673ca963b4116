"""The pure math of ReLoop2: the hash planes and Eq. 9, 11-13, against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from reloop.memory.estimator import compensate, make_planes


def test_make_planes_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = make_planes(8, 2, 3, 5), make_planes(8, 2, 3, 5), make_planes(8, 2, 3, 6)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.shape == (8, 6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_compensate_by_hand():
    s = torch.tensor([[0.5, 0.2]], dtype=torch.float64)
    valid = torch.tensor([[True, True]])
    y_nb = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    yb_nb = torch.tensor([[0.2, 0.4]], dtype=torch.float64)
    y_base = torch.tensor([0.3], dtype=torch.float64)
    gamma, lam = 0.5, 0.8
    e0, e1 = math.exp(0.5), math.exp(0.2)
    a0, a1 = e0 / (e0 + e1), e1 / (e0 + e1)  # Eq. 12
    y_bar, y_bar_base = a0 * 1.0 + a1 * 0.0, a0 * 0.2 + a1 * 0.4  # Eq. 11
    y_err = gamma * (y_bar - 0.3) + (1 - gamma) * (y_bar - y_bar_base)  # Eq. 13
    expected = min(max(0.3 + lam * y_err, 0.0), 1.0)  # Eq. 9
    out = compensate(s, valid, y_nb, yb_nb, y_base, gamma=gamma, lam=lam)
    assert out.item() == pytest.approx(expected, abs=1e-12)


def test_gamma_one_gives_convex_mix():
    # gamma = 1: y_pred = (1 - lam) * y_base + lam * y_bar
    s = torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64)
    valid = torch.ones(1, 3, dtype=torch.bool)
    y_nb = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    out = compensate(s, valid, y_nb, torch.zeros(1, 3, dtype=torch.float64),
                     torch.tensor([0.1], dtype=torch.float64), gamma=1.0, lam=0.4)
    assert out.item() == pytest.approx(0.6 * 0.1 + 0.4 * (2 / 3), abs=1e-12)


def test_masked_neighbours_are_ignored_even_if_nan():
    s = torch.tensor([[0.9, 0.1]], dtype=torch.float64)
    valid = torch.tensor([[False, True]])
    y_nb = torch.tensor([[float("nan"), 1.0]], dtype=torch.float64)
    yb_nb = torch.tensor([[float("nan"), 0.5]], dtype=torch.float64)
    y_base = torch.tensor([0.2], dtype=torch.float64)
    out = compensate(s, valid, y_nb, yb_nb, y_base, gamma=0.0, lam=1.0)
    # only the second neighbour: y_err = 1.0 - 0.5
    assert out.item() == pytest.approx(0.7, abs=1e-12)


def test_no_valid_neighbour_keeps_base_exactly():
    s = torch.zeros(2, 3, dtype=torch.float64)
    valid = torch.zeros(2, 3, dtype=torch.bool)
    y_base = torch.tensor([0.123, 0.987], dtype=torch.float64)
    out = compensate(s, valid, s, s, y_base, gamma=0.3, lam=0.9)
    assert torch.equal(out, y_base)


def test_output_is_clamped():
    s = torch.zeros(2, 1, dtype=torch.float64)
    valid = torch.ones(2, 1, dtype=torch.bool)
    y_nb = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    yb_nb = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    y_base = torch.tensor([0.9, 0.1], dtype=torch.float64)
    out = compensate(s, valid, y_nb, yb_nb, y_base, gamma=0.0, lam=1.0)
    # unclamped: 0.9 + 1.0 = 1.9 and 0.1 - 1.0 = -0.9
    assert out.tolist() == [1.0, 0.0]


def test_lambda_zero_is_identity():
    g = torch.Generator().manual_seed(0)
    s = torch.rand(50, 4, generator=g, dtype=torch.float64)
    valid = torch.rand(50, 4, generator=g) > 0.3
    y_base = torch.rand(50, generator=g, dtype=torch.float64)
    out = compensate(s, valid, torch.rand(50, 4, generator=g, dtype=torch.float64), s, y_base,
                     gamma=0.5, lam=0.0)
    assert torch.equal(out, y_base)
