"""ErrorMemory: hand-worked bucket sums and outputs, invariants, and bad input."""

from __future__ import annotations

import math
import threading

import pytest
import torch

from reloop.memory import ErrorMemory, MemoryConfig
from reloop.memory.estimator import compensate, srp_bucket_ids

F64 = torch.float64


def tiny(K: int, L: int, **cfg) -> ErrorMemory:
    """A 2-d memory whose planes are set by hand: bit l of array k looks at one coordinate."""
    mem = ErrorMemory(2, MemoryConfig(K=K, L=L, normalize="none", **cfg), model_id="m")
    if K == 1 and L == 2:
        mem.planes_ = torch.eye(2)  # bit 0: h0 > 0, bit 1: h1 > 0
    elif K == 2 and L == 1:
        mem.planes_ = torch.eye(2)  # array 0: h0 > 0, array 1: h1 > 0
    elif K == 1 and L == 1:
        mem.planes_ = torch.tensor([[1.0], [0.0]])
    return mem


# four samples: two in bucket 3 (+,+), one in 2 (-,+), one in 1 (+,-); bucket 0 stays empty
H = torch.tensor([[1.0, 1.0], [2.0, 0.5], [-1.0, 1.0], [1.0, -1.0]])
Y = torch.tensor([1.0, 0.0, 1.0, 1.0])
YB = torch.tensor([0.2, 0.4, 0.5, 0.9], dtype=F64)


def test_bucket_sums_by_hand_k1_l2():
    mem = tiny(1, 2)
    mem.write(H, Y, YB)
    assert mem.bucket_ids(H).flatten().tolist() == [3, 3, 2, 1]
    q = torch.tensor([[3.0, 3.0], [-1.0, 2.0], [2.0, -5.0], [-1.0, -1.0]])
    sums = mem.lookup(q)
    assert sums.count.flatten().tolist() == [2.0, 1.0, 1.0, 0.0]
    assert sums.sum_y.flatten().tolist() == [1.0, 1.0, 1.0, 0.0]
    torch.testing.assert_close(sums.sum_y_base.flatten(), torch.tensor([0.6, 0.5, 0.9, 0.0],
                                                                      dtype=F64))
    assert len(mem) == 4


def test_compensate_by_hand_k1_l2():
    gamma, lam = 0.5, 0.5
    mem = tiny(1, 2, gamma=gamma, lam=lam)
    mem.write(H, Y, YB)
    q = torch.tensor([[3.0, 3.0], [-1.0, -1.0]])
    y_base = torch.tensor([0.3, 0.3], dtype=F64)
    out = mem.compensate(q, y_base)
    # query 0 -> bucket 3 (count 2): y_bar = 1/2, y_bar_base = 0.6/2; one readout, so a = 1
    y_bar, y_bar_base = 0.5, 0.3
    y_err = gamma * (y_bar - 0.3) + (1 - gamma) * (y_bar - y_bar_base)
    assert out[0].item() == pytest.approx(0.3 + lam * y_err, abs=1e-7)
    # query 1 -> bucket 0, empty: masked, base returned unchanged
    assert out[1].item() == 0.3
    assert out.dtype == F64


def test_k1_l1_two_buckets():
    mem = tiny(1, 1, gamma=1.0, lam=1.0)
    mem.write(H, Y, YB)  # h0 > 0: samples 0, 1, 3 (y = 1, 0, 1); h0 <= 0: sample 2 (y = 1)
    out = mem.compensate(torch.tensor([[5.0, 0.0], [-5.0, 0.0]]), torch.tensor([0.5, 0.5]))
    # gamma = 1, lam = 1: y_pred = y_bar
    assert out.tolist() == pytest.approx([2 / 3, 1.0], abs=1e-6)


