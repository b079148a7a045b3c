r"""Top-k search kernels of product-key memory (pure array functions, no autograd).

Product keys: a slot :math:`(a, b)` of the :math:`N = n^2` slots has the key
:math:`[c^{(1)}_a; c^{(2)}_b]`, so its score for the query :math:`q = [q_1; q_2]` splits as

.. math:: s_{ab} = \langle q_1, c^{(1)}_a\rangle + \langle q_2, c^{(2)}_b\rangle
                 = s^{(1)}_a + s^{(2)}_b .

If :math:`(a, b)` is among the :math:`k` best slots then :math:`a` is among the :math:`k` best
of :math:`s^{(1)}` (otherwise :math:`k` rows :math:`a'` with :math:`s^{(1)}_{a'} > s^{(1)}_a`
would give :math:`k` slots :math:`(a', b)` that beat it: the pigeonhole argument), and the same
for :math:`b`. So the exact top-k lies in the :math:`k \times k` block of candidate sums of the
two first-level top-k lists, and the search costs :math:`O(n + k^2)` per query instead of
:math:`O(n^2)`.

* :func:`topk_rows`: the :math:`k` largest entries of each row, in decreasing order, without
  sorting the row: the :math:`k`-th largest of :math:`2k` interleaved group maxima is a
  threshold that at least :math:`k` entries reach, and only those (about :math:`1.3k` on random
  rows) are ranked, by counting.
* :func:`product_topk`: from sub-scores ``s1, s2`` (M, n), the exact top-k of the
  :math:`n^2` sums, with slot index ``a * n + b``. The candidate loop visits the
  :math:`k \times k` block in decreasing order along each row and stops a row (and the whole
  block) as soon as a sum can no longer enter the running top-k, which is exact because both
  lists are sorted.
* :func:`picked_scores_backward`: the gradient of the k chosen scores w.r.t. the query half
  and the sub-keys, touching only the chosen sub-keys.
* :func:`flat_scan_topk`: the brute-force baseline, an exact scan over ``N`` full keys, chunked
  so the (M, N) score matrix is never held at once (a running sorted list of length k per row
  carries the result from chunk to chunk).

* the memory read and its scatter-add backward live in :mod:`minimem.kernels.weighted_read`
  (re-exported here).

Each has a NumPy twin (``*_reference``, also the CuPy path) that the tests compare with.
Ties between equal scores may be broken differently by the kernel and the twin.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ..backend import get_xp
from ._jit import jit
from ._jit import pick_kernel as _pick
from .scatter import scatter_add_rows
from .weighted_read import (  # noqa: F401
    gather_weighted_rows,
    gather_weighted_rows_backward,
    gather_weighted_rows_grad_w,
    gather_weighted_rows_backward_reference,
    gather_weighted_rows_reference,
    scatter_weighted_rows,
    scatter_weighted_rows_reference,
)


# ------------------------------------------------------------------------------------------
# A running top-k list: vals[:size] kept in decreasing order (ids alongside). Once it holds k
# entries, a new value enters only if it beats vals[k - 1]; on random input that happens about
# k (1 + ln(n / k)) times in a row of n, so the scan is mostly one comparison per entry.
# ------------------------------------------------------------------------------------------
@jit
def _insert(vals, ids, size, k, v, i):
    """Insert (v, i) into the decreasing list ``vals[:size]`` (at most k long); new size."""
    pos = size if size < k else k - 1  # when full, the smallest entry drops out
    while pos > 0 and vals[pos - 1] < v:
        vals[pos] = vals[pos - 1]
        ids[pos] = ids[pos - 1]
        pos -= 1
    vals[pos] = v
    ids[pos] = i
    return size + 1 if size < k else k


@jit
def _row_topk(x, k, offset, vals, ids, size):
    # thr: the value to beat, held in a register (-inf while the list is not full)
    thr = vals[k - 1] if size == k else -np.inf
    for j in range(x.shape[0]):
        if x[j] <= thr:
            continue  # the common case: one comparison, no call
        size = _insert(vals, ids, size, k, x[j], j + offset)
        if size == k:
            thr = vals[k - 1]
    return size


# ------------------------------------------------------------------------------------------
# Top-k of a whole row without a running list: a threshold that at least k entries reach,
# then the exact ranks of the few survivors. The loops are branch-free (vectorizable) except
# the collection of survivors, whose branch is almost never taken on long rows.
# ------------------------------------------------------------------------------------------
@jit
def _rank(x, c, i):
    """The rank of ``x[i]`` among ``x[:c]``: the entries above it (ties: the earlier first)."""
    v, r = x[i], 0
    for j in range(c):
        r += x[j] > v
    for j in range(i):
        r += x[j] == v
    return r


@jit
def _ranked_top(bv, bi, c, k, vals, ids):
    """``vals[:k], ids[:k]``: the k largest of ``bv[:c]`` in decreasing order."""
    for i in range(c):
        r = _rank(bv, c, i)
        if r < k:
            vals[r] = bv[i]
            ids[r] = bi[i]


@jit
def _row_topk_select(x, k, vals, ids, gmax, bv, bi):
    """The k largest entries of the row ``x`` (k <= len(x)) into ``vals, ids``, decreasing.

    Split ``x`` into m = min(2k, n) interleaved groups (entry j in group j % m); the k-th
    largest group maximum is a threshold that at least k entries reach (one per group), and on
    random rows only ~1.3k do, so only they are ranked.
    """
    n = x.shape[0]
    m = gmax.shape[0]
    gmax[:] = x[:m]
    for start in range(m, n, m):
        for q in range(min(m, n - start)):
            v = x[start + q]
            gmax[q] = v if v > gmax[q] else gmax[q]
    thr = -np.inf
    for i in range(m):           # thr = the group maximum of rank k - 1
        if _rank(gmax, m, i) == k - 1:
            thr = gmax[i]
    c = 0
    for j in range(n):
        if x[j] >= thr:
            bv[c] = x[j]
            bi[c] = j
            c += 1
    if c < k:                    # only with NaN in the row: fall back to the running list
        _row_topk(x, k, 0, vals, ids, 0)
        return
    _ranked_top(bv, bi, c, k, vals, ids)


@jit
def _scratch(n, k, dtype):
    return np.empty(min(2 * k, n), dtype), np.empty(n, dtype), np.empty(n, np.int64)


@jit
def _select_rows_block(x, k, vals, ids, lo, hi):
    gmax, bv, bi = _scratch(x.shape[1], k, x.dtype)
    for m in range(lo, hi):
        _row_topk_select(x[m], k, vals[m], ids[m], gmax, bv, bi)


@jit
def _product_topk_block(s1, s2, k, v1, a, v2, b, out_vals, out_slots, lo, hi):
    n, k1 = s1.shape[1], v1.shape[1]
    gmax, bv, bi = _scratch(n, k1, s1.dtype)
    for m in range(lo, hi):
        # level 1: the k1 best sub-keys of each half, in decreasing order
        _row_topk_select(s1[m], k1, v1[m], a[m], gmax, bv, bi)
        _row_topk_select(s2[m], k1, v2[m], b[m], gmax, bv, bi)
        _candidate_topk(v1[m], a[m], v2[m], b[m], n, k, out_vals[m], out_slots[m])


@jit
def _candidate_topk(v1, a, v2, b, n, k, hv, hs):
    """Level 2: the k best of the k1 x k1 candidate sums v1[i] + v2[j] (both lists sorted)."""
    k1 = v1.shape[0]
    size = 0
    for i in range(k1):
        if size == k and v1[i] + v2[0] <= hv[k - 1]:
            break  # every later row of the block is smaller still
        for j in range(k1):
            c = v1[i] + v2[j]
            if size == k and c <= hv[k - 1]:
                break  # the rest of this row is smaller
            size = _insert(hv, hs, size, k, c, a[i] * n + b[j])


# Each row loop comes twice: serial, and multi-threaded (prange over blocks of rows, one
# scratch per block) for large inputs, where the threads' start-up cost is worth paying.
@jit
def _topk_rows_serial(x, k, offset, vals, ids, sizes):
    """Running lists (the flat scan feeds a row in several chunks)."""
    for m in range(x.shape[0]):
        sizes[m] = _row_topk(x[m], k, offset, vals[m], ids[m], sizes[m])


@jit(parallel=True)
def _topk_rows_parallel(x, k, offset, vals, ids, sizes):
    for m in prange(x.shape[0]):
        sizes[m] = _row_topk(x[m], k, offset, vals[m], ids[m], sizes[m])


@jit
def _select_rows_serial(x, k, vals, ids, n_blocks):
    _select_rows_block(x, k, vals, ids, 0, x.shape[0])


@jit(parallel=True)
def _select_rows_parallel(x, k, vals, ids, n_blocks):
    M = x.shape[0]
    for t in prange(n_blocks):
        _select_rows_block(x, k, vals, ids, t * M // n_blocks, (t + 1) * M // n_blocks)


@jit
def _product_topk_serial(s1, s2, k, v1, a, v2, b, out_vals, out_slots, n_blocks):
    _product_topk_block(s1, s2, k, v1, a, v2, b, out_vals, out_slots, 0, s1.shape[0])


@jit(parallel=True)
def _product_topk_parallel(s1, s2, k, v1, a, v2, b, out_vals, out_slots, n_blocks):
    M = s1.shape[0]
    for t in prange(n_blocks):
        _product_topk_block(s1, s2, k, v1, a, v2, b, out_vals, out_slots, t * M // n_blocks,
                            (t + 1) * M // n_blocks)


# ------------------------------------------------------------------------------------------
def _check_rows(fn, name, x):
    if getattr(x, "ndim", None) != 2:
        raise ValueError(f"{fn}: {name} must be a 2-D array (rows, n), got shape "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if x.dtype.kind != "f":
        raise TypeError(f"{fn}: {name} must be floating, got dtype {x.dtype}")


def _check_k(fn, k, n):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"{fn}: k must be an int in [1, {n}], got {k!r}")


def topk_rows_reference(x, k):
    """NumPy twin of :func:`topk_rows`: ``argpartition`` then a sort of the k chosen."""
    xp = get_xp(x)
    part = xp.argpartition(-x, k - 1, axis=1)[:, :k] if k < x.shape[1] else \
        xp.broadcast_to(xp.arange(x.shape[1]), x.shape).copy()
    vals = xp.take_along_axis(x, part, axis=1)
    order = xp.argsort(-vals, axis=1, kind="stable")
    return xp.take_along_axis(vals, order, axis=1), xp.take_along_axis(part, order, axis=1)


def topk_rows(x, k):
    """The ``k`` largest entries of each row of ``x`` (M, n) and their columns, decreasing.

    Returns ``(values (M, k), indices (M, k) int64)``.
    """
    _check_rows("topk_rows", "x", x)
    _check_k("topk_rows", k, x.shape[1])
    if get_xp(x) is not np:
        return topk_rows_reference(x, k)
    x = np.ascontiguousarray(x)
    vals = np.empty((x.shape[0], k), dtype=x.dtype)
    ids = np.empty((x.shape[0], k), dtype=np.int64)
    _pick(_select_rows_serial, _select_rows_parallel, x.size)(x, k, vals, ids,
                                                              numba.get_num_threads())
    return vals, ids


def product_topk_reference(s1, s2, k):
    """NumPy twin of :func:`product_topk`: the k x k candidate block built explicitly."""
    xp = get_xp(s1)
    n = s1.shape[1]
    k1 = min(k, n)
    v1, a = topk_rows_reference(s1, k1)
    v2, b = topk_rows_reference(s2, k1)
    cand = (v1[:, :, None] + v2[:, None, :]).reshape(s1.shape[0], k1 * k1)
    slots = (a[:, :, None] * n + b[:, None, :]).reshape(s1.shape[0], k1 * k1)
    vals, pos = topk_rows_reference(cand, k)
    return vals, xp.take_along_axis(slots, pos, axis=1)


def product_topk(s1, s2, k):
    """Exact top-k of ``s1[m, a] + s2[m, b]`` over all ``n * n`` pairs, for each row ``m``.

    ``s1, s2``: sub-key scores (M, n) of the same dtype. Returns ``(scores (M, k),
    slots (M, k) int64)``, scores decreasing, slot ``a * n + b``. Costs O(n + k^2) per row
    (level-1 running lists, then at most the k x k candidate block); nothing of size n^2 is
    formed.
    """
    _check_rows("product_topk", "s1", s1)
    _check_rows("product_topk", "s2", s2)
    if s1.shape != s2.shape:
        raise ValueError(f"product_topk: s1 and s2 must have the same shape, got {s1.shape} "
                         f"and {s2.shape}")
    n = s1.shape[1]
    _check_k("product_topk", k, n * n)
    if get_xp(s1) is not np:
        return product_topk_reference(s1, s2, k)
    dt = np.result_type(s1.dtype, s2.dtype)
    s1 = np.ascontiguousarray(s1, dtype=dt)
    s2 = np.ascontiguousarray(s2, dtype=dt)
    M, k1 = s1.shape[0], min(k, n)
    v1, v2 = np.empty((M, k1), dtype=dt), np.empty((M, k1), dtype=dt)
    a, b = np.empty((M, k1), dtype=np.int64), np.empty((M, k1), dtype=np.int64)
    vals, slots = np.empty((M, k), dtype=dt), np.empty((M, k), dtype=np.int64)
    kernel = _pick(_product_topk_serial, _product_topk_parallel, 2 * s1.size + M * k * k)
    kernel(s1, s2, k, v1, a, v2, b, vals, slots, numba.get_num_threads())
    return vals, slots


# ------------------------------------------------------------------------------------------
def _check_scan(fn, queries, keys, k):
    _check_rows(fn, "queries", queries)
    _check_rows(fn, "keys", keys)
    if queries.shape[1] != keys.shape[1]:
        raise ValueError(f"{fn}: queries (M, d) and keys (N, d) must share d, got "
                         f"{queries.shape} and {keys.shape}")
    _check_k(fn, k, keys.shape[0])


def flat_scan_topk_reference(queries, keys, k):
    """NumPy twin: the whole (M, N) score matrix, then :func:`topk_rows_reference`."""
    _check_scan("flat_scan_topk_reference", queries, keys, k)
    return topk_rows_reference(queries @ keys.T, k)


def flat_scan_topk(queries, keys, k, chunk=32768):
    """Exact top-k of ``keys @ q`` over all N keys for each query row (the brute-force scan).

    ``queries`` (M, d), ``keys`` (N, d). The keys are scored ``chunk`` at a time (one BLAS
    matmul each) and merged into per-row running top-k lists, so memory stays O(M * chunk).
    """
    _check_scan("flat_scan_topk", queries, keys, k)
    if get_xp(queries) is not np:
        return flat_scan_topk_reference(queries, keys, k)
    M = queries.shape[0]
    dt = np.result_type(queries.dtype, keys.dtype)
    vals = np.empty((M, k), dtype=dt)
    ids = np.empty((M, k), dtype=np.int64)
    sizes = np.zeros(M, dtype=np.int64)
    for start in range(0, keys.shape[0], chunk):
        scores = np.ascontiguousarray(queries @ keys[start:start + chunk].T, dtype=dt)
        _pick(_topk_rows_serial, _topk_rows_parallel, scores.size)(scores, k, start, vals, ids,
                                                                   sizes)
    return vals, ids


@jit
def _picked_scores_backward_head(q, C, sub, g, grad_q, grad_C, h):
    for m in range(q.shape[0]):
        for j in range(sub.shape[2]):
            a, gj = sub[m, h, j], g[m, h, j]
            for c in range(C.shape[2]):
                grad_q[m, h, c] += gj * C[h, a, c]
                grad_C[h, a, c] += gj * q[m, h, c]


@jit
def _picked_scores_backward_serial(q, C, sub, g, grad_q, grad_C):
    for h in range(C.shape[0]):
        _picked_scores_backward_head(q, C, sub, g, grad_q, grad_C, h)


@jit(parallel=True)
def _picked_scores_backward_parallel(q, C, sub, g, grad_q, grad_C):
    # Heads own disjoint sub-key tables, so one thread per head never collides.
    for h in prange(C.shape[0]):
        _picked_scores_backward_head(q, C, sub, g, grad_q, grad_C, h)


def picked_scores_backward_reference(q, C, sub, g):
    r"""NumPy twin of :func:`picked_scores_backward`."""
    xp = get_xp(q)
    H, n, dh = C.shape
    rows = sub + (xp.arange(H) * n)[None, :, None]               # (M, H, k) rows of (H*n)
    flat_C = C.reshape(H * n, dh)
    grad_q = (g[:, :, None, :] @ flat_C[rows])[:, :, 0, :]      # sum_j g_j C[h, a_j]
    grad_C = xp.zeros((H * n, dh), dtype=C.dtype)
    scatter_add_rows(grad_C, rows.reshape(-1), (g[..., None] * q[:, :, None, :]).reshape(-1, dh))
    return grad_q, grad_C.reshape(H, n, dh)


def picked_scores_backward(q, C, sub, g):
    r"""Backward of the chosen scores :math:`s_{mhj} = \langle q_{mh}, C_h[a_{mhj}] \rangle`
    (one half): ``(grad_q (M, H, d), grad_C (H, n, d))`` for upstream ``g`` (M, H, k), with
    :math:`\bar q_{mh} = \sum_j g_{mhj} C_h[a_{mhj}]` and the scatter-add
    :math:`\bar C_h[a_{mhj}] \mathrel{+}= g_{mhj} q_{mh}`: work O(M H k d), independent of n.
    """
    if get_xp(q) is not np:
        return picked_scores_backward_reference(q, C, sub, g)
    dt = C.dtype
    grad_q = np.zeros(q.shape, dtype=dt)
    grad_C = np.zeros(C.shape, dtype=dt)
    kernel = _pick(_picked_scores_backward_serial, _picked_scores_backward_parallel,
                   sub.size * C.shape[2] if C.shape[0] > 1 else 0)
    kernel(np.ascontiguousarray(q, dt), np.ascontiguousarray(C),
           np.ascontiguousarray(sub, np.int64), np.ascontiguousarray(g, dt), grad_q, grad_C)
    return grad_q, grad_C
