"""ErrorMemory: hand-worked buckets, sums and outputs, invariants, and bad input."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from reloop.memory import ErrorMemory, MemoryConfig
from reloop.memory.estimator import compensate
from reloop.memory.kernels import tree_rows_reference

F64 = torch.float64


def _at(degrees: list[float], norm: float = 1.0) -> torch.Tensor:
    """2-d vectors at these angles (degrees) from the first axis."""
    a = torch.tensor(degrees, dtype=F64) * math.pi / 180
    return (norm * torch.stack([a.cos(), a.sin()], dim=1)).float()


# eight samples at 10, 20, ..., 80 degrees, with norms that the cosine hash ignores
H = _at([10, 20, 30, 40, 50, 60, 70, 80]) * torch.tensor([[1.0], [3.0], [0.5], [2.0], [1.0],
                                                          [7.0], [1.0], [0.2]])
Y = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0])
YB = torch.tensor([0.5, 0.3, 0.2, 0.6, 0.1, 0.3, 0.4, 0.2], dtype=F64)


def tiny(K: int, L: int, **cfg) -> ErrorMemory:
    """A 2-d memory whose planes are the two axes, set before the first write fits the tree."""
    mem = ErrorMemory(2, MemoryConfig(K=K, L=L, min_leaf_rows=1, **cfg), model_id="m")
    mem.planes_ = torch.eye(2)  # K=1, L=2: bit 0 reads u0, bit 1 u1; K=2, L=1: one each
    return mem


def test_tree_hash_and_bucket_sums_by_hand():
    mem = tiny(1, 2)
    assert not mem.fitted
    mem.write(H, Y, YB)
    assert mem.fitted
    # the root cuts u0 = cos(angle) at the median of the 8 samples (between 40 and 50 degrees):
    # 10-40 take bit 1 (node 3), 50-80 bit 0 (node 2); node 3 cuts u1 = sin between 20 and
    # 30 degrees, node 2 between 60 and 70; the first bit is the id's most significant
    expected = [2, 2, 3, 3, 0, 0, 1, 1]
    assert mem.bucket_ids(H).flatten().tolist() == expected
    c = math.cos(math.radians(40)), math.cos(math.radians(50))
    assert mem.tree_[0, 1].item() == pytest.approx((c[0] + c[1]) / 2, abs=1e-6)
    # the cosine hash: only the direction counts
    q = _at([15, 35, 55, 75], norm=10.0)
    assert mem.bucket_ids(q).flatten().tolist() == [2, 3, 0, 1]
    assert torch.equal(mem.bucket_ids(q * 0.01), mem.bucket_ids(q))
    sums = mem.lookup(q)
    assert sums.count.flatten().tolist() == [2.0, 2.0, 2.0, 2.0]
    assert sums.sum_y.flatten().tolist() == [2.0, 1.0, 0.0, 1.0]
    torch.testing.assert_close(sums.sum_y_base.flatten(),
                               torch.tensor([0.8, 0.8, 0.4, 0.6], dtype=F64))
    assert len(mem) == 8


def test_compensate_by_hand_one_array():
    gamma, lam = 0.5, 0.5
    mem = tiny(1, 2, gamma=gamma, lam=lam)
    mem.write(H, Y, YB)
    out = mem.compensate(_at([35, 55]), torch.tensor([0.3, 0.3], dtype=F64))
    # 35 degrees -> bucket 3 (samples at 30, 40): y_bar 0.5, y_bar_base 0.4
    y_err = gamma * (0.5 - 0.3) + (1 - gamma) * (0.5 - 0.4)
    assert out[0].item() == pytest.approx(0.3 + lam * y_err, abs=1e-7)
    # 55 degrees -> bucket 0 (50, 60): y_bar 0, y_bar_base 0.2
    y_err = gamma * (0.0 - 0.3) + (1 - gamma) * (0.0 - 0.2)
    assert out[1].item() == pytest.approx(0.3 + lam * y_err, abs=1e-7)
    assert out.dtype == F64


def test_pooled_arrays_by_hand():
    # K=2, L=1: array 0 cuts u0 at its median (10-40 degrees on bit 1), array 1 cuts u1 (50-80)
    mem = tiny(2, 1, gamma=1.0, lam=1.0)
    mem.write(H, Y, YB)
    q = _at([20, 45, 70])
    assert mem.bucket_ids(q).tolist() == [[1, 0], [1, 1], [0, 1]]
    out = mem.compensate(q, torch.tensor([0.5, 0.5, 0.5]))
    # gamma = 1, lam = 1: y_pred = y_bar, the pooled mean of the K buckets' samples:
    # 20 degrees: 10-40 twice (3 of 4 clicked); 45: all 8 (4 of 8); 70: 50-80 twice (1 of 4)
    assert out.tolist() == pytest.approx([0.75, 0.5, 0.25], abs=1e-6)


@pytest.mark.parametrize(("gamma", "lam"), [(0.0, 1.0), (0.3, 0.8), (1.0, 0.25)])
def test_compensate_is_eq_9_and_11_to_13_with_log_count_similarity(gamma, lam):
    g = torch.Generator().manual_seed(4)
    h = torch.relu(torch.randn(3000, 8, generator=g))
    y = (torch.rand(3000, generator=g) < 0.3).double()
    yb = torch.rand(3000, generator=g, dtype=F64)
    mem = ErrorMemory(8, MemoryConfig(K=5, L=6, gamma=gamma, lam=lam, min_leaf_rows=20))
    mem.write(h, y, yb)
    mem.decay(0.5)
    mem.write(h[:500], y[:500], yb[:500])
    q = torch.relu(torch.randn(300, 8, generator=g))
    yq = torch.rand(300, generator=g, dtype=F64)
    sums = mem.lookup(q)
    inv = 1.0 / sums.count.clamp_min(1e-300)
    expected = compensate(torch.log(sums.count.clamp_min(1e-300)), sums.count > 0,
                          sums.sum_y * inv, sums.sum_y_base * inv, yq, gamma=gamma, lam=lam)
    torch.testing.assert_close(mem.compensate(q, yq), expected, rtol=0, atol=1e-6)


def _relu_batch(n: int, seed: int) -> torch.Tensor:
    """ReLU hidden vectors along two directions: the geometry the tree cuts are for."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.relu(torch.randn(2, 32, generator=g)) + 0.05
    coef = torch.rand(n, 2, generator=g) * torch.tensor([1.0, 0.3])
    return coef @ basis + 0.01 * torch.rand(n, 32, generator=g)


