"""Online use: writes interleaved with reads from several threads never show a torn state."""

from __future__ import annotations

import sys
import threading

import torch

from reloop.memory import ErrorMemory, ExactMemory, MemoryConfig

Y_BASE = 0.25  # every written sample has y = 1 and y_base = 0.25
QUERY_ROWS = 20


def _hammer(mem, reader, n_writers: int = 3, n_readers: int = 3, rounds: int = 150) -> list:
    """Run writers and readers at once; returns the errors the threads hit."""
    errors: list[BaseException] = []
    start = threading.Barrier(n_writers + n_readers)
    done = threading.Event()
    dim = mem.hidden_dim

    def writer(seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        try:
            start.wait()
            for i in range(rounds):
                n = 1 if i % 3 == 0 else 700  # both the small and the large write path
                mem.write(torch.randn(n, dim, generator=g), torch.ones(n),
                          torch.full((n,), Y_BASE))
                if seed == 0 and i % 20 == 19:
                    mem.decay(0.5)  # a decay keeps sum_y == count and the y_base ratio
        except BaseException as err:  # noqa: BLE001 - reported to the main thread
            errors.append(err)

    def read(seed: int) -> None:
        g = torch.Generator().manual_seed(100 + seed)
        try:
            start.wait()
            while not done.is_set():  # small reads, as fast as possible, while writes go on
                reader(torch.randn(QUERY_ROWS, dim, generator=g))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n_writers)]
    threads += [threading.Thread(target=read, args=(i,)) for i in range(n_readers)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to expose torn states
    try:
        for t in threads:
            t.start()
        for t in threads[:n_writers]:
            t.join(timeout=120)
        done.set()
        for t in threads[n_writers:]:
            t.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


def test_sketch_reads_see_whole_writes():
    # gamma = 1, lam = 1: y_pred = y_bar, which is exactly 1 for any non-empty bucket, and
    # y_base (0.5) for a query whose buckets are all empty. Anything else is a torn read.
    mem = ErrorMemory(16, MemoryConfig(K=4, L=12, gamma=1.0, lam=1.0))
    base = torch.full((QUERY_ROWS,), 0.5)

    def reader(q: torch.Tensor) -> None:
        out = mem.compensate(q, base)
        ok = (out == 1.0) | (out == 0.5)
        assert bool(ok.all()), f"torn read: {out[~ok][:5].tolist()}"
        for _ in range(3):  # lookups are cheap: check the raw sums more often
            sums = mem.lookup(q)
            torch.testing.assert_close(sums.sum_y, sums.count, rtol=0, atol=1e-9)
            torch.testing.assert_close(sums.sum_y_base, Y_BASE * sums.count, rtol=0, atol=1e-9)

    errors = _hammer(mem, reader)
    assert not errors, errors[0]
    # every write landed: the total count of each array equals the samples written, up to decays
    assert mem.n_written_ == 3 * (150 // 3) * 1 + 3 * (150 - 150 // 3) * 700
    totals = mem.table_[:, 0].view(4, -1).sum(1)
    assert torch.allclose(totals, totals[0].expand(4))


def test_exact_reads_see_whole_writes():
    mem = ExactMemory(16, MemoryConfig(K=4, gamma=0.0, lam=1.0, exact_window=5000))
    base = torch.full((QUERY_ROWS,), 0.5)

    def reader(q: torch.Tensor) -> None:
        out = mem.compensate(q, base)
        # gamma = 0: y_err = y_bar - y_bar_base = 1 - 0.25 for a non-empty memory
        ok = (out - 1.0).abs().lt(1e-6) | (out == 0.5)
        assert bool(ok.all()), f"torn read: {out[~ok][:5].tolist()}"

    errors = _hammer(mem, reader, rounds=30)
    assert not errors, errors[0]
    assert len(mem) == 5000
