"""The error memory's tree cuts (``memory.cuts="tree"``): fit, walk, kernel and memory, by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from reloop.memory import ErrorMemory, MemoryConfig
from reloop.memory.estimator import fit_tree_cuts, tree_bucket_ids, tree_depth
from reloop.memory.kernels import tree_rows

F64 = torch.float64
INF = float("inf")

# K=1, L=2: column 0 is bit 0's projection, column 1 bit 1's
Z = torch.tensor([[1.0, 8.0], [2.0, 6.0], [3.0, 4.0], [4.0, 2.0],
                  [5.0, 1.0], [6.0, 3.0], [7.0, 5.0], [8.0, 7.0]])


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
    assert tree_bucket_ids(Z, tree, 2).flatten().tolist() == [1, 1, 0, 0, 2, 2, 3, 3]


def test_fit_tree_cuts_stops_above_min_leaf():
    # min_leaf 2: nodes of 4 rows are still cut (2 + 2); min_leaf 3: only the root (4 + 4)
    assert fit_tree_cuts(Z, 2, 2).tolist() == [[INF, 4.5, 5.0, 4.0]]
    tree = fit_tree_cuts(Z, 2, 3)
    assert tree.tolist() == [[INF, 4.5, INF, INF]]
    assert tree_depth(tree) == 1
    # the walk stops at level 1: ids are the level-1 nodes 2 and 3 less 2
    assert tree_bucket_ids(Z, tree, 2).flatten().tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert tree_depth(fit_tree_cuts(Z, 2, 5)) == 0  # nothing cut: every row in bucket 0
    assert tree_bucket_ids(Z, fit_tree_cuts(Z, 2, 5), 2).flatten().tolist() == [0] * 8


def test_tree_rows_by_hand_with_per_sample_scale():
    tree = np.array([[INF, 4.5, 5.0, 4.0]], dtype=np.float32)
    zt = np.ascontiguousarray(Z.numpy().T)
    out = np.empty((8, 1), dtype=np.int64)
    tree_rows(zt, tree, np.empty(0, dtype=np.float32), 1, 2, 2, out)
    assert out.flatten().tolist() == [1, 1, 0, 0, 2, 2, 3, 3]
    # with scale 2 every threshold doubles: row 7 (8, 7): 8 <= 9 -> node 2, 7 <= 10 -> id 0;
    # row 0 (1, 8): node 2, 8 <= 10 -> 0; K=1 so the row is the id
    tree_rows(zt, tree, np.full(8, 2.0, dtype=np.float32), 1, 2, 2, out)
    assert out.flatten().tolist() == [0] * 8
    # array k's rows start at k * 2**L
    tree2 = np.repeat(tree, 2, axis=0)
    zt2 = np.ascontiguousarray(np.concatenate([Z.numpy(), Z.numpy()[:, ::-1]], axis=1).T)
    out2 = np.empty((8, 2), dtype=np.int64)
    tree_rows(zt2, tree2, np.empty(0, dtype=np.float32), 2, 2, 2, out2)
    # array 1 reads column 1 first: 8, 6, 4, 2, 1, 3, 5, 7 against 4.5 -> nodes 3, 3, 2, 2, 2,
    # 2, 3, 3; then column 0 (1..8): node 3 against 4 (1, 2 -> id 2; 7, 8 -> id 3), node 2
    # against 5 (3, 4, 5 -> id 0; 6 -> id 1)
    assert out2[:, 0].tolist() == [1, 1, 0, 0, 2, 2, 3, 3]
    assert out2[:, 1].tolist() == [4 + 2, 4 + 2, 4 + 0, 4 + 0, 4 + 0, 4 + 1, 4 + 3, 4 + 3]


@pytest.mark.parametrize(("K", "L", "min_leaf"), [(1, 1, 1), (3, 5, 2), (16, 12, 4), (4, 8, 40)])
def test_tree_rows_equal_the_reference(K, L, min_leaf):
    g = torch.Generator().manual_seed(K * 100 + L)
    z = torch.randn(700, K * L, generator=g)
    tree = fit_tree_cuts(z[:400], L, min_leaf)
    depth = tree_depth(tree)
    assert depth <= L
    out = np.empty((300, K), dtype=np.int64)
    scale = (torch.rand(300, generator=g) + 0.5).numpy()
    tree_rows(np.ascontiguousarray(z[400:].numpy().T), tree.numpy(), scale, K, L, depth, out)
    expected = tree_bucket_ids(z[400:] / torch.from_numpy(scale)[:, None], tree, L)
    agree = (torch.from_numpy(out) - torch.arange(K) * (1 << L) == expected).float().mean()
    assert agree > 0.999  # z > s t against z / s > t: float32 rounding at exact ties
    out_plain = np.empty((300, K), dtype=np.int64)
    tree_rows(np.ascontiguousarray(z[400:].numpy().T), tree.numpy(),
              np.empty(0, dtype=np.float32), K, L, depth, out_plain)
    ids = torch.from_numpy(out_plain) - torch.arange(K) * (1 << L)
    assert torch.equal(ids, tree_bucket_ids(z[400:], tree, L))


def test_fitted_tree_is_balanced_with_leaves_of_at_least_min_leaf_rows():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(1000, 2 * 10, generator=g)
    tree = fit_tree_cuts(z, 10, 25)  # nodes of >= 50 rows are cut: 1000 -> 500 ... -> 31/32
    assert tree_depth(tree) == 5
    ids = tree_bucket_ids(z, tree, 10)
    for k in range(2):
        counts = torch.bincount(ids[:, k], minlength=32)
        assert counts.numel() == 32 and int(counts.min()) >= 25 and int(counts.max()) <= 32


# ---------------------------------------------------------------------------- the memory


def _relu_batch(n: int, seed: int) -> torch.Tensor:
    """ReLU hidden vectors along two directions: the geometry the tree cuts are for."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.relu(torch.randn(2, 32, generator=g)) + 0.05
    coef = torch.rand(n, 2, generator=g) * torch.tensor([1.0, 0.3])
    return coef @ basis + 0.01 * torch.rand(n, 32, generator=g)


