"""The sketch's compiled loops: hand-worked values, and equal to their pure-numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reloop.memory.estimator import compensate, fit_tree_cuts, tree_depth
from reloop.memory.kernels import (
    gather_compensate,
    gather_compensate_reference,
    refresh_readouts,
    refresh_readouts_reference,
    scatter_write,
    scatter_write_reference,
    tree_rows,
    tree_rows_reference,
)

INF = np.float32(np.inf)
# K=1, L=2: column 0 is bit 0's projection, column 1 bit 1's (see test_memory_tree.py)
Z = np.array([[1.0, 8.0], [2.0, 6.0], [3.0, 4.0], [4.0, 2.0],
              [5.0, 1.0], [6.0, 3.0], [7.0, 5.0], [8.0, 7.0]], dtype=np.float32)
TREE = np.array([[INF, 4.5, 5.0, 4.0]], dtype=np.float32)

# ---------------------------------------------------------------------------- by hand


@pytest.mark.parametrize("kernel", [tree_rows, tree_rows_reference])
def test_tree_rows_by_hand_with_per_sample_scale(kernel):
    zt = np.ascontiguousarray(Z.T)
    out = np.empty((8, 1), dtype=np.int64)
    kernel(zt, TREE, np.ones(8, dtype=np.float32), 1, 2, 2, out)
    # root cuts column 0 at 4.5; node 2 cuts column 1 at 5, node 3 at 4
    assert out.flatten().tolist() == [1, 1, 0, 0, 2, 2, 3, 3]
    # with scale 2 every threshold doubles: row 7 (8, 7): 8 <= 9 -> node 2, 7 <= 10 -> id 0;
    # row 0 (1, 8): node 2, 8 <= 10 -> 0; K=1 so the row is the id
    kernel(zt, TREE, np.full(8, 2.0, dtype=np.float32), 1, 2, 2, out)
    assert out.flatten().tolist() == [0] * 8
    # array k's rows start at k * 2**L
    tree2 = np.repeat(TREE, 2, axis=0)
    zt2 = np.ascontiguousarray(np.concatenate([Z, Z[:, ::-1]], axis=1).T)
    out2 = np.empty((8, 2), dtype=np.int64)
    kernel(zt2, tree2, np.ones(8, dtype=np.float32), 2, 2, 2, out2)
    # array 1 reads column 1 first: 8, 6, 4, 2, 1, 3, 5, 7 against 4.5 -> nodes 3, 3, 2, 2, 2,
    # 2, 3, 3; then column 0 (1..8): node 3 against 4 (1, 2 -> id 2; 7, 8 -> id 3), node 2
    # against 5 (3, 4, 5 -> id 0; 6 -> id 1)
    assert out2[:, 0].tolist() == [1, 1, 0, 0, 2, 2, 3, 3]
    assert out2[:, 1].tolist() == [4 + 2, 4 + 2, 4 + 0, 4 + 0, 4 + 0, 4 + 1, 4 + 3, 4 + 3]
    # depth 1: the walk stops after the root; ids are the level-1 nodes 2 and 3 less 2
    kernel(zt, TREE, np.ones(8, dtype=np.float32), 1, 2, 1, out)
    assert out.flatten().tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def _after_writes(rows, y, yb, n_rows, write=scatter_write):
    table = np.zeros((n_rows, 3))
    readout = np.zeros((n_rows, 3), dtype=np.float32)
    write(np.asarray(rows, dtype=np.int64), np.asarray(y, dtype=np.float64),
          np.asarray(yb, dtype=np.float64), table, readout)
    return table, readout


@pytest.mark.parametrize("write", [scatter_write, scatter_write_reference])
def test_scatter_write_sums_and_readouts_by_hand(write):
    # two samples, K=2: sample 0 -> rows 0 and 3, sample 1 -> rows 0 and 2
    table, readout = _after_writes([[0, 3], [0, 2]], [1.0, 0.0], [0.25, 0.5], 4, write)
    assert table.tolist() == [[2.0, 1.0, 0.75], [0.0, 0.0, 0.0], [1.0, 0.0, 0.5],
                              [1.0, 1.0, 0.25]]
    # the readouts are the sums in float32 (the K buckets of a query are pooled)
    np.testing.assert_array_equal(readout, table.astype(np.float32))


@pytest.mark.parametrize("refresh", [refresh_readouts, refresh_readouts_reference])
def test_refresh_readouts_after_decay_and_reset_by_hand(refresh):
    table, readout = _after_writes([[0], [0], [1]], [1.0, 0.0, 1.0], [0.2, 0.4, 0.6], 3)
    table *= 0.7
    table[1] = 0.0  # a bucket emptied (reset)
    refresh(table, readout)
    np.testing.assert_allclose(readout, [[1.4, 0.7, 0.42], [0, 0, 0], [0, 0, 0]], rtol=1e-6)


@pytest.mark.parametrize("gather", [gather_compensate, gather_compensate_reference])
def test_gather_compensate_by_hand(gather):
    # readouts [count, sum y, sum y_base]; query 0 pools rows 0 and 2, query 1 row 1 twice,
    # query 2 the empty row 3
    readout = np.array([[1, 1, 0.5], [2, 0, 1], [1, 0, 0.5], [0, 0, 0]], dtype=np.float32)
    rows = np.array([[0, 2], [1, 1], [3, 3]], dtype=np.int64)
    y_base = np.array([0.3, 0.6, 0.2])
    out = np.empty(3)
    gather(rows, readout, y_base, 0.0, 1.0, out)
    # query 0: count 2, y_bar 0.5, y_bar_base 0.5 -> residual 0 -> 0.3; query 1: count 4,
    # y_bar 0, y_bar_base 0.5 -> 0.6 - 0.5 = 0.1; query 2: no sample -> y_base
    np.testing.assert_allclose(out, [0.3, 0.1, 0.2])
    gather(rows, readout, y_base, 1.0, 0.5, out)
    # gamma 1: y_err = y_bar - y_base: 0.3 + 0.5 (0.5 - 0.3) = 0.4; 0.6 + 0.5 (0 - 0.6) = 0.3
    np.testing.assert_allclose(out, [0.4, 0.3, 0.2])
    gather(rows, readout * np.float32(8), np.array([0.9, 0.05, 0.2]), 1.0, 1.0, out)
    assert out.tolist()[:2] == [0.5, 0.0]  # lambda 1, gamma 1: y_bar itself, clamped at 0


# ---------------------------------------------------------------------------- kernel == reference

SHAPES = [(1, 1, 1, 50, 0), (3, 5, 2, 300, 1), (16, 12, 4, 2000, 2), (4, 8, 40, 700, 3),
          (2, 20, 1, 513, 4)]


@pytest.mark.parametrize(("K", "L", "min_leaf", "n", "seed"), SHAPES)
def test_tree_rows_equal_the_reference(K, L, min_leaf, n, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2 * n, K * L, generator=g)
    tree = fit_tree_cuts(z[:n], L, min_leaf)
    depth = tree_depth(tree)
    assert depth <= L
    zt = np.ascontiguousarray(z[n:].numpy().T)
    # per-sample scales, a few of them 0 (a zero hidden vector)
    scale = (torch.rand(n, generator=g) * 3).numpy()
    scale[::17] = 0.0
    got, expected = (np.full((n, K), -1, dtype=np.int64) for _ in range(2))
    tree_rows(zt, tree.numpy(), scale, K, L, depth, got)
    tree_rows_reference(zt, tree.numpy(), scale, K, L, depth, expected)
    np.testing.assert_array_equal(got, expected)
    ids = got - np.arange(K) * (1 << L)
    assert ids.min() >= 0 and ids.max() < 1 << depth


@pytest.mark.parametrize(("K", "n_rows", "B", "seed"),
                         [(1, 4, 10, 0), (3, 32, 200, 1), (16, 4096, 3000, 2), (5, 7, 1, 3)])
def test_scatter_write_and_refresh_equal_the_reference(K, n_rows, B, seed):
    g = np.random.default_rng(seed)
    rows = g.integers(0, n_rows, size=(B, K))
    y = (g.random(B) < 0.3).astype(np.float64)
    yb = g.random(B)
    start = g.random((n_rows, 3)) * (g.random((n_rows, 1)) < 0.5)  # half the buckets empty
    tables, readouts = [], []
    for write, refresh in ((scatter_write, refresh_readouts),
                           (scatter_write_reference, refresh_readouts_reference)):
        table = start.copy()
        readout = np.zeros((n_rows, 3), dtype=np.float32)
        refresh(table, readout)
        write(rows, y, yb, table, readout)
        tables.append(table.copy())
        readouts.append(readout.copy())
        table *= 0.7
        refresh(table, readout)
        readouts.append(readout)
    np.testing.assert_allclose(tables[0], tables[1], rtol=1e-13, atol=0)
    np.testing.assert_allclose(readouts[0], readouts[2], rtol=1e-6, atol=0)
    np.testing.assert_allclose(readouts[1], readouts[3], rtol=1e-6, atol=0)


@pytest.mark.parametrize(("K", "n_rows", "B", "gamma", "lam", "seed"),
                         [(1, 5, 20, 0.0, 1.0, 0), (6, 50, 400, 0.3, 0.7, 1),
                          (16, 4096, 3000, 1.0, 0.5, 2), (2, 3, 100, 0.0, 0.25, 3)])
def test_gather_compensate_equals_the_reference(K, n_rows, B, gamma, lam, seed):
    g = np.random.default_rng(seed)
    count = g.integers(0, 5, size=n_rows).astype(np.float64) * g.random(n_rows)
    sums = np.stack([count, count * g.random(n_rows), count * g.random(n_rows)], axis=1)
    readout = sums.astype(np.float32)
    rows = g.integers(0, n_rows, size=(B, K))
    y_base = g.random(B)
    y_base[:3] = [0.0, 1.0, 0.5]
    got, expected = np.empty(B), np.empty(B)
    gather_compensate(rows, readout, y_base, gamma, lam, got)
    gather_compensate_reference(rows, readout, y_base, gamma, lam, expected)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert got.min() >= 0.0 and got.max() <= 1.0


def test_gather_compensate_is_the_softmax_form_with_log_count_similarity():
    # pooling the K buckets' sums is Eq. 11-12 with s_k = log count_k
    g = np.random.default_rng(7)
    n_rows, K, B = 40, 5, 300
    count = g.integers(0, 6, size=n_rows).astype(np.float64)
    readout = np.stack([count, count * g.random(n_rows), count * g.random(n_rows)],
                       axis=1).astype(np.float32)
    rows = g.integers(0, n_rows, size=(B, K))
    rows[:4] = np.flatnonzero(count == 0)[0]  # queries whose buckets are all empty
    y_base = g.random(B)
    out = np.empty(B)
    gather_compensate(rows, readout, y_base, 0.4, 0.8, out)
    nb = torch.from_numpy(readout.astype(np.float64)[rows])  # (B, K, 3)
    c = nb[..., 0]
    valid = c > 0
    inv = 1.0 / c.clamp_min(1e-300)
    expected = compensate(torch.log(c.clamp_min(1e-300)), valid, nb[..., 1] * inv,
                          nb[..., 2] * inv, torch.from_numpy(y_base), gamma=0.4, lam=0.8)
    np.testing.assert_allclose(out, expected.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out[:4], y_base[:4])