def test_bucket_ids_are_the_reference_walk_of_the_unit_vectors():
    h = _relu_batch(3000, 1) * 3.0
    mem = ErrorMemory(32, MemoryConfig(K=4, L=8, leaf_share=0.01, seed=2, min_leaf_rows=1))
    mem.write(h[:2000], torch.zeros(2000), torch.full((2000,), 0.5, dtype=F64))
    # the tree is fitted on the first batch's unit projections: 2000 rows, min leaf 20
    assert mem._hash_state.depth == 6
    q = h[2000:]
    zt = np.ascontiguousarray((torch.nn.functional.normalize(q, dim=1) @ mem.planes_).numpy().T)
    rows = np.empty((1000, 4), dtype=np.int64)
    tree_rows_reference(zt, mem.tree_.numpy(), np.ones(1000, dtype=np.float32), 4, 8, 6, rows)
    expected = torch.from_numpy(rows) - torch.arange(4) * 256
    agree = (mem.bucket_ids(q) == expected).float().mean()
    assert agree > 0.999  # h.w > ||h|| t against (h / ||h||).w > t: float32 rounding at ties


def test_tree_fills_the_buckets_evenly():
    h = _relu_batch(4000, 0)
    mem = ErrorMemory(32, MemoryConfig(K=4, L=12, leaf_share=0.005, seed=1, min_leaf_rows=1))
    mem.write(h, torch.zeros(4000), torch.full((4000,), 0.5, dtype=F64))
    # min_leaf = 0.005 * 4000 = 20: every bucket of the first batch holds >= 20 rows, and nodes
    # of >= 40 rows are cut, so a bucket holds < 40 (ties apart): 4000 / 2**7 = 31 rows a leaf
    assert mem._hash_state.depth == 7
    for k in range(4):
        counts = torch.bincount(mem.bucket_ids(h)[:, k])
        nonzero = counts[counts > 0]
        assert nonzero.numel() >= 100  # 12 cuts of one plane each would make at most 79 regions
        assert int(nonzero.min()) >= 20 and int(nonzero.max()) < 40


