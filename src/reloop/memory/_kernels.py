"""The sketch's per-sample loops, compiled with numba: bucket rows, write scatter, read gather.

:class:`reloop.memory.ErrorMemory` spends its time in three loops around the one matrix product
of sign-random-projection hashing (``h @ planes``, left to torch's BLAS):

* :func:`bucket_rows` turns the projection into each sample's bucket row in every array (sign
  bits against the normalisation's thresholds, packed into an integer), one pass over the
  ``(B, K*L)`` projection;
* :func:`scatter_write` adds the samples to their ``K`` buckets' running sums and refreshes those
  buckets' readouts, touching only the ``B*K`` buckets written;
* :func:`gather_sum` sums the ``K`` weighted readouts of every query.

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

__all__ = ["bucket_rows", "gather_sum", "refresh_readouts", "scatter_write"]


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
def gather_sum(rows: np.ndarray, readout: np.ndarray, out: np.ndarray) -> None:
    """``out[b] = sum_k readout[rows[b, k]]`` (float64): ``[sum w, sum w y, sum w y_base]``."""
    for b in range(rows.shape[0]):
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        for k in range(rows.shape[1]):
            r = rows[b, k]
            a0 += readout[r, 0]
            a1 += readout[r, 1]
            a2 += readout[r, 2]
        out[b, 0] = a0
        out[b, 1] = a1
        out[b, 2] = a2
