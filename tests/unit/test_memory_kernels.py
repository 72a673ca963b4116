"""The sketch's compiled loops against hand-worked values and the pure reference functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reloop.memory.estimator import compensate_from_sums, srp_bucket_ids
from reloop.memory.kernels import (
    bucket_rows,
    gather_compensate,
    refresh_readouts,
    scatter_write,
)

NO_SCALE = np.empty(0, dtype=np.float32)


def test_bucket_rows_by_hand():
    # K=2 arrays of L=2 bits; row = k * 4 + bit0 + 2 * bit1, bit j = z[:, j] > thr[j]
    z = np.array([[1.0, 1.0, -1.0, 3.0], [0.0, -2.0, 5.0, 0.5]], dtype=np.float32)
    thr = np.array([0.0, 0.0, 0.0, 1.0], dtype=np.float32)
    out = np.empty((2, 2), dtype=np.int64)
    bucket_rows(z, thr, NO_SCALE, 2, 2, out)
    # sample 0: array 0 bits (1, 1) -> 3; array 1 bits (0, 1) -> 4 + 2 = 6
    # sample 1: array 0 bits (0, 0) -> 0 (0 is not > 0); array 1 bits (1, 0) -> 4 + 1 = 5
    assert out.tolist() == [[3, 6], [0, 5]]


def test_bucket_rows_scale_thresholds_per_sample():
    # cosine hash: bit j is z > ||h|| * t_j; here t = (0.5, -0.5), one array of two bits
    z = np.array([[1.0, -1.0], [1.0, -1.0]], dtype=np.float32)
    thr = np.array([0.5, -0.5], dtype=np.float32)
    out = np.empty((2, 1), dtype=np.int64)
    bucket_rows(z, thr, np.array([1.0, 4.0], dtype=np.float32), 1, 2, out)
    # norm 1: 1 > 0.5 (bit 0), -1 > -0.5 no -> 1; norm 4: 1 > 2 no, -1 > -2 (bit 1) -> 2
    assert out.tolist() == [[1], [2]]


@pytest.mark.parametrize(("K", "L"), [(1, 1), (3, 5), (16, 12), (2, 40)])
def test_bucket_rows_equal_the_reference(K, L):
    g = torch.Generator().manual_seed(K * 100 + L)
    h = torch.randn(257, 9, generator=g)
    planes = torch.randn(9, K * L, generator=g)
    out = np.empty((257, K), dtype=np.int64)
    bucket_rows((h @ planes).numpy(), np.zeros(K * L, dtype=np.float32), NO_SCALE, K, L, out)
    expected = srp_bucket_ids(h, planes, L) + torch.arange(K) * (1 << L)
    assert torch.equal(torch.from_numpy(out), expected)


def _table_after(rows, y, yb, n_rows, power, min_count):
    table = np.zeros((n_rows, 3))
    readout = np.zeros((n_rows, 3), dtype=np.float32)
    scatter_write(np.asarray(rows, dtype=np.int64), np.asarray(y, dtype=np.float64),
                  np.asarray(yb, dtype=np.float64), table, readout, power, min_count)
    return table, readout


def test_scatter_write_sums_and_uniform_readouts_by_hand():
    # two samples, K=2: sample 0 -> rows 0 and 3, sample 1 -> rows 0 and 2
    table, readout = _table_after([[0, 3], [0, 2]], [1.0, 0.0], [0.25, 0.5], 4, 0.0, 1.0)
    assert table.tolist() == [[2.0, 1.0, 0.75], [0.0, 0.0, 0.0], [1.0, 0.0, 0.5],
                              [1.0, 1.0, 0.25]]
    # uniform: [valid, mean y, mean y_base]
    np.testing.assert_allclose(readout, [[1, 0.5, 0.375], [0, 0, 0], [1, 0, 0.5], [1, 1, 0.25]])


def test_readouts_of_count_similarity_and_masking_by_hand():
    rows = [[0], [0], [0], [1]]
    y, yb = [1.0, 1.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]
    # count, tau = 0.5: w = count ** 2; row 0 holds 3 samples: w = 9, mean y = 2/3, mean yb = 0.5
    _, readout = _table_after(rows, y, yb, 2, 2.0, 1.0)
    np.testing.assert_allclose(readout[0], [9.0, 6.0, 4.5], rtol=1e-6)
    np.testing.assert_allclose(readout[1], [1.0, 1.0, 0.5], rtol=1e-6)
    # pooled (power 1, no mask): the sums themselves
    table, readout = _table_after(rows, y, yb, 2, 1.0, 0.0)
    np.testing.assert_allclose(readout, table.astype(np.float32))
    # min_count = 2 masks the one-sample bucket
    _, readout = _table_after(rows, y, yb, 2, 0.0, 2.0)
    np.testing.assert_allclose(readout[1], [0.0, 0.0, 0.0])


def test_refresh_readouts_after_decay():
    table, readout = _table_after([[0], [0], [1]], [1.0, 0.0, 1.0], [0.2, 0.4, 0.6], 2, 0.0, 1.0)
    table *= 0.7  # row 0: count 1.4 (kept), row 1: count 0.7 (below min_count 1: masked)
    refresh_readouts(table, readout, 0.0, 1.0)
    np.testing.assert_allclose(readout, [[1.0, 0.5, 0.3], [0.0, 0.0, 0.0]], rtol=1e-6)


def test_gather_compensate_by_hand():
    # readouts [w, w mean_y, w mean_y_base]; query 0 sums rows 0 and 2, query 1 row 1 twice,
    # query 2 the empty row 3
    readout = np.array([[1, 1, 0.5], [2, 0, 1], [1, 0, 0.5], [0, 0, 0]], dtype=np.float32)
    rows = np.array([[0, 2], [1, 1], [3, 3]], dtype=np.int64)
    y_base = np.array([0.3, 0.6, 0.2])
    out = np.empty(3)
    gather_compensate(rows, readout, y_base, 0.0, 1.0, out)
    # query 0: w 2, y_bar 0.5, y_bar_base 0.5 -> residual 0 -> 0.3; query 1: w 4, y_bar 0,
    # y_bar_base 0.5 -> 0.6 - 0.5 = 0.1; query 2: no bucket -> y_base
    np.testing.assert_allclose(out, [0.3, 0.1, 0.2])
    gather_compensate(rows, readout, y_base, 1.0, 0.5, out)
    # gamma 1: y_err = y_bar - y_base: 0.3 + 0.5 (0.5 - 0.3) = 0.4; 0.6 + 0.5 (0 - 0.6) = 0.3
    np.testing.assert_allclose(out, [0.4, 0.3, 0.2])
    gather_compensate(rows, readout * np.float32(8), np.array([0.9, 0.05, 0.2]), 1.0, 1.0, out)
    assert out.tolist()[:2] == [0.5, 0.0]  # lambda 1, gamma 1: y_bar itself, clamped at 0


@pytest.mark.parametrize(("gamma", "lam"), [(0.0, 1.0), (0.3, 0.7), (1.0, 0.5)])
def test_gather_compensate_equals_the_reference(gamma, lam):
    g = np.random.default_rng(int(gamma * 10 + lam * 100))
    readout = g.random((50, 3)).astype(np.float32)
    readout[::7] = 0.0  # empty buckets
    rows = g.integers(0, 50, size=(400, 6))
    rows[:5] = 0  # queries whose buckets are all empty
    y_base = g.random(400)
    out = np.empty(400)
    gather_compensate(rows, readout, y_base, gamma, lam, out)
    sums = torch.from_numpy(readout.astype(np.float64)[rows].sum(axis=1))
    expected = compensate_from_sums(sums[:, 0], sums[:, 1], sums[:, 2],
                                    torch.from_numpy(y_base), gamma=gamma, lam=lam)
    np.testing.assert_allclose(out, expected.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out[:5], y_base[:5])