def test_min_leaf_rows_floors_the_buckets_of_a_small_first_batch():
    h = torch.rand(200, 8, generator=torch.Generator().manual_seed(0))
    y, base = torch.zeros(200, dtype=F64), torch.full((200,), 0.1, dtype=F64)
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


def test_the_first_write_fits_the_hash_once():
    mem = tiny(1, 2, gamma=1.0, lam=1.0)
    q = _at([35])
    # before any write the memory is empty: the base unchanged, no buckets yet
    assert mem.compensate(q, torch.tensor([0.3])).item() == pytest.approx(0.3)
    assert mem.lookup(q).count.item() == 0.0
    with pytest.raises(ValueError, match="fitted by the first write"):
        mem.bucket_ids(q)
    mem.write(H, Y, YB)
    tree = mem.tree_.clone()
    mem.write(_at([1, 2, 3, 4, 5, 6]), torch.ones(6), torch.full((6,), 0.5))  # all near 0 deg.
    assert torch.equal(mem.tree_, tree)  # frozen
    assert mem.bucket_ids(_at([1, 2])).flatten().tolist() == [2, 2]


def test_zero_hidden_vectors_get_a_bucket_and_a_finite_prediction():
    g = torch.Generator().manual_seed(3)
    h = torch.relu(torch.randn(600, 8, generator=g))
    h[::7] = 0.0  # e.g. dead ReLU units
    mem = ErrorMemory(8, MemoryConfig(K=4, L=8, gamma=1.0, lam=1.0, min_leaf_rows=10))
    mem.write(h, (torch.rand(600, generator=g) < 0.5).double(), torch.full((600,), 0.5))
    ids = mem.bucket_ids(torch.zeros(3, 8))
    assert bool((ids == ids[0]).all())  # one deterministic bucket per array
    out = mem.compensate(torch.zeros(3, 8), torch.full((3,), 0.5))
    assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0.0


def test_one_batch_and_many_small_batches_agree():
    g = torch.Generator().manual_seed(5)
    h = torch.randn(900, 8, generator=g)
    y = (torch.rand(900, generator=g) < 0.5).double()
    yb = torch.rand(900, generator=g, dtype=F64)
    cfg = MemoryConfig(K=3, L=4, min_leaf_rows=10)
    one, many = ErrorMemory(8, cfg), ErrorMemory(8, cfg)
    for mem in (one, many):  # the same first batch fits the same hash
        mem.write(h[:300], y[:300], yb[:300])
    one.write(h[300:], y[300:], yb[300:])  # one batch
    for i in range(300, 900, 2):  # serving-sized batches, as labels arrive
        many.write(h[i:i + 2], y[i:i + 2], yb[i:i + 2])
    torch.testing.assert_close(one.table_, many.table_, rtol=0, atol=1e-9)
    torch.testing.assert_close(one._readout, many._readout, rtol=0, atol=1e-6)
    q = torch.randn(50, 8, generator=g)
    yq = torch.rand(50, generator=g, dtype=F64)
    torch.testing.assert_close(one.compensate(q, yq), many.compensate(q, yq))