def _two_array_case(similarity: str, tau: float) -> tuple[float, float]:
    """K=2, L=1 after writing H: expected output for query (1, 1), and the memory's."""
    gamma, lam, yb_q = 0.0, 1.0, 0.25
    mem = tiny(2, 1, similarity=similarity, tau=tau, gamma=gamma, lam=lam)
    mem.write(H, Y, YB)
    # array 0 (h0 > 0): samples 0, 1, 3 -> count 3, sum_y 2, sum_yb 1.5
    # array 1 (h1 > 0): samples 0, 1, 2 -> count 3, sum_y 2, sum_yb 1.1
    counts = [3.0, 3.0]
    means_y, means_yb = [2 / 3, 2 / 3], [1.5 / 3, 1.1 / 3]
    s = [0.0, 0.0] if similarity == "uniform" else [math.log(c) for c in counts]
    e = [math.exp(v / tau) for v in s]
    a = [v / sum(e) for v in e]
    y_bar = sum(ai * m for ai, m in zip(a, means_y, strict=True))
    y_bar_base = sum(ai * m for ai, m in zip(a, means_yb, strict=True))
    expected = yb_q + lam * (gamma * (y_bar - yb_q) + (1 - gamma) * (y_bar - y_bar_base))
    got = mem.compensate(torch.tensor([[1.0, 1.0]]), torch.tensor([yb_q], dtype=F64)).item()
    return expected, got


@pytest.mark.parametrize(("similarity", "tau"), [("uniform", 0.1), ("count", 1.0),
                                                 ("count", 0.1)])
def test_two_arrays_by_hand(similarity, tau):
    expected, got = _two_array_case(similarity, tau)
    assert got == pytest.approx(expected, abs=1e-6)


def test_count_similarity_weights_by_count():
    # K=2, L=1: the query's bucket holds 3 samples in array 0 and 1 sample in array 1
    mem = tiny(2, 1, similarity="count", tau=1.0, gamma=1.0, lam=1.0)
    h = torch.tensor([[1.0, 1.0], [1.0, -1.0], [1.0, -1.0]])
    mem.write(h, torch.tensor([1.0, 0.0, 0.0]), torch.full((3,), 0.5, dtype=F64))
    out = mem.compensate(torch.tensor([[1.0, 1.0]]), torch.tensor([0.5], dtype=F64)).item()
    # readouts: array 0 mean 1/3 (count 3), array 1 mean 1 (count 1); weights 3:1
    assert out == pytest.approx((3 * (1 / 3) + 1 * 1.0) / 4, abs=1e-7)


def test_centroid_similarity_matches_equations():
    cfg = MemoryConfig(K=4, L=3, similarity="centroid", tau=0.2, gamma=0.5, lam=0.7, seed=2,
                       normalize="none")
    g = torch.Generator().manual_seed(0)
    h = torch.randn(300, 6, generator=g)
    y = (torch.rand(300, generator=g) < 0.4).double()
    yb = torch.rand(300, generator=g, dtype=F64)
    mem = ErrorMemory(6, cfg)
    mem.write(h, y, yb)
    q = torch.randn(20, 6, generator=g)
    yq = torch.rand(20, generator=g, dtype=F64)
    # reference: per array, the cosine between the query's projection and the mean of the
    # unit-normalised projections of the samples sharing its bucket
    ids_w = srp_bucket_ids(h, mem.planes_, 3)
    ids_q = srp_bucket_ids(q, mem.planes_, 3)
    zw = (h / h.norm(dim=1, keepdim=True)) @ mem.planes_
    zq = q @ mem.planes_
    s = torch.zeros(20, 4, dtype=F64)
    valid = torch.zeros(20, 4, dtype=torch.bool)
    y_nb = torch.zeros(20, 4, dtype=F64)
    yb_nb = torch.zeros(20, 4, dtype=F64)
    for b in range(20):
        for k in range(4):
            same = ids_w[:, k] == ids_q[b, k]
            if same.any():
                valid[b, k] = True
                c = zw[same, k * 3:(k + 1) * 3].sum(0)
                s[b, k] = torch.nn.functional.cosine_similarity(zq[b, k * 3:(k + 1) * 3], c,
                                                                dim=0).double()
                y_nb[b, k] = y[same].mean()
                yb_nb[b, k] = yb[same].mean()
    expected = compensate(s, valid, y_nb, yb_nb, yq, tau=0.2, gamma=0.5, lam=0.7)
    torch.testing.assert_close(mem.compensate(q, yq), expected, rtol=0, atol=1e-5)


