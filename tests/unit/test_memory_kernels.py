"""The sketch's compiled loops against hand-worked values and the pure reference functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reloop.memory._kernels import bucket_rows, gather_sum, refresh_readouts, scatter_write
from reloop.memory.estimator import srp_bucket_ids

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


def test_gather_sum_by_hand():
    readout = np.array([[1, 2, 3], [10, 20, 30], [100, 200, 300]], dtype=np.float32)
    out = np.empty((2, 3))
    gather_sum(np.array([[0, 2], [1, 1]], dtype=np.int64), readout, out)
    assert out.tolist() == [[101.0, 202.0, 303.0], [20.0, 40.0, 60.0]]