def test_tree_fills_far_more_buckets_than_plane_cuts_on_low_rank_hidden_vectors():
    h = _relu_batch(4000, 0)
    y, yb = torch.zeros(4000), torch.full((4000,), 0.5, dtype=F64)
    used = {}
    for cuts in ("plane", "tree"):
        mem = ErrorMemory(32, MemoryConfig(K=4, L=12, cuts=cuts, leaf_share=0.005, seed=1,
                                            min_leaf_rows=1))
        mem.write(h, y, yb)
        counts = [torch.bincount(mem.bucket_ids(h)[:, k]) for k in range(4)]
        used[cuts] = min(int((c > 0).sum()) for c in counts)
        if cuts == "tree":
            # min_leaf = 0.005 * 4000 = 20: every bucket of the first batch holds >= 20 rows,
            # and nodes of >= 40 rows are cut, so a bucket holds < 40 (ties apart)
            for c in counts:
                nonzero = c[c > 0]
                assert int(nonzero.min()) >= 20 and int(nonzero.max()) < 40
            assert mem._state().depth == 7  # 4000 / 2**7 = 31 rows a leaf
    # 2-D data: 12 cuts of one plane each make at most 79 regions; the tree makes ~128 leaves
    assert used["plane"] < 80 and used["tree"] >= 100


@pytest.mark.parametrize("normalize", ["cosine", "standardize", "center"])
def test_memory_tree_hash_equals_the_reference_walk(normalize):
    h = _relu_batch(3000, 1) * 3.0
    mem = ErrorMemory(32, MemoryConfig(K=4, L=8, normalize=normalize, leaf_share=0.01, seed=2,
                                      min_leaf_rows=1))
    mem.write(h[:2000], torch.zeros(2000), torch.full((2000,), 0.5, dtype=F64))
    q = h[2000:]
    if normalize == "cosine":
        x = torch.nn.functional.normalize(q, dim=1)
    else:
        x = (q - mem.offset_) @ mem.transform_
    expected = tree_bucket_ids(x @ mem.planes_, mem.tree_, 8)
    agree = (mem.bucket_ids(q) == expected).float().mean()
    assert agree > 0.999  # the fold's float32 rounding at exact ties
    # the tree is fitted on the first batch's normalised projections: 2000 rows, min leaf 20
    assert tree_depth(mem.tree_) == 6


