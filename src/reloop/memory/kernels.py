"""The sketch's per-sample loops, compiled with numba, each beside its pure-numpy reference.

:class:`reloop.memory.ErrorMemory` spends its time in three loops around the one matrix product
of sign-random-projection hashing (``planes.T @ h.T``, left to torch's BLAS):

* :func:`tree_rows` turns the projection into each sample's bucket row in every array: a walk
  down a depth-``L`` tree per array, where each bit's threshold depends on the bits before it;
* :func:`scatter_write` adds the samples to their ``K`` buckets' running sums and refreshes those
  buckets' readouts, touching only the ``B*K`` buckets written (:func:`refresh_readouts`
  refreshes every bucket, after a decay or a snapshot load);
* :func:`gather_compensate` sums the ``K`` readouts of every query and turns them into its
  compensated prediction.

Written with numpy operations (the ``*_reference`` functions below, which take the same
arguments and are tested equal to the kernels), the same work takes several passes over
full-size temporaries; compiled, each is one pass. The kernels release the GIL (``nogil``);
callers serialise the ones that mutate state.

Compilation happens on the first call (about a second per kernel) and is cached on disk next to
this file (numba's ``cache=True``), so later processes load the machine code instead.

A bucket's readout is its ``[count, sum y, sum y_base]`` in float32, or zeros while it is empty:
the ``K`` buckets of a query are pooled, ``y_bar = sum_k sum_y_k / sum_k count_k``, which is
Eq. 11-12 with ``s_k = log count_k`` (see :mod:`reloop.memory.estimator`).
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = [
    "gather_compensate",
    "gather_compensate_reference",
    "refresh_readouts",
    "refresh_readouts_reference",
    "scatter_write",
    "scatter_write_reference",
    "tree_rows",
    "tree_rows_reference",
]


@nb.njit(nogil=True, cache=True)
def tree_rows(
    zt: np.ndarray,
    tree: np.ndarray,
    scale: np.ndarray,
    n_arrays: int,
    n_bits: int,
    depth: int,
    out: np.ndarray,
) -> None:
    """Bucket row of every sample in every array into ``out`` ``(B, K)`` int64.

    ``zt`` ``(K*L, B)`` float32 is the projection ``planes.T @ h.T`` *transposed* (one contiguous
    row per plane), ``tree`` ``(K, 2**L)`` the node thresholds of
    :func:`reloop.memory.estimator.fit_tree_cuts`, ``scale`` ``(B,)`` float32 each sample's
    ``||h||``: array ``k`` starts at node 1 and moves to
    ``2 * node + (zt[k*L + l, b] > scale[b] * tree[k, node])`` for ``l = 0..depth-1`` (the
    cosine hash compares ``h . w`` with ``||h|| t`` rather than dividing ``h`` by its norm).

    Only the first ``depth`` levels are walked (:func:`reloop.memory.estimator.tree_depth`):
    below them no node is cut (``+inf``, bit 0). The row is ``k * 2**L + node - 2**depth`` for
    the node reached at level ``depth``: the buckets in use are packed at the start of each
    array, which keeps the read's gather in fewer cache lines. ``zt`` needs only the rows of the
    walked levels' planes. Nodes are uint32: a fitted tree is at most
    ``log2(first batch rows)`` levels deep, far below 32.

    Speed (K=16, L=12, B=4096, one core): the samples are the innermost loop, so their walks
    (each a chain of dependent loads) proceed side by side, and unsigned node indices spare the
    negative-index checks, 3.4x faster than walking one sample at a time; the first three levels
    pick their threshold among at most four with selects instead of a load, which vectorises
    (another 1.15x). No fast-math: a zero hidden vector (``scale`` 0) against a node that is not
    cut (``0 * inf``, NaN) must take bit 0, as in IEEE arithmetic and the reference.
    """
    n_buckets = np.int64(1) << n_bits
    n = zt.shape[1]
    one = np.uint32(1)
    two = np.uint32(2)
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


def tree_rows_reference(
    zt: np.ndarray,
    tree: np.ndarray,
    scale: np.ndarray,
    n_arrays: int,
    n_bits: int,
    depth: int,
    out: np.ndarray,
) -> None:
    """:func:`tree_rows` in numpy: every sample's walk one level at a time."""
    for k in range(n_arrays):
        node = np.ones(zt.shape[1], dtype=np.int64)
        for bit in range(depth):
            with np.errstate(invalid="ignore"):  # 0 * inf: NaN, compared False
                node = 2 * node + (zt[k * n_bits + bit] > scale * tree[k, node])
        out[:, k] = k * (1 << n_bits) - (1 << depth) + node