def test_centering_by_hand():
    # the first write fixes the offset at its mean; buckets are then those of h - offset
    mem = ErrorMemory(2, MemoryConfig(K=1, L=2, normalize="center", cuts="plane", gamma=1.0,
                                          lam=1.0))
    mem.planes_ = torch.eye(2)
    assert not mem.fitted
    q = torch.tensor([[11.0, 21.0]])
    # before any write the memory is empty and returns the base unchanged
    assert mem.compensate(q, torch.tensor([0.3])).item() == pytest.approx(0.3)
    h = torch.tensor([[11.0, 21.0], [9.0, 21.0], [10.0, 18.0]])  # mean (10, 20)
    mem.write(h, torch.tensor([1.0, 0.0, 1.0]), torch.full((3,), 0.5))
    assert mem.fitted and mem.offset_.tolist() == [10.0, 20.0]
    # h - offset = (1, 1), (-1, 1), (0, -2) -> buckets 3, 2, 0 (uncentred, all would be 3)
    assert mem.bucket_ids(h).flatten().tolist() == [3, 2, 0]
    # a second write does not move the offset
    mem.write(torch.tensor([[0.0, 0.0]]), torch.tensor([1.0]), torch.tensor([0.5]))
    assert mem.offset_.tolist() == [10.0, 20.0]
    assert mem.compensate(q, torch.tensor([0.3])).item() == pytest.approx(1.0)
    assert mem.compensate(torch.tensor([[12.0, 19.0]]), torch.tensor([0.3])).item() == \
        pytest.approx(0.3)  # bucket 1, empty


def test_standardize_by_hand():
    mem = ErrorMemory(2, MemoryConfig(K=1, L=2, normalize="standardize", cuts="plane"))
    mem.planes_ = torch.tensor([[1.0, 1.0], [1.0, -1.0]])  # bit 0: x0 + x1 > 0, bit 1: x0 - x1
    # coordinate 0 spreads by ~100, coordinate 1 by ~2: unscaled, coordinate 0 decides both
    # bits (ids 0 or 3 only)
    h = torch.tensor([[100.0, 3.0], [-100.0, -1.0], [60.0, -3.0], [-60.0, 1.0]])
    mem.write(h, torch.ones(4), torch.full((4,), 0.5))
    mean, std = h.mean(dim=0), h.std(dim=0)
    torch.testing.assert_close(mem.offset_, mean)
    torch.testing.assert_close(mem.transform_, torch.diag(1 / std))
    x = (h - mean) / std  # both coordinates now count
    expected = ((x @ mem.planes_) > 0).long() @ torch.tensor([1, 2])
    unscaled = ((h - mean) @ mem.planes_ > 0).long() @ torch.tensor([1, 2])
    assert mem.bucket_ids(h).flatten().tolist() == expected.tolist() == [1, 0, 2, 0]
    assert unscaled.tolist() == [3, 0, 3, 0]


def test_whiten_fits_an_isotropic_transform():
    g = torch.Generator().manual_seed(11)
    h = torch.randn(5000, 4, generator=g) @ torch.tensor(
        [[3.0, 0.0, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.1, 0.0], [0.0, 0.0, 0.0, 1.0]]
    ) + 7.0
    mem = ErrorMemory(4, MemoryConfig(K=2, L=3, normalize="whiten"))
    mem.write(h, torch.ones(5000), torch.full((5000,), 0.5))
    x = ((h - mem.offset_) @ mem.transform_).double()
    cov = torch.cov(x.T)
    # shrunk whitening: equal-variance directions up to the shrinkage, uncorrelated
    off_diag = cov - torch.diag(torch.diagonal(cov))
    assert float(off_diag.abs().max()) < 1e-3
    assert float(torch.diagonal(cov).max()) < 1.0


def test_min_count_masks_small_buckets():
    mem = tiny(1, 2, min_count=2, gamma=1.0, lam=1.0)
    mem.write(H, Y, YB)
    q = torch.tensor([[3.0, 3.0], [-1.0, 2.0]])  # buckets with 2 and 1 samples
    out = mem.compensate(q, torch.tensor([0.1, 0.1]))
    assert out[0].item() == pytest.approx(0.5, abs=1e-7)
    assert out[1].item() == pytest.approx(0.1)