def test_lambda_zero_returns_base_exactly():
    g = torch.Generator().manual_seed(6)
    mem = ErrorMemory(8, MemoryConfig(K=4, L=3, lam=0.0))
    h = torch.randn(500, 8, generator=g)
    mem.write(h, (torch.rand(500, generator=g) < 0.5).float(), torch.rand(500, generator=g))
    for dtype in (torch.float32, F64):
        yb = torch.rand(200, generator=g, dtype=dtype)
        out = mem.compensate(torch.randn(200, 8, generator=g), yb)
        assert out.dtype == dtype
        assert torch.equal(out, yb)


def test_outputs_stay_in_unit_interval():
    g = torch.Generator().manual_seed(7)
    mem = ErrorMemory(8, MemoryConfig(K=4, L=2, lam=1.0, gamma=0.0))
    h = torch.randn(1000, 8, generator=g)
    y = (torch.rand(1000, generator=g) < 0.5).double()
    mem.write(h, y, (1 - y) * 0.99)  # base maximally wrong: pushes outputs past 0 and 1
    yb = torch.cat([torch.zeros(100), torch.ones(100), torch.rand(100, generator=g)])
    out = mem.compensate(torch.randn(300, 8, generator=g), yb)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float(out.min()) == 0.0 or float(out.max()) == 1.0  # the clamp was needed


def test_size_does_not_grow_with_writes():
    mem = ErrorMemory(16, MemoryConfig(K=4, L=6))
    before = mem.nbytes
    # table and readouts, the tree's K x 2**L float32 thresholds, the planes
    assert before == 4 * 64 * (3 * 8 + 3 * 4 + 4) + 16 * 4 * 6 * 4
    g = torch.Generator().manual_seed(8)
    for _ in range(20):
        mem.write(torch.randn(1000, 16, generator=g), torch.ones(1000), torch.rand(1000))
    assert mem.nbytes == before
    assert mem.table_.shape == (4 * 64, 3)
    assert len(mem) == 20_000


def test_same_seed_same_buckets():
    h = torch.randn(1000, 16, generator=torch.Generator().manual_seed(9))
    mems = [ErrorMemory(16, MemoryConfig(K=8, L=10, seed=s)) for s in (42, 42, 43)]
    for mem in mems:
        mem.write(h, torch.ones(1000), torch.full((1000,), 0.5))
    a, b, c = (mem.bucket_ids(h) for mem in mems)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_hash_buffers_are_private_to_each_thread():
    # the projection is written into a scratch buffer; threads hashing at once must not share it
    mem = ErrorMemory(16, MemoryConfig(K=8, L=10))
    inputs = [torch.randn(3000, 16, generator=torch.Generator().manual_seed(s))
              for s in range(4)]
    mem.write(inputs[0], torch.ones(3000), torch.full((3000,), 0.5))
    expected = [mem.bucket_ids(x) for x in inputs]
    ok: dict[int, bool] = {}
    start = threading.Barrier(len(inputs))

    def work(i: int) -> None:
        start.wait()
        ok[i] = all(torch.equal(mem.bucket_ids(inputs[i]), expected[i]) for _ in range(30))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ok == dict.fromkeys(range(len(inputs)), True)


def test_reset_and_decay():
    mem = tiny(1, 2)
    mem.write(H, Y, YB)
    q = _at([35])
    before = mem.compensate(q, torch.tensor([0.3]))
    mem.decay(0.5)
    assert mem.lookup(q).count.item() == 1.0  # 2 samples * 0.5
    # means are unchanged by a uniform decay, so the output is too
    torch.testing.assert_close(mem.compensate(q, torch.tensor([0.3])), before)
    mem.decay(0.0)
    assert mem.lookup(q).count.item() == 0.0 and len(mem) == 0
    mem.write(H, Y, YB)
    mem.reset()
    assert float(mem.table_.abs().sum()) == 0.0 and mem.fitted  # the hash stays
    assert mem.compensate(q, torch.tensor([0.3])).item() == pytest.approx(0.3)
    with pytest.raises(ValueError, match="decay factor=1.5 is out of range"):
        mem.decay(1.5)


