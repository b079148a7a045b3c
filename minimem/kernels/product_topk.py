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
* the brute-force baseline, an exact scan over all ``N`` full keys, is
  :func:`minimem.kernels.topk.topk_inner_product`; its running top-k list
  (:func:`~minimem.kernels.topk.topk_insert`) is the candidate loop's, and its row scan is
  what :func:`topk_rows` falls back to on a row with NaN.
* the memory read and its scatter-add backward live in :mod:`minimem.kernels.weighted_read`.

Each has a NumPy twin (``*_reference``, also the CuPy path) that the tests compare with.
Ties between equal scores may be broken differently by the kernel and the twin.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..backend import get_xp
from ..checks import check_array, check_dtype, check_float_array, check_index_bounds, check_shape
from ._jit import jit
from ._jit import pick_kernel as _pick
from .scatter import scatter_add_rows
from .topk import check_k, topk_insert, topk_scan_row


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
            gmax[q] = max(gmax[q], v)
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
        topk_scan_row(x, k, 0, vals, ids, 0)
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
            size = topk_insert(hv, hs, size, k, c, a[i] * n + b[j])


# Twins (the policy of minimem.kernels._jit): the parallel one splits the rows into one block
# per thread, each block with its own scratch, so it takes the thread count.
@jit
def _select_rows_serial(x, k, vals, ids):
    _select_rows_block(x, k, vals, ids, 0, x.shape[0])


@jit(parallel=True)
def _select_rows_parallel(x, k, vals, ids, n_threads):
    M = x.shape[0]
    for t in prange(n_threads):
        _select_rows_block(x, k, vals, ids, t * M // n_threads, (t + 1) * M // n_threads)


@jit
def _product_topk_serial(s1, s2, k, v1, a, v2, b, out_vals, out_slots):
    _product_topk_block(s1, s2, k, v1, a, v2, b, out_vals, out_slots, 0, s1.shape[0])


@jit(parallel=True)
def _product_topk_parallel(s1, s2, k, v1, a, v2, b, out_vals, out_slots, n_threads):
    M = s1.shape[0]
    for t in prange(n_threads):
        _product_topk_block(s1, s2, k, v1, a, v2, b, out_vals, out_slots, t * M // n_threads,
                            (t + 1) * M // n_threads)


# ------------------------------------------------------------------------------------------
def _check_rows(fn, name, x):
    check_array(fn, name, x)
    if getattr(x, "ndim", None) != 2:
        raise ValueError(f"{fn}: {name} must be a 2-D array (rows, n), got shape "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{fn}: {name} must be floating (float32 or float64), got dtype "
                        f"{x.dtype}")


def topk_rows_reference(x, k):
    """NumPy twin of :func:`topk_rows`: ``argpartition`` then a sort of the k chosen."""
    _check_rows("topk_rows_reference", "x", x)
    check_k("topk_rows_reference", k, x.shape[1])
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
    check_k("topk_rows", k, x.shape[1])
    if get_xp(x) is not np:
        return topk_rows_reference(x, k)
    x = np.ascontiguousarray(x)
    vals = np.empty((x.shape[0], k), dtype=x.dtype)
    ids = np.empty((x.shape[0], k), dtype=np.int64)
    _pick(_select_rows_serial, _select_rows_parallel, x.size, per_thread=True)(x, k, vals, ids)
    return vals, ids


def product_topk_reference(s1, s2, k):
    """NumPy twin of :func:`product_topk`: the k x k candidate block built explicitly."""
    _check_product("product_topk_reference", s1, s2, k)
    xp = get_xp(s1)
    n = s1.shape[1]
    k1 = min(k, n)
    v1, a = topk_rows_reference(s1, k1)
    v2, b = topk_rows_reference(s2, k1)
    cand = (v1[:, :, None] + v2[:, None, :]).reshape(s1.shape[0], k1 * k1)
    slots = (a[:, :, None] * n + b[:, None, :]).reshape(s1.shape[0], k1 * k1)
    vals, pos = topk_rows_reference(cand, k)
    return vals, xp.take_along_axis(slots, pos, axis=1)


def _check_product(fn, s1, s2, k):
    _check_rows(fn, "s1", s1)
    _check_rows(fn, "s2", s2)
    if s1.shape != s2.shape:
        raise ValueError(f"{fn}: s1 and s2 must have the same shape, got {s1.shape} "
                         f"and {s2.shape}")
    check_k(fn, k, s1.shape[1] ** 2)


def product_topk(s1, s2, k):
    """Exact top-k of ``s1[m, a] + s2[m, b]`` over all ``n * n`` pairs, for each row ``m``.

    ``s1, s2``: sub-key scores (M, n) of the same dtype. Returns ``(scores (M, k),
    slots (M, k) int64)``, scores decreasing, slot ``a * n + b``. Costs O(n + k^2) per row
    (level-1 running lists, then at most the k x k candidate block); nothing of size n^2 is
    formed.
    """
    _check_product("product_topk", s1, s2, k)
    n = s1.shape[1]
    if get_xp(s1) is not np:
        return product_topk_reference(s1, s2, k)
    dt = np.result_type(s1.dtype, s2.dtype)
    s1 = np.ascontiguousarray(s1, dtype=dt)
    s2 = np.ascontiguousarray(s2, dtype=dt)
    M, k1 = s1.shape[0], min(k, n)
    v1, v2 = np.empty((M, k1), dtype=dt), np.empty((M, k1), dtype=dt)
    a, b = np.empty((M, k1), dtype=np.int64), np.empty((M, k1), dtype=np.int64)
    vals, slots = np.empty((M, k), dtype=dt), np.empty((M, k), dtype=np.int64)
    kernel = _pick(_product_topk_serial, _product_topk_parallel, 2 * s1.size + M * k * k,
                   per_thread=True)
    kernel(s1, s2, k, v1, a, v2, b, vals, slots)
    return vals, slots


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


def _check_picked(fn, q, C, sub, g):
    for name, a in (("q", q), ("C", C), ("g", g)):
        check_float_array(fn, name, a, ndim=3)
    check_array(fn, "sub", sub)
    check_dtype(fn, "sub", sub, "iu")
    M, H, d = q.shape
    check_shape(fn, "C", C, (H, None, d), names="H, n, d")
    check_shape(fn, "sub", sub, (M, H, None), names="M, H, k")
    check_shape(fn, "g", g, sub.shape, names="M, H, k")
    # before the kernel reads C[h, a]: a sub-key out of range there is a segfault
    check_index_bounds(fn, "sub", sub, C.shape[1])


def picked_scores_backward_reference(q, C, sub, g):
    r"""NumPy twin of :func:`picked_scores_backward`."""
    _check_picked("picked_scores_backward_reference", q, C, sub, g)
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
    _check_picked("picked_scores_backward", q, C, sub, g)
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
