"""The exact top-k of inner products (the flat product-key scan and the kNN memory's search)
against its NumPy twin and a brute force written here.

Small sizes, so the file also passes under NUMBA_DISABLE_JIT=1.
"""
import numpy as np
import pytest

from minimem.kernels import topk as tk

NAN = np.nan


def brute_topk(queries, keys, k):
    """(scores, ids) of each query by a Python sort: larger first, NaN last, ties by index."""
    s = queries @ keys.T
    vals, ids = [], []
    for row in s:
        rank = [(1, 0.0, j) if np.isnan(v) else (0, -v, j) for j, v in enumerate(row)]
        order = [j for _, _, j in sorted(rank)][:k]
        ids.append(order)
        vals.append(row[order])
    return np.array(vals), np.array(ids, dtype=np.int64)


def assert_same(got, expected):
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[0], expected[0])  # NaN == NaN here


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,k,chunk", [(30, 4, 3), (30, 4, 30), (30, 4, 1000), (17, 17, 5),
                                       (17, 17, 1), (9, 1, 4), (64, 8, 8)])
def test_scan_matches_brute_force_and_twin(rng, path, dtype, N, k, chunk):
    queries = rng.standard_normal((7, 5)).astype(dtype)
    keys = rng.standard_normal((N, 5)).astype(dtype)
    vals, ids = tk.topk_inner_product(queries, keys, k, chunk=chunk)
    assert vals.dtype == dtype and ids.dtype == np.int64 and vals.shape == ids.shape == (7, k)
    # chunks change BLAS's summation order: values agree to rounding, the ranking exactly
    tol = 1e-6 if dtype == np.float32 else 1e-14
    s = queries @ keys.T
    np.testing.assert_array_equal(ids, brute_topk(queries, keys, k)[1])
    np.testing.assert_allclose(vals, np.take_along_axis(s, ids, axis=1), rtol=tol, atol=tol)
    assert (np.diff(vals, axis=1) <= 0).all()
    ref_vals, ref_ids = tk.topk_inner_product_reference(queries, keys, k)
    np.testing.assert_array_equal(ref_ids, ids)
    np.testing.assert_allclose(ref_vals, vals, rtol=tol, atol=tol)


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 6, 7, 100])
def test_ties_keep_the_lower_index_across_chunk_boundaries(path, chunk):
    keys = np.repeat(np.eye(3), 2, axis=0)[[0, 2, 1, 3, 5, 4]]  # every key twice, interleaved
    queries = np.array([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, -0.0, 0.0]])
    for k in (1, 2, 3, 6):
        got = tk.topk_inner_product(queries, keys, k, chunk=chunk)
        assert_same(got, brute_topk(queries, keys, k))
        assert_same(got, tk.topk_inner_product_reference(queries, keys, k))
    np.testing.assert_array_equal(tk.topk_inner_product(queries, keys, 3, chunk=chunk)[1],
                                  [[1, 3, 0], [0, 1, 2], [0, 1, 2]])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # 0 * inf
@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_nan_ranks_last_and_never_displaces_a_number(path, chunk):
    # scores of the query [1]: NaN, 1, 3, NaN, 2, -inf
    keys = np.array([[NAN], [1.0], [3.0], [NAN], [2.0], [-np.inf]])
    q = np.ones((1, 1))
    for k, ids in [(1, [2]), (2, [2, 4]), (3, [2, 4, 1]), (4, [2, 4, 1, 5]),
                   (5, [2, 4, 1, 5, 0]), (6, [2, 4, 1, 5, 0, 3])]:
        got = tk.topk_inner_product(q, keys, k, chunk=chunk)
        np.testing.assert_array_equal(got[1][0], ids)
        assert_same(got, tk.topk_inner_product_reference(q, keys, k))
    # NaN first in the row fills the list, and the finite best still wins
    got = tk.topk_inner_product(q, np.array([[NAN], [NAN], [-1.0], [5.0]]), 2, chunk=chunk)
    np.testing.assert_array_equal(got[1], [[3, 2]])
    # a row of NaN only (0 * inf) is returned in index order
    got = tk.topk_inner_product(np.zeros((1, 1)), np.full((4, 1), np.inf), 3, chunk=chunk)
    np.testing.assert_array_equal(got[1], [[0, 1, 2]])
    assert np.isnan(got[0]).all()


