"""The sketch's per-sample loops, compiled with numba: bucket rows, write scatter, read gather.

:class:`reloop.memory.ErrorMemory` spends its time in three loops around the one matrix product
of sign-random-projection hashing (``h @ planes``, left to torch's BLAS):

* :func:`bucket_rows` turns the projection into each sample's bucket row in every array (sign
  bits against the normalisation's thresholds, packed into an integer), one pass over the
  ``(B, K*L)`` projection;
* :func:`tree_rows` does the same for ``cuts="tree"``, where each bit's threshold depends on the
  bits before it (a walk down a depth-L tree per array);
* :func:`scatter_write` adds the samples to their ``K`` buckets' running sums and refreshes those
  buckets' readouts, touching only the ``B*K`` buckets written;
* :func:`gather_compensate` sums the ``K`` weighted readouts of every query and turns them into
  its compensated prediction.

Written with numpy/torch operations, the same work takes several passes over full-size
temporaries (a bincount over the whole table per write, a readout refresh of every bucket);
compiled, each is one pass (the write went from 0.48 to ~0.75 of the bare projection's
throughput, see ``benchmarks/error_memory.py``). The kernels are plain functions of arrays, with
the pure reference versions in :mod:`reloop.memory.estimator`, and they are tested equal to them.
They release the GIL (``nogil``); callers serialise the ones that mutate state.

Compilation happens on the first call (about a second per kernel) and is cached on disk next to
this file (numba's ``cache=True``), so later processes load the machine code instead.

A bucket's readout is ``[w, w * mean_y, w * mean_y_base]`` with the attention weight
``w = count ** power`` (``power = 0``: uniform, ``1 / tau``: ``s_k = log count``), or zeros when
the bucket holds less than ``min_count``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["bucket_rows", "gather_compensate", "refresh_readouts", "scatter_write", "tree_rows"]


@nb.njit(nogil=True, cache=True)
def bucket_rows(
    z: np.ndarray,
    thr: np.ndarray,
    scale: np.ndarray,
    n_arrays: int,
    n_bits: int,
    out: np.ndarray,
) -> None:
    """Bucket row of every sample in every array into ``out`` ``(B, K)`` int64.

    ``z`` ``(B, K*L)`` float32 projection, ``thr`` ``(K*L,)`` thresholds: bit ``l`` of array ``k``
    is ``z[b, k*L + l] > thr[k*L + l]``, or ``> scale[b] * thr[k*L + l]`` when ``scale`` has a
    value per sample (the cosine hash compares ``h . w`` with ``||h|| * t`` rather than dividing
    ``h`` by its norm); the row is ``k * 2**L + sum_l bit_l * 2**l`` (the flat row of the bucket
    in the ``(K * 2**L)``-row table).
    """
    n_buckets = np.int64(1) << n_bits
    scaled = scale.shape[0] > 0
    for b in range(z.shape[0]):
        s = scale[b] if scaled else np.float32(1.0)
        for k in range(n_arrays):
            col = k * n_bits
            v = np.int64(0)
            for bit in range(n_bits):
                if z[b, col + bit] > s * thr[col + bit]:
                    v |= np.int64(1) << bit
            out[b, k] = k * n_buckets + v


@nb.njit(nogil=True, cache=True, fastmath=True)
def tree_rows(
    zt: np.ndarray,
    tree: np.ndarray,
    scale: np.ndarray,
    n_arrays: int,
    n_bits: int,
    depth: int,
    out: np.ndarray,
) -> None:
    """Bucket row of every sample in every array under ``cuts="tree"`` into ``out`` ``(B, K)``.

    ``zt`` ``(K*L, B)`` float32 is the projection *transposed* (one contiguous row per plane),
    ``tree`` ``(K, 2**L)`` the node thresholds of
    :func:`reloop.memory.estimator.fit_tree_cuts`: array ``k`` starts at node 1 and moves to
    ``2 * node + (zt[k*L + l, b] > s_b * tree[k, node])`` for ``l = 0..L-1``, with ``s_b`` the
    per-sample scale as in :func:`bucket_rows`.

    Only the first ``depth`` levels are walked (:func:`reloop.memory.estimator.tree_depth`):
    below them no node is cut (``+inf``, bit 0). The row is ``k * 2**L + node - 2**depth`` for
    the node reached at level ``depth``, as in
    :func:`reloop.memory.estimator.tree_bucket_ids`: the buckets in use are packed at the start
    of each array, which keeps the read's gather in fewer cache lines. ``zt`` needs only the
    rows of the walked levels' planes. Nodes are uint32: a fitted tree is at most
    ``log2(first batch rows)`` levels deep, far below 32.

    Speed (K=16, L=12, B=4096, one core): the samples are the innermost loop, so their walks
    (each a chain of dependent loads) proceed side by side, and unsigned node indices spare the
    negative-index checks, 3.4x faster than walking one sample at a time; the first three levels
    pick their threshold among at most four with selects instead of a load, which vectorises
    (another 1.15x). A deeper level's gather does not vectorise on this machine (LLVM's cost
    model rejects AVX2 gathers on Zen 3), which leaves the walk about twice the cost of the
    plane cuts' compare-and-pack.
    """
    n_buckets = np.int64(1) << n_bits
    n = zt.shape[1]
    one = np.uint32(1)
    two = np.uint32(2)
    if scale.shape[0] == 0:
        scale = np.ones(n, dtype=np.float32)
    node = np.empty(n, dtype=np.uint32)
    for k in range(n_arrays):
        t = tree[k]
        node[:] = one
        for bit in range(depth):
            zc = zt[k * n_bits + bit]
            if bit == 0:
                t1 = t[1]
                for b in range(n):
                    node[b] = two | np.uint32(zc[b] > scale[b] * t1)
            elif bit == 1:
                t2, t3 = t[2], t[3]
                for b in range(n):
                    nd = node[b]
                    thr = t3 if nd & one else t2
                    node[b] = (nd << one) | np.uint32(zc[b] > scale[b] * thr)
            elif bit == 2:
                t4, t5, t6, t7 = t[4], t[5], t[6], t[7]
                for b in range(n):
                    nd = node[b]
                    odd = nd & one
                    thr = (t7 if odd else t6) if nd & two else (t5 if odd else t4)
                    node[b] = (nd << one) | np.uint32(zc[b] > scale[b] * thr)
            else:
                for b in range(n):
                    nd = node[b]
                    node[b] = (nd << one) | np.uint32(zc[b] > scale[b] * t[nd])
        base = k * n_buckets - (np.int64(1) << depth)
        for b in range(n):
            out[b, k] = base + np.int64(node[b])


@nb.njit(nogil=True, cache=True, inline="always")
def _refresh(table: np.ndarray, readout: np.ndarray, r: int, power: float, min_count: float):
    c = table[r, 0]
    if c >= min_count and c > 0.0:
        if power == 0.0:  # uniform: w = 1
            scale = 1.0 / c
            w = 1.0
        elif power == 1.0:  # count, tau = 1: w = count, the readouts are the sums
            scale = 1.0
            w = c
        else:
            scale = c ** (power - 1.0)
            w = scale * c
        readout[r, 0] = w
        readout[r, 1] = table[r, 1] * scale
        readout[r, 2] = table[r, 2] * scale
    else:
        readout[r, 0] = 0.0
        readout[r, 1] = 0.0
        readout[r, 2] = 0.0


@nb.njit(nogil=True, cache=True)
def scatter_write(
    rows: np.ndarray,
    y: np.ndarray,
    y_base: np.ndarray,
    table: np.ndarray,
    readout: np.ndarray,
    power: float,
    min_count: float,
) -> None:
    """Add sample ``b`` to the ``[count, sum_y, sum_y_base]`` of each of its buckets ``rows[b]``.

    ``table`` ``(n_rows, 3)`` float64 is updated in place; each touched bucket's readout row is
    recomputed from its new sums (skipped when ``readout`` has no rows).
    """
    refresh = readout.shape[0] > 0
    for b in range(rows.shape[0]):
        yy = y[b]
        yb = y_base[b]
        for k in range(rows.shape[1]):
            r = rows[b, k]
            table[r, 0] += 1.0
            table[r, 1] += yy
            table[r, 2] += yb
            if refresh:
                _refresh(table, readout, r, power, min_count)


@nb.njit(nogil=True, cache=True)
def refresh_readouts(table: np.ndarray, readout: np.ndarray, power: float, min_count: float):
    """Recompute every bucket's readout from ``table`` (after a decay or a snapshot load)."""
    for r in range(table.shape[0]):
        _refresh(table, readout, r, power, min_count)


