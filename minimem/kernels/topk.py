r"""Exact top-k inner-product search: for each query :math:`q_n` the k keys with largest
:math:`q_n \cdot k_j`, sorted by score (descending), ties broken by the lower index.

The scores of a chunk of queries come from one matrix product; the Numba kernel then keeps the
k best of each row with an insertion into a sorted buffer (O(M k) per row, exact, no index
structure). ``topk_inner_product_reference`` is the NumPy twin (a stable sort).
"""
from __future__ import annotations

import numba
import numpy as np

from ..backend import get_xp
from ._jit import jit


@jit(parallel=True)
def _topk_rows_kernel(scores, k, out_vals, out_idx):
    N, M = scores.shape
    for n in numba.prange(N):
        size = 0
        for j in range(M):
            x = scores[n, j]
            if size == k and not x > out_vals[n, k - 1]:
                continue  # not better than the current k-th (ties keep the lower index)
            pos = size if size < k else k - 1
            while pos > 0 and x > out_vals[n, pos - 1]:
                if pos < k:
                    out_vals[n, pos] = out_vals[n, pos - 1]
                    out_idx[n, pos] = out_idx[n, pos - 1]
                pos -= 1
            out_vals[n, pos] = x
            out_idx[n, pos] = j
            if size < k:
                size += 1


def _check(queries, keys, k):
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(f"topk_inner_product: expected queries (N, D) and keys (M, D), got "
                         f"{queries.shape} and {keys.shape}")
    if not 1 <= k <= keys.shape[0]:
        raise ValueError(f"topk_inner_product: k must be in [1, M={keys.shape[0]}], got {k}")


def topk_inner_product(queries, keys, k, chunk=1024):
    """(scores (N, k), indices (N, k)) of the k largest inner products of each query."""
    _check(queries, keys, k)
    if get_xp(queries) is not np:
        return topk_inner_product_reference(queries, keys, k)
    N = queries.shape[0]
    vals = np.empty((N, k), dtype=np.result_type(queries, keys))
    idx = np.empty((N, k), dtype=np.int64)
    for n0 in range(0, N, chunk):  # bounded memory: one (chunk, M) score block at a time
        s = np.ascontiguousarray(queries[n0:n0 + chunk] @ keys.T)
        _topk_rows_kernel(s, int(k), vals[n0:n0 + chunk], idx[n0:n0 + chunk])
    return vals, idx


def batched_topk_inner_product(queries, keys, k):
    """Per group g: the top-k of queries[g] (N, D) against keys[g] (M, D); (G, N, k) each."""
    if queries.ndim != 3 or keys.ndim != 3 or queries.shape[0] != keys.shape[0] \
            or queries.shape[2] != keys.shape[2]:
        raise ValueError(f"batched_topk_inner_product: expected queries (G, N, D) and keys "
                         f"(G, M, D), got {queries.shape} and {keys.shape}")
    if not 1 <= k <= keys.shape[1]:
        raise ValueError(f"batched_topk_inner_product: k must be in [1, M={keys.shape[1]}], "
                         f"got {k}")
    G, N = queries.shape[:2]
    if get_xp(queries) is not np:
        pairs = [topk_inner_product_reference(queries[g], keys[g], k) for g in range(G)]
        xp = get_xp(queries)
        return xp.stack([p[0] for p in pairs]), xp.stack([p[1] for p in pairs])
    s = np.ascontiguousarray(queries @ keys.transpose(0, 2, 1)).reshape(G * N, -1)
    vals = np.empty((G * N, k), dtype=s.dtype)
    idx = np.empty((G * N, k), dtype=np.int64)
    _topk_rows_kernel(s, int(k), vals, idx)
    return vals.reshape(G, N, k), idx.reshape(G, N, k)


def topk_inner_product_reference(queries, keys, k):
    """NumPy/CuPy twin: a stable sort of the negated scores."""
    _check(queries, keys, k)
    xp = get_xp(queries)
    s = queries @ keys.T
    idx = xp.argsort(-s, axis=1, kind="stable")[:, :k]
    return xp.take_along_axis(s, idx, axis=1), idx.astype(xp.int64)
