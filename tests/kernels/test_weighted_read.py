"""The memory read kernels: o_m = sum_j w_mj V[i_mj] and its scatter-add backward."""
import numpy as np
import pytest

from minimem.kernels import weighted_read as wr


def naive_read(V, idx, w):
    out = np.zeros((idx.shape[0], V.shape[1]))
    for m in range(idx.shape[0]):
        for j in range(idx.shape[1]):
            out[m] += w[m, j] * V[idx[m, j]]
    return out


def naive_read_backward(V, idx, w, g):
    gV, gw = np.zeros_like(V), np.zeros_like(w)
    for m in range(idx.shape[0]):
        for j in range(idx.shape[1]):
            gw[m, j] = V[idx[m, j]] @ g[m]
            gV[idx[m, j]] += w[m, j] * g[m]
    return gV, gw


def test_gather_weighted_rows_and_backward(rng, path):
    V = rng.standard_normal((12, 5))
    idx = np.array([[0, 3, 3, 11], [3, 3, 3, 3], [7, 0, 1, 2]])  # repeats within and across rows
    w, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 5))
    np.testing.assert_allclose(wr.gather_weighted_rows(V, idx, w), naive_read(V, idx, w),
                               atol=1e-12)
    np.testing.assert_allclose(wr.gather_weighted_rows_reference(V, idx, w),
                               naive_read(V, idx, w), atol=1e-12)
    gV, gw = wr.gather_weighted_rows_backward(V, idx, w, g)
    nV, nw = naive_read_backward(V, idx, w, g)
    np.testing.assert_allclose(gV, nV, atol=1e-12)
    np.testing.assert_allclose(gw, nw, atol=1e-12)
    rV, rw = wr.gather_weighted_rows_backward_reference(V, idx, w, g)
    np.testing.assert_allclose(rV, nV, atol=1e-12)
    np.testing.assert_allclose(rw, nw, atol=1e-12)


@pytest.mark.parametrize("J", [1, 3, 5, 7, 8, 9])
def test_read_kernels_any_row_count(rng, path, J):
    # the forward reads four rows per pass plus a tail; the scatter splits rows by owner
    V = rng.standard_normal((9, 6)).astype(np.float32)
    idx = rng.integers(0, 9, (4, J))
    w, g = rng.standard_normal((4, J)), rng.standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_allclose(wr.gather_weighted_rows(V, idx, w), naive_read(V, idx, w),
                               rtol=1e-5, atol=1e-5)
    gV, gw = wr.gather_weighted_rows_backward(V, idx, w.astype(np.float32), g)
    nV, nw = naive_read_backward(V.astype(np.float64), idx, w, g.astype(np.float64))
    np.testing.assert_allclose(gV, nV, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw, nw, rtol=1e-5, atol=1e-5)


def test_read_touches_only_the_rows_read(rng):
    """Rows never read hold NaN: a dense formulation would spread it, the sparse one cannot."""
    V = np.full((50, 4), np.nan)
    idx = np.array([[2, 9], [9, 40]])
    V[[2, 9, 40]] = rng.standard_normal((3, 4))
    w, g = rng.standard_normal((2, 2)), rng.standard_normal((2, 4))
    assert np.isfinite(wr.gather_weighted_rows(V, idx, w)).all()
    gV, gw = wr.gather_weighted_rows_backward(V, idx, w, g)
    assert np.isfinite(gw).all()
    untouched = np.setdiff1d(np.arange(50), [2, 9, 40])
    assert (gV[untouched] == 0).all() and np.isfinite(gV).all()


def test_read_kernel_errors():
    with pytest.raises(ValueError, match="gather_weighted_rows: expected V"):
        wr.gather_weighted_rows(np.zeros((4, 2)), np.zeros((2, 3), int), np.zeros((2, 2)))
    with pytest.raises(TypeError, match="gather_weighted_rows: idx must be integers"):
        wr.gather_weighted_rows(np.zeros((4, 2)), np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"gather_weighted_rows_backward: g must have shape"):
        wr.gather_weighted_rows_backward(np.zeros((4, 2)), np.zeros((2, 3), int),
                                         np.zeros((2, 3)), np.zeros((2, 3)))