@nb.njit(nogil=True, cache=True)
def gather_compensate(
    rows: np.ndarray,
    readout: np.ndarray,
    y_base: np.ndarray,
    gamma: float,
    lam: float,
    out: np.ndarray,
) -> None:
    """Sum every query's ``K`` readouts and apply Eq. 9, 11 and 13, into ``out`` ``(B,)`` float64.

    With ``[w, wy, wyb] = sum_k readout[rows[b, k]]`` this is
    :func:`reloop.memory.estimator.compensate_from_sums` (tested equal), one pass instead of a
    gather into a ``(B, 3)`` array and a dozen vector operations over it: ``y_bar = wy / w``,
    ``y_bar_base = wyb / w``, ``y_err = gamma (y_bar - y_base) + (1 - gamma) (y_bar -
    y_bar_base)``, ``out = clamp(y_base + lam y_err, 0, 1)``; a query with ``w = 0`` keeps
    ``y_base``.
    """
    for b in range(rows.shape[0]):
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        for k in range(rows.shape[1]):
            r = rows[b, k]
            a0 += readout[r, 0]
            a1 += readout[r, 1]
            a2 += readout[r, 2]
        yb = y_base[b]
        if a0 > 0.0:
            y_bar = a1 / a0
            y_err = gamma * (y_bar - yb) + (1.0 - gamma) * (y_bar - a2 / a0)
            out[b] = min(max(yb + lam * y_err, 0.0), 1.0)
        else:
            out[b] = yb
