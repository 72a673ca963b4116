"""The error memory's tree cuts: fit and depth by hand (the walk: test_memory_kernels.py)."""

from __future__ import annotations

import numpy as np
import torch

from reloop.memory.estimator import fit_tree_cuts, tree_depth
from reloop.memory.kernels import tree_rows_reference

INF = float("inf")

# K=1, L=2: column 0 is bit 0's projection, column 1 bit 1's
Z = torch.tensor([[1.0, 8.0], [2.0, 6.0], [3.0, 4.0], [4.0, 2.0],
                  [5.0, 1.0], [6.0, 3.0], [7.0, 5.0], [8.0, 7.0]])


def _ids(z: torch.Tensor, tree: torch.Tensor, L: int) -> list[list[int]]:
    """Bucket ids of the reference walk (unit scale), ``(n, K)``."""
    n, K = z.shape[0], tree.shape[0]
    out = np.empty((n, K), dtype=np.int64)
    tree_rows_reference(np.ascontiguousarray(z.numpy().T), tree.numpy(),
                        np.ones(n, dtype=np.float32), K, L, tree_depth(tree), out)
    return (out - np.arange(K) * (1 << L)).tolist()


def test_fit_tree_cuts_by_hand():
    tree = fit_tree_cuts(Z, 2, 1)
    # root (node 1): 8 rows, median cut between the 4th and 5th of column 0: (4 + 5) / 2.
    # node 2 (rows 0-3) cuts column 1's 8, 6, 4, 2 at (4 + 6) / 2 = 5; node 3 (rows 4-7) cuts
    # 1, 3, 5, 7 at (3 + 5) / 2 = 4. One threshold per plane could not split both halves
    # evenly: column 1's overall median is 4.5.
    assert tree.tolist() == [[INF, 4.5, 5.0, 4.0]]
    assert tree_depth(tree) == 2
    # node 2 -> bit 1 for 8 and 6 (ids 1), 0 for 4 and 2 (ids 0); node 3 -> 2 for 1 and 3,
    # 3 for 5 and 7: every leaf holds two rows
    assert sum(_ids(Z, tree, 2), []) == [1, 1, 0, 0, 2, 2, 3, 3]


def test_fit_tree_cuts_stops_above_min_leaf():
    # min_leaf 2: nodes of 4 rows are still cut (2 + 2); min_leaf 3: only the root (4 + 4)
    assert fit_tree_cuts(Z, 2, 2).tolist() == [[INF, 4.5, 5.0, 4.0]]
    tree = fit_tree_cuts(Z, 2, 3)
    assert tree.tolist() == [[INF, 4.5, INF, INF]]
    assert tree_depth(tree) == 1
    # the walk stops at level 1: ids are the level-1 nodes 2 and 3 less 2
    assert sum(_ids(Z, tree, 2), []) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert tree_depth(fit_tree_cuts(Z, 2, 5)) == 0  # nothing cut: every row in bucket 0
    assert sum(_ids(Z, fit_tree_cuts(Z, 2, 5), 2), []) == [0] * 8


def test_fitted_tree_is_balanced_with_leaves_of_at_least_min_leaf_rows():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(1000, 2 * 10, generator=g)
    tree = fit_tree_cuts(z, 10, 25)  # nodes of >= 50 rows are cut: 1000 -> 500 ... -> 31/32
    assert tree_depth(tree) == 5
    ids = torch.tensor(_ids(z, tree, 10))
    for k in range(2):
        counts = torch.bincount(ids[:, k], minlength=32)
        assert counts.numel() == 32 and int(counts.min()) >= 25 and int(counts.max()) <= 32