@nb.njit(nogil=True, cache=True, inline="always")
def _refresh(table: np.ndarray, readout: np.ndarray, r: int) -> None:
    if table[r, 0] > 0.0:
        readout[r, 0] = table[r, 0]
        readout[r, 1] = table[r, 1]
        readout[r, 2] = table[r, 2]
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
) -> None:
    """Add sample ``b`` to the ``[count, sum_y, sum_y_base]`` of each of its buckets ``rows[b]``.

    ``table`` ``(n_rows, 3)`` float64 is updated in place, samples in order; each touched
    bucket's float32 ``readout`` row is recomputed from its new sums.
    """
    for b in range(rows.shape[0]):
        yy = y[b]
        yb = y_base[b]
        for k in range(rows.shape[1]):
            r = rows[b, k]
            table[r, 0] += 1.0
            table[r, 1] += yy
            table[r, 2] += yb
            _refresh(table, readout, r)


def scatter_write_reference(
    rows: np.ndarray,
    y: np.ndarray,
    y_base: np.ndarray,
    table: np.ndarray,
    readout: np.ndarray,
) -> None:
    """:func:`scatter_write` in numpy (``np.add.at`` adds in the samples' order)."""
    flat = rows.reshape(-1)
    K = rows.shape[1]
    np.add.at(table[:, 0], flat, 1.0)
    np.add.at(table[:, 1], flat, np.repeat(y, K))
    np.add.at(table[:, 2], flat, np.repeat(y_base, K))
    touched = np.unique(flat)
    filled = table[touched, 0] > 0.0
    readout[touched] = np.where(filled[:, None], table[touched], 0.0).astype(np.float32)


@nb.njit(nogil=True, cache=True)
def refresh_readouts(table: np.ndarray, readout: np.ndarray) -> None:
    """Recompute every bucket's readout from ``table`` (after a decay or a snapshot load)."""
    for r in range(table.shape[0]):
        _refresh(table, readout, r)


def refresh_readouts_reference(table: np.ndarray, readout: np.ndarray) -> None:
    """:func:`refresh_readouts` in numpy."""
    filled = table[:, 0] > 0.0
    readout[:] = np.where(filled[:, None], table, 0.0).astype(np.float32)


@nb.njit(nogil=True, cache=True)
def gather_compensate(
    rows: np.ndarray,
    readout: np.ndarray,
    y_base: np.ndarray,
    gamma: float,
    lam: float,
    out: np.ndarray,
) -> None:
    """Pool every query's ``K`` readouts and apply Eq. 9, 11 and 13, into ``out`` ``(B,)``.

    With ``[c, sy, syb] = sum_k readout[rows[b, k]]`` (float64): ``y_bar = sy / c``,
    ``y_bar_base = syb / c``, ``y_err = gamma (y_bar - y_base) + (1 - gamma) (y_bar -
    y_bar_base)``, ``out = clamp(y_base + lam y_err, 0, 1)``; a query whose buckets are all empty
    (``c = 0``) keeps ``y_base``. One pass instead of a gather into a ``(B, 3)`` array and a
    dozen vector operations over it.
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


def gather_compensate_reference(
    rows: np.ndarray,
    readout: np.ndarray,
    y_base: np.ndarray,
    gamma: float,
    lam: float,
    out: np.ndarray,
) -> None:
    """:func:`gather_compensate` in numpy (the K readouts summed in array order)."""
    sums = np.zeros((rows.shape[0], 3))
    for k in range(rows.shape[1]):
        sums += readout[rows[:, k]]
    c = sums[:, 0]
    filled = c > 0.0
    denom = np.where(filled, c, 1.0)
    y_bar = sums[:, 1] / denom
    y_err = gamma * (y_bar - y_base) + (1.0 - gamma) * (y_bar - sums[:, 2] / denom)
    out[:] = np.where(filled, np.clip(y_base + lam * y_err, 0.0, 1.0), y_base)