def test_fast_path_equals_softmax_form():
    g = torch.Generator().manual_seed(4)
    h = torch.randn(2000, 8, generator=g)
    y = (torch.rand(2000, generator=g) < 0.3).double()
    yb = torch.rand(2000, generator=g, dtype=F64)
    q = torch.randn(300, 8, generator=g)
    yq = torch.rand(300, generator=g, dtype=F64)
    cases = [("uniform", 0.1, 2), ("uniform", 0.1, 1), ("count", 1.0, 2), ("count", 1.0, 1),
             ("count", 0.7, 2)]
    for similarity, tau, min_count in cases:
        mem = ErrorMemory(8, MemoryConfig(K=5, L=4, similarity=similarity, tau=tau,
                                          gamma=0.3, lam=0.8, min_count=min_count))
        mem.write(h, y, yb)
        assert mem._fast
        general = mem._compensate_general(q, yq, mem._state())
        torch.testing.assert_close(mem.compensate(q, yq), general, rtol=0, atol=1e-6)


def test_one_batch_and_many_small_batches_agree():
    g = torch.Generator().manual_seed(5)
    h = torch.randn(600, 8, generator=g)
    y = (torch.rand(600, generator=g) < 0.5).double()
    yb = torch.rand(600, generator=g, dtype=F64)
    cfg = MemoryConfig(K=3, L=4, normalize="none")
    one, many = ErrorMemory(8, cfg), ErrorMemory(8, cfg)
    one.write(h, y, yb)  # one batch
    for i in range(0, 600, 2):  # serving-sized batches, as labels arrive
        many.write(h[i:i + 2], y[i:i + 2], yb[i:i + 2])
    torch.testing.assert_close(one.table_, many.table_, rtol=0, atol=1e-9)
    torch.testing.assert_close(one._readout, many._readout, rtol=0, atol=1e-6)
    q = torch.randn(50, 8, generator=g)
    yq = torch.rand(50, generator=g, dtype=F64)
    torch.testing.assert_close(one.compensate(q, yq), many.compensate(q, yq))


def test_lambda_zero_returns_base_exactly():
    g = torch.Generator().manual_seed(6)
    for similarity, tau in [("uniform", 0.1), ("count", 0.1), ("centroid", 0.1)]:
        mem = ErrorMemory(8, MemoryConfig(K=4, L=3, lam=0.0, similarity=similarity, tau=tau))
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
    g = torch.Generator().manual_seed(8)
    for _ in range(20):
        mem.write(torch.randn(1000, 16, generator=g), torch.ones(1000), torch.rand(1000))
    assert mem.nbytes == before
    assert mem.table_.shape == (4 * 64, 3)
    assert len(mem) == 20_000


def test_same_seed_same_buckets():
    h = torch.randn(100, 16, generator=torch.Generator().manual_seed(9))
    a = ErrorMemory(16, MemoryConfig(K=8, L=10, seed=42))
    b = ErrorMemory(16, MemoryConfig(K=8, L=10, seed=42))
    c = ErrorMemory(16, MemoryConfig(K=8, L=10, seed=43))
    assert torch.equal(a.bucket_ids(h), b.bucket_ids(h))
    assert not torch.equal(a.bucket_ids(h), c.bucket_ids(h))
    assert torch.equal(a.bucket_ids(h), srp_bucket_ids(h, a.planes_, 10))


def test_normalised_hash_equals_reference_on_normalised_vectors():
    # the hash compares h @ (transform @ planes) with offset @ transform @ planes: the same bits
    # as the reference SRP of the normalised vectors (h - offset) @ transform
    g = torch.Generator().manual_seed(12)
    h = torch.randn(500, 16, generator=g) * torch.linspace(0.1, 5.0, 16) + 3.0
    mem = ErrorMemory(16, MemoryConfig(K=4, L=6, normalize="standardize", cuts="plane", seed=2))
    mem.write(h, torch.ones(500), torch.full((500,), 0.5))
    q = torch.randn(300, 16, generator=g) * 2.0 + 3.0
    x = (q.double() - mem.offset_.double()) @ mem.transform_.double()
    assert torch.equal(mem.bucket_ids(q), srp_bucket_ids(x, mem.planes_.double(), 6))


