"""Kernels of the product-key memory chapter against brute force and their NumPy twins.

Small sizes, so the file also passes (slowly) under NUMBA_DISABLE_JIT=1.
"""
import numpy as np
import pytest

from minimem.kernels import product_topk as pk


def brute_topk(full, k):
    """Column indices of the k largest entries of each row, by a full sort."""
    return np.argsort(-full, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k", [(7, 1), (7, 3), (16, 16), (40, 8)])
def test_topk_rows_matches_sort(rng, path, dtype, n, k):
    x = rng.standard_normal((5, n)).astype(dtype)
    vals, ids = pk.topk_rows(x, k)
    ref = brute_topk(x, k)
    np.testing.assert_array_equal(ids, ref)
    np.testing.assert_array_equal(vals, np.take_along_axis(x, ref, axis=1))
    assert vals.dtype == dtype and ids.dtype == np.int64
    _, ri = pk.topk_rows_reference(x, k)
    np.testing.assert_array_equal(ri, ref)


def test_topk_rows_ranks_nan_last(rng, path):
    """A row with NaN falls back to the running list of minimem.kernels.topk: NaN ranks last."""
    x = rng.standard_normal((6, 20))
    x[rng.random(x.shape) < 0.3] = np.nan
    for k in (1, 5, 14, 20):
        vals, ids = pk.topk_rows(x, k)
        np.testing.assert_array_equal(ids, brute_topk(x, k))  # argsort of -x: NaN last
        np.testing.assert_array_equal(vals, np.take_along_axis(x, ids, axis=1))


@pytest.mark.parametrize("n,k", [(2, 1), (2, 4), (3, 5), (5, 5), (6, 20), (8, 8), (10, 32)])
def test_product_topk_is_the_exact_topk_of_all_slots(rng, path, n, k):
    M = 6
    s1, s2 = rng.standard_normal((2, M, n))
    full = (s1[:, :, None] + s2[:, None, :]).reshape(M, n * n)   # slot a * n + b
    ref = brute_topk(full, k)
    vals, slots = pk.product_topk(s1, s2, k)
    np.testing.assert_array_equal(np.sort(slots, axis=1), np.sort(ref, axis=1))
    np.testing.assert_allclose(vals, np.take_along_axis(full, ref, axis=1), rtol=0, atol=1e-12)
    assert (np.diff(vals, axis=1) <= 0).all()  # decreasing
    tv, ts = pk.product_topk_reference(s1, s2, k)
    np.testing.assert_array_equal(np.sort(ts, axis=1), np.sort(ref, axis=1))
    np.testing.assert_allclose(tv, vals, atol=1e-12)


def test_product_topk_float32_keeps_dtype(rng):
    s1, s2 = rng.standard_normal((2, 3, 9)).astype(np.float32)
    vals, slots = pk.product_topk(s1, s2, 4)
    assert vals.dtype == np.float32
    full = (s1[:, :, None] + s2[:, None, :]).reshape(3, 81)
    np.testing.assert_array_equal(np.sort(slots, 1), np.sort(brute_topk(full, 4), 1))


def test_kernel_errors():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"topk_rows: k must be an int in \[1, 4\]"):
        pk.topk_rows(x, 5)
    with pytest.raises(ValueError, match="topk_rows: x must be a 2-D array"):
        pk.topk_rows(np.zeros(4), 1)
    with pytest.raises(TypeError, match="product_topk: s1 must be floating"):
        pk.product_topk(np.zeros((2, 3), int), np.zeros((2, 3), int), 2)
    with pytest.raises(ValueError, match="product_topk: s1 and s2 must have the same shape"):
        pk.product_topk(np.zeros((2, 3)), np.zeros((2, 4)), 2)
    with pytest.raises(ValueError, match=r"product_topk: k must be an int in \[1, 9\]"):
        pk.product_topk(np.zeros((2, 3)), np.zeros((2, 3)), 10)


def test_picked_scores_backward_matches_naive(rng, path):
    q, g = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 4))
    C = rng.standard_normal((2, 6, 3))
    sub = rng.integers(0, 6, size=(5, 2, 4))
    gq, gC = np.zeros_like(q), np.zeros_like(C)
    for m in range(5):
        for h in range(2):
            for j in range(4):
                gq[m, h] += g[m, h, j] * C[h, sub[m, h, j]]
                gC[h, sub[m, h, j]] += g[m, h, j] * q[m, h]
    for fn in (pk.picked_scores_backward, pk.picked_scores_backward_reference):
        aq, aC = fn(q, C, sub, g)
        np.testing.assert_allclose(aq, gq, atol=1e-12)
        np.testing.assert_allclose(aC, gC, atol=1e-12)
