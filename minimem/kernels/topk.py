r"""Exact top-k of inner products: for each query :math:`q_m` the k keys :math:`x_j` with the
largest scores :math:`s_{mj} = q_m \cdot x_j`, sorted by score (descending), ties broken by
the lower index. This one scan serves the flat baseline of product-key memory
(``flat_key_topk``) and the kNN memory (``KNNMemory.search``).

The keys are scored ``chunk`` at a time (one BLAS matmul per chunk), so the (M, N) score
matrix is never held: memory is O(M chunk). Each query row carries a *running top-k list*
from chunk to chunk: ``vals[:size]`` ranked, ``ids`` alongside. Once the list is full, a new
score enters only if it beats ``vals[k - 1]``; on random input that happens about
:math:`k (1 + \ln(N / k))` times in a row of N, so the scan is mostly one comparison per score
(O(N k) in the worst case, exact, no index structure).

NaN: a NaN score ranks below every number, ``-inf`` included (as in NumPy's sort of
``-scores``). So a NaN never pushes out a number; it is returned only when its row has fewer
than k non-NaN scores, after them, NaNs in index order.

:func:`topk_insert` and :func:`topk_scan_row` are the running-list helpers, also used by the
two-level search of :mod:`minimem.kernels.product_topk`. The NumPy twins (``*_reference``,
also the CuPy path) take a stable sort of the whole score matrix.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..backend import get_xp
from ..checks import check_array
from ._jit import jit
from ._jit import pick_kernel as _pick


# ------------------------------------------------------------------------------------------
# The running top-k list
# ------------------------------------------------------------------------------------------
@jit
def beats(v, w):
    """``v`` ranks before ``w``: it is larger, or it is a number and ``w`` is NaN.

    Equal values do not beat each other, so an earlier (lower) index stays first.
    """
    return v > w or (np.isnan(w) and not np.isnan(v))


@jit
def topk_insert(vals, ids, size, k, v, i):
    """Insert (v, i) into the ranked list ``vals[:size]`` (at most k long); the new size.

    The caller has checked that it enters: ``size < k`` or ``beats(v, vals[k - 1])``.
    """
    pos = size if size < k else k - 1  # when full, the last entry drops out
    while pos > 0 and beats(v, vals[pos - 1]):
        vals[pos] = vals[pos - 1]
        ids[pos] = ids[pos - 1]
        pos -= 1
    vals[pos] = v
    ids[pos] = i
    return size + 1 if size < k else k


@jit
def topk_scan_row(x, k, offset, vals, ids, size):
    """Fold the scores ``x`` (of ids ``offset``, ``offset + 1``, ...) into the running list
    ``vals[:size], ids[:size]``; the new size."""
    n = x.shape[0]
    j = 0
    # Until the list holds k numbers every score is a candidate (a NaN enters only while the
    # list is not full, and any number beats a NaN at the end).
    while j < n and not (size == k and not np.isnan(vals[k - 1])):
        if size < k or beats(x[j], vals[k - 1]):
            size = topk_insert(vals, ids, size, k, x[j], j + offset)
        j += 1
    if j == n:
        return size
    # The hot loop: one comparison with a register. NaN fails it, and so does a tie with the
    # k-th (the earlier index stays).
    thr = vals[k - 1]
    for t in range(j, n):
        if x[t] > thr:
            topk_insert(vals, ids, k, k, x[t], t + offset)
            thr = vals[k - 1]
    return size


# Twins (the policy of minimem.kernels._jit): one row per iteration, no two rows share memory.
@jit
def _scan_rows_serial(scores, k, offset, vals, ids, sizes):
    for m in range(scores.shape[0]):
        sizes[m] = topk_scan_row(scores[m], k, offset, vals[m], ids[m], sizes[m])


@jit(parallel=True)
def _scan_rows_parallel(scores, k, offset, vals, ids, sizes):
    for m in prange(scores.shape[0]):
        sizes[m] = topk_scan_row(scores[m], k, offset, vals[m], ids[m], sizes[m])


# ------------------------------------------------------------------------------------------
# Argument checks (shared with product_topk)
# ------------------------------------------------------------------------------------------
def check_k(fn, k, n):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"{fn}: k must be an int in [1, {n}], got {k!r}")


def _check_float(fn, name, x, shape):
    """``x`` a float32/float64 array with as many axes as ``shape`` (a tuple of axis names)."""
    check_array(fn, name, x)
    ndim = len(shape)
    shape = f"({', '.join(shape)})"
    if getattr(x, "ndim", None) != ndim:
        raise ValueError(f"{fn}: {name} must be a {ndim}-D array {shape}, got shape "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{fn}: {name} must be floating (float32 or float64), got dtype "
                        f"{x.dtype}")


def _check_scan(fn, queries, keys, k, chunk, batched):
    group = ("G",) if batched else ()
    _check_float(fn, "queries", queries, group + ("M", "d"))
    _check_float(fn, "keys", keys, group + ("N", "d"))
    if queries.shape[-1] != keys.shape[-1] or queries.shape[:-2] != keys.shape[:-2]:
        q_shape, k_shape = ("(G, M, d)", "(G, N, d)") if batched else ("(M, d)", "(N, d)")
        raise ValueError(f"{fn}: keys {k_shape} must match queries {q_shape}, got "
                         f"{keys.shape} and {queries.shape}")
    check_k(fn, k, keys.shape[-2])
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"{fn}: chunk must be an int >= 1, got {chunk!r}")


# ------------------------------------------------------------------------------------------
# Entry points
# ------------------------------------------------------------------------------------------
def _reference(queries, keys, k):
    xp = get_xp(queries)
    s = queries @ xp.swapaxes(keys, -1, -2)
    idx = xp.argsort(-s, axis=-1, kind="stable")[..., :k]  # -NaN is NaN: sorted last
    return xp.take_along_axis(s, idx, axis=-1), idx.astype(xp.int64)


def _scan(queries, keys, k, chunk):
    """The chunked scan of (G, M, d) queries against (G, N, d) keys."""
    if get_xp(queries) is not np:
        return _reference(queries, keys, k)
    G, M = queries.shape[:2]
    dt = np.result_type(queries.dtype, keys.dtype)
    vals = np.empty((G * M, k), dtype=dt)
    ids = np.empty((G * M, k), dtype=np.int64)
    sizes = np.zeros(G * M, dtype=np.int64)
    for start in range(0, keys.shape[1], chunk):
        scores = queries @ keys[:, start:start + chunk].transpose(0, 2, 1)  # (G, M, c)
        scores = np.ascontiguousarray(scores, dtype=dt).reshape(G * M, scores.shape[-1])
        _pick(_scan_rows_serial, _scan_rows_parallel, scores.size)(scores, int(k), start, vals,
                                                                   ids, sizes)
    return vals.reshape(G, M, k), ids.reshape(G, M, k)


def topk_inner_product(queries, keys, k, chunk=32768):
    """The k largest ``queries[m] @ keys[j]`` of each query: ``(scores (M, k), ids (M, k))``.

    ``queries`` (M, d), ``keys`` (N, d), float32 or float64. Scores decrease along a row,
    ties keep the lower index, NaN ranks last; ids are int64. ``chunk`` keys are scored at a
    time, so memory is O(M chunk).
    """
    _check_scan("topk_inner_product", queries, keys, k, chunk, batched=False)
    vals, ids = _scan(queries[None], keys[None], k, chunk)
    return vals[0], ids[0]


def batched_topk_inner_product(queries, keys, k, chunk=32768):
    """:func:`topk_inner_product` of ``queries[g]`` (M, d) against ``keys[g]`` (N, d) for each
    group g: ``(scores (G, M, k), ids (G, M, k))``; memory O(G M chunk)."""
    _check_scan("batched_topk_inner_product", queries, keys, k, chunk, batched=True)
    return _scan(queries, keys, k, chunk)


def topk_inner_product_reference(queries, keys, k):
    """NumPy/CuPy twin of :func:`topk_inner_product`: a stable sort of the negated scores."""
    _check_scan("topk_inner_product_reference", queries, keys, k, 1, batched=False)
    return _reference(queries, keys, k)


def batched_topk_inner_product_reference(queries, keys, k):
    """NumPy/CuPy twin of :func:`batched_topk_inner_product`."""
    _check_scan("batched_topk_inner_product_reference", queries, keys, k, 1, batched=True)
    return _reference(queries, keys, k)