def test_hash_buffers_are_private_to_each_thread():
    # the projection is written into a scratch buffer; threads hashing at once must not share it
    mem = ErrorMemory(16, MemoryConfig(K=8, L=10, normalize="none"))
    inputs = [torch.randn(3000, 16, generator=torch.Generator().manual_seed(s))
              for s in range(4)]
    expected = [srp_bucket_ids(x, mem.planes_, 10) for x in inputs]
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
    q = torch.tensor([[3.0, 3.0]])
    before = mem.compensate(q, torch.tensor([0.3]))
    mem.decay(0.5)
    assert mem.lookup(q).count.item() == 1.0  # 2 samples * 0.5
    # means are unchanged by a uniform decay, so the output is too
    torch.testing.assert_close(mem.compensate(q, torch.tensor([0.3])), before)
    mem.decay(0.0)
    assert mem.lookup(q).count.item() == 0.0 and len(mem) == 0
    mem.write(H, Y, YB)
    mem.reset()
    assert float(mem.table_.abs().sum()) == 0.0
    assert mem.compensate(q, torch.tensor([0.3])).item() == pytest.approx(0.3)
    with pytest.raises(ValueError, match="decay factor=1.5 is out of range"):
        mem.decay(1.5)


def test_write_filter_sigma():
    mem = tiny(1, 2, sigma=0.5)
    # |y - y_base| = 0.8, 0.4, 0.5, 0.1: only the first passes (> 0.5)
    stored = mem.write(H, Y, YB)
    assert stored == 1 and len(mem) == 1 and mem.n_filtered_ == 3
    assert mem.lookup(torch.tensor([[1.0, 1.0]])).count.item() == 1.0


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
        ({"tau": 0.0}, "greater than 0"),
        ({"lambda": 1.5}, "less than or equal to 1"),
        ({"bogus": 1}, "Extra inputs are not permitted"),
    ],
)
def test_config_out_of_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MemoryConfig.model_validate(kwargs)


def test_state_too_large_for_budget():
    with pytest.raises(ValueError, match=r"K=16, L=40 needs .* bytes .* max_state_bytes"):
        ErrorMemory(8, MemoryConfig(K=16, L=40))


def test_lambda_key_reads_from_yaml_name():
    assert MemoryConfig.model_validate({"lambda": 0.3}).lam == 0.3
    assert MemoryConfig(lam=0.2).model_dump(by_alias=True)["lambda"] == 0.2


def test_cosine_hash_by_hand():
    # normalize="cosine", K=1, L=2, bit l looks at coordinate l of h / ||h||; cut_spread=0 puts
    # both cuts at the first batch's median (nearest rank 1 of 3)
    mem = ErrorMemory(2, MemoryConfig(K=1, L=2, normalize="cosine", cuts="plane", cut_spread=0.0),
                      model_id="m")
    mem.planes_ = torch.eye(2)
    h = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])  # unit: (.6, .8), (1, 0), (0, 1)
    mem.write(h, torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.5, 0.5, 0.5], dtype=F64))
    # coordinate 0 of the unit vectors: 0.6, 1, 0 -> median 0.6; coordinate 1: 0.8, 0, 1 -> 0.8
    torch.testing.assert_close(mem.cuts_, torch.tensor([0.6, 0.8]))
    q = torch.tensor([[10.0, 1.0], [1.0, 10.0], [5.0, 5.0], [-1.0, -1.0], [1.0, 3.0],
                      [70.0, 7.0], [0.0, 0.0]])
    # unit (.995, .0995) -> bit 0; (.0995, .995) -> bit 1; (.707, .707) -> bit 0 only (.707 < .8)
    # (-.7, -.7) -> none; (.316, .949) -> bit 1; 7 x the first query -> the same bucket; 0 -> 0
    assert mem.bucket_ids(q).flatten().tolist() == [1, 2, 1, 0, 2, 1, 0]