def test_normalize_none_ignores_the_tree():
    mem = ErrorMemory(8, MemoryConfig(K=2, L=4, normalize="none", cuts="tree"))
    assert mem.tree_ is None
    h = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    mem.write(h, torch.zeros(50), torch.full((50,), 0.5, dtype=F64))
    bits = (h @ mem.planes_ > 0).view(50, 2, 4).to(torch.int64)
    assert torch.equal(mem.bucket_ids(h), (bits << torch.arange(4)).sum(-1))


def test_tree_state_counts_in_nbytes_and_budget():
    plane = ErrorMemory(16, MemoryConfig(K=4, L=10, cuts="plane"))
    tree = ErrorMemory(16, MemoryConfig(K=4, L=10, cuts="tree"))
    assert tree.nbytes - plane.nbytes == 4 * 1024 * 4  # K x 2**L float32 thresholds
    # 2 x 2**20 buckets x (36 bytes + 4 for the tree) = 83,886,080 bytes
    with pytest.raises(ValueError, match="83,886,080 bytes"):
        ErrorMemory(16, MemoryConfig(K=2, L=20, cuts="tree", max_state_bytes=80_000_000))
    ErrorMemory(16, MemoryConfig(K=2, L=20, cuts="plane", max_state_bytes=80_000_000))


@pytest.mark.parametrize(("kwargs", "field"), [({"leaf_share": 0.0}, "leaf_share"),
                                               ({"leaf_share": 0.5}, "leaf_share"),
                                               ({"cuts": "kd"}, "cuts")])
def test_bad_tree_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MemoryConfig.model_validate(kwargs)


def test_snapshot_written_before_tree_cuts_loads_with_plane_cuts(tmp_path):
    # a snapshot whose config predates memory.cuts / leaf_share: it used one cut per plane
    h = _relu_batch(500, 3)
    mem = ErrorMemory(32, MemoryConfig(K=2, L=6, cuts="plane"), model_id="m")
    mem.write(h, torch.zeros(500), torch.full((500,), 0.5, dtype=F64))
    path = mem.save(tmp_path / "old.safetensors")
    with safe_open(str(path), framework="pt") as fh:
        metadata = dict(fh.metadata())
        tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    header = json.loads(metadata["reloop"])
    meta = json.loads(header["meta"])
    del meta["config"]["cuts"], meta["config"]["leaf_share"]
    header["meta"] = json.dumps(meta)
    save_file(tensors, str(path), metadata={"reloop": json.dumps(header)})
    back = ErrorMemory.load(path, model_id="m")
    assert back.config.cuts == "plane" and back.tree_ is None
    assert torch.equal(back.bucket_ids(h), mem.bucket_ids(h))


def test_min_leaf_rows_floors_the_buckets_of_a_small_first_batch():
    import torch

    from reloop.config.memory import MemoryConfig
    from reloop.memory.sketch import ErrorMemory

    h = torch.rand(200, 8)
    y, base = torch.zeros(200, dtype=torch.float64), torch.full((200,), 0.1, dtype=torch.float64)
    counts = {}
    for floor in (1, 50):
        mem = ErrorMemory(8, MemoryConfig(K=2, L=6, min_leaf_rows=floor), model_id="m")
        mem.write(h, y, base)
        ids = mem.bucket_ids(h)  # (n, K) bucket of each row in each array
        counts[floor] = [torch.unique(ids[:, k], return_counts=True)[1] for k in range(2)]
    # leaf_share 0.003 of 200 rows is below one row: without a floor, buckets of 1-3 rows;
    # with min_leaf_rows 50 a node of m rows is cut only when m >= 100, so every bucket the
    # batch reaches holds at least 50 of its rows (200 rows: 4 buckets of 50)
    assert min(int(c.min()) for c in counts[1]) < 4
    for c in counts[50]:
        assert int(c.min()) >= 50 and len(c) == 4
