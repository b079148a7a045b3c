"""Row-sparse gradient kernels (coalesce, lazy Adam rows) against their NumPy twins and
brute force. Small sizes, so the file also passes under NUMBA_DISABLE_JIT=1."""
import numpy as np
import pytest

from minimem.kernels import sparse_rows as sr
from minimem.kernels import weighted_read as wr


def brute_coalesce(idx, w, src):
    """Each distinct row with the sum of w[m, j] src[m] over its pairs, one pair at a time."""
    sums = {}
    for m in range(idx.shape[0]):
        for j in range(idx.shape[1]):
            sums[idx[m, j]] = sums.get(idx[m, j], 0) + w[m, j] * src[m]
    rows = sorted(sums)
    return np.array(rows, dtype=np.int64), np.array([sums[r] for r in rows]).reshape(-1, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,J,N", [(1, 1, 5), (4, 3, 4), (10, 3, 100), (7, 1, 3), (0, 2, 3)])
def test_coalesce_rows_matches_brute_force_and_twin(rng, path, dtype, M, J, N):
    idx = rng.integers(0, N, (M, J))
    w = rng.standard_normal((M, J)).astype(dtype)
    src = rng.standard_normal((M, 3)).astype(dtype)
    rows, sums = sr.coalesce_rows(idx, w, src)
    ref_rows, ref_sums = brute_coalesce(idx, w, src)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-5, atol=1e-6)
    assert sums.dtype == dtype and rows.dtype == np.int64
    twin_rows, twin_sums = sr.coalesce_rows_reference(idx, w, src)
    np.testing.assert_array_equal(twin_rows, rows)
    np.testing.assert_allclose(twin_sums, sums, rtol=1e-5, atol=1e-6)


def test_coalesce_rows_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"coalesce_rows: expected idx \(M, J\)"):
        sr.coalesce_rows(np.zeros((3, 2), int), np.zeros((3, 2)), np.zeros((2, 4)))
    with pytest.raises(TypeError, match="coalesce_rows: idx must be integers"):
        sr.coalesce_rows(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 4)))


@pytest.mark.parametrize("impl", ["kernel", "reference"])
def test_scatter_weighted_rows_adds_every_pair(rng, path, impl):
    fn = wr.scatter_weighted_rows if impl == "kernel" else wr.scatter_weighted_rows_reference
    idx = np.array([[0, 3, 3], [5, 0, 3]])
    w, g = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    out = rng.standard_normal((6, 4))
    expect = out.copy()
    for m in range(2):
        for j in range(3):
            expect[idx[m, j]] += w[m, j] * g[m]
    assert fn(out, idx, w, g) is out
    np.testing.assert_allclose(out, expect, rtol=1e-12)


def test_scatter_weighted_rows_rejects_bad_rows():
    with pytest.raises(IndexError, match=r"scatter_weighted_rows: idx must lie in \[0, 2\)"):
        wr.scatter_weighted_rows(np.zeros((2, 3)), np.array([[2]]), np.ones((1, 1)),
                                 np.ones((1, 3)))
    with pytest.raises(ValueError, match="scatter_weighted_rows: out must be C-contiguous"):
        wr.scatter_weighted_rows(np.zeros((3, 2)).T, np.array([[0]]), np.ones((1, 1)),
                                 np.ones((1, 3)))


def lazy_adam_loop(p, m, v, rows, g, t, lr, betas, eps):
    """Lazy Adam, one scalar at a time, straight from the formula."""
    b1, b2 = betas
    for i, r in enumerate(rows):
        for c in range(p.shape[1]):
            m[r, c] = b1 * m[r, c] + (1 - b1) * g[i, c]
            v[r, c] = b2 * v[r, c] + (1 - b2) * g[i, c] ** 2
            m_hat, v_hat = m[r, c] / (1 - b1 ** t), v[r, c] / (1 - b2 ** t)
            p[r, c] -= lr * m_hat / (np.sqrt(v_hat) + eps)


@pytest.mark.parametrize("impl", ["kernel", "reference"])
def test_adam_rows_matches_the_formula_and_leaves_other_rows(rng, path, impl):
    fn = sr.adam_rows if impl == "kernel" else sr.adam_rows_reference
    p = rng.standard_normal((9, 4))
    m, v = rng.standard_normal((9, 4)), rng.random((9, 4))
    expect = [a.copy() for a in (p, m, v)]
    rows = np.array([1, 4, 8])
    g = rng.standard_normal((3, 4))
    for t in (1, 2, 7):
        fn(p, m, v, rows, g, t, lr=0.01, betas=(0.8, 0.9), eps=1e-6)
        lazy_adam_loop(*expect, rows, g, t, 0.01, (0.8, 0.9), 1e-6)
    for got, want in zip((p, m, v), expect):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    untouched = [r for r in range(9) if r not in rows]
    np.testing.assert_array_equal(p[untouched], expect[0][untouched])


def test_adam_rows_rejects_bad_arguments():
    p = np.zeros((4, 2))
    with pytest.raises(ValueError, match="adam_rows: p, m and v"):
        sr.adam_rows(p, np.zeros((4, 3)), p.copy(), np.array([0]), np.zeros((1, 2)), 1, 0.1)
    with pytest.raises(ValueError, match="adam_rows: g must have 2 columns"):
        sr.adam_rows(p, p.copy(), p.copy(), np.array([0]), np.zeros((1, 3)), 1, 0.1)
    with pytest.raises(ValueError, match="adam_rows: t"):
        sr.adam_rows(p, p.copy(), p.copy(), np.array([0]), np.zeros((1, 2)), 0, 0.1)


def test_read_grad_w_is_the_dot_with_each_row_read(rng, path):
    V, g = rng.standard_normal((7, 5)), rng.standard_normal((3, 5))
    idx = np.array([[0, 6, 6], [2, 2, 1], [5, 4, 0]])
    np.testing.assert_allclose(wr.gather_weighted_rows_grad_w(V, idx, g),
                               np.einsum("mjd,md->mj", V[idx], g), rtol=1e-12)
    with pytest.raises(ValueError, match=r"gather_weighted_rows_grad_w: g must have shape"):
        wr.gather_weighted_rows_grad_w(V, idx, g[:2])