@pytest.mark.parametrize("rank", [0, 5])
def test_cosine_hash_equals_thresholded_reference_on_unit_vectors(rank):
    g = torch.Generator().manual_seed(11)
    h = torch.relu(torch.randn(2000, 16, generator=g)) * torch.rand(2000, 1, generator=g) * 5
    cfg = MemoryConfig(K=4, L=6, normalize="cosine", cuts="plane", cut_spread=0.3, seed=2,
                       hash_rank=rank)
    mem = ErrorMemory(16, cfg)
    mem.write(h[:1000], torch.zeros(1000), torch.full((1000,), 0.5, dtype=F64))
    if rank == 0:
        assert torch.equal(mem.transform_, torch.eye(16))
    else:  # an orthogonal projector of rank 5
        torch.testing.assert_close(mem.transform_ @ mem.transform_, mem.transform_,
                                   atol=1e-5, rtol=0)
        assert round(float(torch.trace(mem.transform_))) == 5
    u = torch.nn.functional.normalize(h[1000:], dim=1)
    bits = (u @ (mem.transform_ @ mem.planes_) > mem.cuts_).view(1000, 4, 6).to(torch.int64)
    expected = (bits << torch.arange(6)).sum(-1)
    agree = (mem.bucket_ids(h[1000:]) == expected).float().mean()
    assert agree > 0.999  # h.w > ||h|| t vs (h / ||h||).w > t: float32 rounding at exact ties
    # each plane cuts the first batch at its own quantile level in [0.2, 0.8]
    above = (torch.nn.functional.normalize(h[:1000], dim=1) @ (mem.transform_ @ mem.planes_)
             > mem.cuts_)
    share = above.float().mean(0)
    assert bool(((share > 0.19) & (share < 0.81)).all())
    assert float(share.std()) > 0.05  # spread, not all at the median
    # the same seed gives the same cuts
    again = ErrorMemory(16, cfg)
    again.write(h[:1000], torch.zeros(1000), torch.full((1000,), 0.5, dtype=F64))
    assert torch.equal(again.cuts_, mem.cuts_)
    assert torch.equal(again.transform_, mem.transform_)


def test_hash_rank_one_by_hand():
    # the first batch's unit vectors are e0 and e1 (5 of each): centred, they are
    # +-(0.5, -0.5, 0, 0), so the top principal direction is (1, -1, 0, 0) / sqrt(2) and the
    # rank-1 projector is 0.5 * [[1, -1], [-1, 1]] in the first two coordinates, 0 elsewhere
    mem = ErrorMemory(4, MemoryConfig(K=2, L=3, normalize="cosine", hash_rank=1, seed=4,
                                          min_leaf_rows=1))
    h = torch.tensor([[2.0, 0, 0, 0], [0, 3.0, 0, 0]]).repeat(5, 1)
    mem.write(h, torch.zeros(10), torch.full((10,), 0.5, dtype=F64))
    expected = torch.zeros(4, 4)
    expected[:2, :2] = torch.tensor([[0.5, -0.5], [-0.5, 0.5]])
    torch.testing.assert_close(mem.transform_, expected, atol=1e-6, rtol=0)
    # every bit now reads u0 - u1 of the unit query only: queries agreeing on it share all
    # their buckets, whatever their other coordinates
    q = torch.tensor([[0.6, 0.0, 0.8, 0.0], [0.8, 0.2, 0.0, 0.32 ** 0.5], [3.0, 0.0, 4.0, 0.0],
                      [0.0, 1.0, 0.0, 0.0]])
    ids = mem.bucket_ids(q)
    assert torch.equal(ids[0], ids[1]) and torch.equal(ids[0], ids[2])
    assert not torch.equal(ids[0], ids[3])  # u0 - u1 = -1 against 0.6


def test_hash_rank_with_centring_projects_the_centred_vectors():
    # normalize="center", hash_rank=1: the first batch varies along coordinate 0 only (plus a
    # tiny wobble on coordinate 1), so transform_ is e0 e0^T and bit l is
    # planes[0, l] * (h0 - mean h0) > 0
    g = torch.Generator().manual_seed(5)
    h = torch.zeros(400, 3)
    h[:, 0] = torch.randn(400, generator=g) * 4 + 1
    h[:, 1] = torch.randn(400, generator=g) * 0.01
    h[:, 2] = 7.0
    mem = ErrorMemory(3, MemoryConfig(K=1, L=4, normalize="center", cuts="plane", hash_rank=1,
                                          seed=1))
    mem.write(h, torch.zeros(400), torch.full((400,), 0.5, dtype=F64))
    torch.testing.assert_close(mem.transform_, torch.diag(torch.tensor([1.0, 0.0, 0.0])),
                               atol=1e-4, rtol=0)
    q = torch.tensor([[5.0, 9.0, -3.0], [-2.0, 0.0, 0.0]])
    bits = (mem.planes_[0] * (q[:, :1] - h[:, 0].mean()) > 0).to(torch.int64)
    assert mem.bucket_ids(q).flatten().tolist() == (bits << torch.arange(4)).sum(-1).tolist()