def test_minus_infinity_scores_fill_the_list(path):
    """k == N with -inf scores: every key is returned (-inf must not be taken for 'empty')."""
    keys = np.array([[-np.inf], [2.0], [-np.inf]])
    vals, ids = tk.topk_inner_product(np.ones((1, 1)), keys, 3, chunk=2)
    np.testing.assert_array_equal(ids, [[1, 0, 2]])
    np.testing.assert_array_equal(vals, [[2.0, -np.inf, -np.inf]])


@pytest.mark.parametrize("chunk", [3, 50])
def test_batched_is_the_scan_of_each_group(rng, path, chunk):
    queries = rng.standard_normal((3, 4, 6))
    keys = rng.standard_normal((3, 20, 6))
    vals, ids = tk.batched_topk_inner_product(queries, keys, 5, chunk=chunk)
    assert vals.shape == ids.shape == (3, 4, 5) and ids.dtype == np.int64
    for g in range(3):
        assert_same((vals[g], ids[g]), brute_topk(queries[g], keys[g], 5))
    assert_same(tk.batched_topk_inner_product_reference(queries, keys, 5), (vals, ids))


def test_mixed_dtypes_and_empty_queries(rng):
    q, keys = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((5, 3))
    vals, ids = tk.topk_inner_product(q, keys, 2)
    assert vals.dtype == np.float64
    np.testing.assert_array_equal(ids, brute_topk(q.astype(np.float64), keys, 2)[1])
    vals, ids = tk.topk_inner_product(np.zeros((0, 3)), keys, 2)
    assert vals.shape == ids.shape == (0, 2)


def test_the_kernel_does_not_hold_the_score_matrix(monkeypatch):
    """Memory bound: each matmul scores at most ``chunk`` keys."""
    seen = []
    real = tk._scan_rows_serial

    def spy(scores, *args):
        seen.append(scores.shape)
        return real(scores, *args)

    monkeypatch.setattr(tk, "_scan_rows_serial", spy)
    rng = np.random.default_rng(0)
    tk.topk_inner_product(rng.standard_normal((3, 4)), rng.standard_normal((25, 4)), 2, chunk=10)
    assert seen == [(3, 10), (3, 10), (3, 5)]


@pytest.mark.parametrize("fn", [tk.topk_inner_product, tk.topk_inner_product_reference])
def test_argument_errors_name_the_function_and_argument(fn):
    name = fn.__name__
    q, keys = np.zeros((2, 3)), np.zeros((5, 3))
    with pytest.raises(ValueError, match=rf"{name}: queries must be a 2-D array"):
        fn(np.zeros(3), keys, 1)
    with pytest.raises(ValueError, match=rf"{name}: keys must be a 2-D array"):
        fn(q, np.zeros((1, 5, 3)), 1)
    with pytest.raises(TypeError, match=rf"{name}: queries must be floating"):
        fn(q.astype(np.int64), keys, 1)
    with pytest.raises(TypeError, match=rf"{name}: keys must be floating .* float16"):
        fn(q, keys.astype(np.float16), 1)
    with pytest.raises(ValueError, match=rf"{name}: keys \(N, d\) must match queries"):
        fn(q, np.zeros((5, 4)), 1)
    for k in (0, 6, 2.0, True):
        with pytest.raises(ValueError, match=rf"{name}: k must be an int in \[1, 5\]"):
            fn(q, keys, k)


def test_batched_and_chunk_errors():
    q, keys = np.zeros((2, 4, 3)), np.zeros((2, 5, 3))
    with pytest.raises(ValueError, match=r"batched_topk_inner_product: keys \(G, N, d\) must"):
        tk.batched_topk_inner_product(q, np.zeros((3, 5, 3)), 1)
    with pytest.raises(ValueError, match=r"batched_topk_inner_product: queries must be a 3-D"):
        tk.batched_topk_inner_product(q[0], keys, 1)
    with pytest.raises(ValueError, match=r"topk_inner_product: chunk must be an int >= 1"):
        tk.topk_inner_product(q[0], keys[0], 1, chunk=0)