# ---------------------------------------------------------------------------- bad input


def test_wrong_hidden_dim():
    mem = ErrorMemory(8, MemoryConfig(K=2, L=3))
    with pytest.raises(ValueError, match="hidden dimension 5.*hidden_dim=8"):
        mem.compensate(torch.randn(3, 5), torch.rand(3))
    with pytest.raises(ValueError, match="hidden dimension 5"):
        mem.write(torch.randn(3, 5), torch.ones(3), torch.rand(3))
    with pytest.raises(ValueError, match="2-D"):
        mem.compensate(torch.randn(8), torch.rand(1))


def test_nan_in_hidden_or_base():
    mem = ErrorMemory(4, MemoryConfig(K=2, L=3))
    h = torch.randn(5, 4)
    h[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"h holds 1 non-finite values \(1 NaN\)"):
        mem.write(h, torch.ones(5), torch.rand(5))
    h[2, 1] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        mem.compensate(h, torch.rand(5))
    yb = torch.rand(5)
    yb[0] = float("nan")
    with pytest.raises(ValueError, match="y_base holds 1 NaN"):
        mem.compensate(torch.randn(5, 4), yb)
    with pytest.raises(ValueError, match=r"y_base must hold probabilities in \[0, 1\]"):
        mem.write(torch.randn(2, 4), torch.ones(2), torch.tensor([0.5, 1.5]))


def test_labels_outside_zero_one():
    mem = ErrorMemory(4, MemoryConfig(K=2, L=3))
    with pytest.raises(ValueError, match="labels y must be 0 or 1; 2 values are not"):
        mem.write(torch.randn(4, 4), torch.tensor([0.0, 1.0, 2.0, 0.5]), torch.rand(4))
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        mem.write(torch.randn(4, 4), torch.ones(3), torch.rand(4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"K": 0}, "K=0 is out of range; expected 1..4096"),
        ({"K": 5000}, "K=5000 is out of range"),
        ({"L": 0}, "L=0 is out of range; expected 1..62 for int64 bucket ids"),
        ({"L": 70}, "L=70 is out of range; expected 1..62 for int64 bucket ids"),
        ({"lambda": 1.5}, "less than or equal to 1"),
        ({"leaf_share": 0.5}, "leaf_share"),
        ({"bogus": 1}, "Extra inputs are not permitted"),
    ],
)
def test_config_out_of_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MemoryConfig.model_validate(kwargs)


@pytest.mark.parametrize("key", ["tau", "sigma", "normalize", "cut_spread", "cuts", "hash_rank",
                                 "similarity", "min_count"])
def test_a_removed_parameter_is_named_in_params(key):
    from reloop.config import ConfigError, params_from_dict

    with pytest.raises(ConfigError) as err:
        params_from_dict({"memory": {"K": 16, key: 1}}, source="params.yaml")
    assert f"memory.{key}=1: removed: the error memory keeps only its measured design" in str(
        err.value)
    assert "delete this key" in str(err.value)


def test_state_too_large_for_budget():
    with pytest.raises(ValueError, match=r"K=16, L=40 needs .* bytes .* max_state_bytes"):
        ErrorMemory(8, MemoryConfig(K=16, L=40))
    # 2 x 2**20 buckets x 40 bytes = 83,886,080 bytes
    with pytest.raises(ValueError, match="83,886,080 bytes"):
        ErrorMemory(16, MemoryConfig(K=2, L=20, max_state_bytes=80_000_000))


def test_lambda_key_reads_from_yaml_name():
    assert MemoryConfig.model_validate({"lambda": 0.3}).lam == 0.3
    assert MemoryConfig(lam=0.2).model_dump(by_alias=True)["lambda"] == 0.2
