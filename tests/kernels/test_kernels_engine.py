"""The engine's Numba kernels against their plain NumPy twins (and formulas written here).

Sizes are small so that the file also runs quickly with ``NUMBA_DISABLE_JIT=1`` (see
``tests/autograd/test_engine.py::test_kernel_tests_pass_without_jit``, which runs this file that way).
"""
import os

import numpy as np
import pytest

from minimem.kernels import scatter as scatter_mod
from minimem.kernels import softmax_xent as xent_mod
from minimem.kernels.scatter import scatter_add_rows, scatter_add_rows_reference
from minimem.kernels.softmax_xent import softmax_cross_entropy, softmax_cross_entropy_reference


def test_jit_mode_follows_the_environment():
    """With NUMBA_DISABLE_JIT=1 the kernels are plain Python functions, else compiled."""
    disabled = os.environ.get("NUMBA_DISABLE_JIT", "0") == "1"
    for kernel in (scatter_mod._scatter_add_rows_kernel, xent_mod._xent_kernel):
        is_dispatcher = hasattr(kernel, "py_func")
        assert is_dispatcher is not disabled


# ---------------------------------------------------------------------------------------------
# scatter_add_rows: out[idx[i]] += src[i]
# ---------------------------------------------------------------------------------------------
def _naive_scatter(out, idx, src):
    out = out.copy()
    for i, r in enumerate(idx):
        out[r] += src[i]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scatter_add_rows_matches_reference_with_repeats(dtype):
    rng = np.random.default_rng(0)
    out0 = rng.standard_normal((5, 3)).astype(dtype)
    idx = np.array([0, 2, 2, 4, 0, 2, -1])  # repeats accumulate, -1 is the last row
    src = rng.standard_normal((7, 3)).astype(dtype)
    fast = scatter_add_rows(out0.copy(), idx, src)
    ref = scatter_add_rows_reference(out0.copy(), idx, src)
    naive = _naive_scatter(out0, idx, src)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(fast, ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(fast, naive, rtol=tol, atol=tol)
    assert fast.dtype == dtype
    # rows never indexed (row 1, row 3) are untouched
    np.testing.assert_array_equal(fast[[1, 3]], out0[[1, 3]])
    # row 2 got three contributions
    np.testing.assert_allclose(fast[2], out0[2] + src[1] + src[2] + src[5], rtol=tol, atol=tol)


def test_scatter_add_rows_is_in_place_and_handles_empty_and_casts():
    out = np.zeros((3, 2))
    res = scatter_add_rows(out, np.array([1, 1]), np.ones((2, 2), dtype=np.float32))
    assert res is out
    np.testing.assert_array_equal(out, [[0, 0], [2, 2], [0, 0]])
    before = out.copy()
    scatter_add_rows(out, np.zeros(0, dtype=np.int64), np.zeros((0, 2)))
    np.testing.assert_array_equal(out, before)
    # a non-contiguous source (a transposed view) gives the same result
    src = np.arange(6.0).reshape(2, 3).T  # (3, 2), F-ordered
    a = scatter_add_rows(np.zeros((3, 2)), np.array([2, 0, 2]), src)
    np.testing.assert_array_equal(a, _naive_scatter(np.zeros((3, 2)), [2, 0, 2], src))


def test_scatter_add_rows_errors_name_the_function():
    with pytest.raises(ValueError, match="scatter_add_rows: expected out"):
        scatter_add_rows(np.zeros(3), np.array([0]), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="scatter_add_rows: src must have shape"):
        scatter_add_rows(np.zeros((3, 2)), np.array([0, 1]), np.zeros((2, 3)))
    with pytest.raises(IndexError, match=r"scatter_add_rows: idx must lie in \[-3, 3\)"):
        scatter_add_rows(np.zeros((3, 2)), np.array([0, 3]), np.zeros((2, 2)))
    with pytest.raises(IndexError, match="scatter_add_rows"):
        scatter_add_rows(np.zeros((3, 2)), np.array([-4]), np.zeros((1, 2)))


# ---------------------------------------------------------------------------------------------
# softmax_cross_entropy: losses, d loss / d logits, count
# ---------------------------------------------------------------------------------------------
def _naive_xent(logits, targets, ignore_index):
    """Row by row with Python floats: loss = log sum exp(z) - z_t, grad = softmax(z) - e_t."""
    n, c = logits.shape
    losses, grad, count = np.zeros(n), np.zeros((n, c)), 0
    for i in range(n):
        if targets[i] == ignore_index:
            continue
        count += 1
        z = logits[i].astype(np.float64)
        m = z.max()
        p = np.exp(z - m) / np.exp(z - m).sum()
        losses[i] = m + np.log(np.exp(z - m).sum()) - z[targets[i]]
        grad[i] = p
        grad[i, targets[i]] -= 1
    return losses, grad, count


@pytest.mark.parametrize("ignore_index", [-100, 3])
def test_softmax_cross_entropy_matches_reference_and_naive(ignore_index):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((6, 5)) * 3
    targets = np.array([0, 4, ignore_index, 2, 2, ignore_index])
    fast = softmax_cross_entropy(logits, targets, ignore_index)
    ref = softmax_cross_entropy_reference(logits, targets, ignore_index)
    naive = _naive_xent(logits, targets, ignore_index)
    for got in (fast, ref):
        np.testing.assert_allclose(got[0], naive[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got[1], naive[1], rtol=1e-12, atol=1e-12)
        assert got[2] == naive[2] == 4
    ignored = targets == ignore_index
    assert (fast[0][ignored] == 0).all() and (fast[1][ignored] == 0).all()


def test_softmax_cross_entropy_ignore_index_default():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((4, 3))
    targets = np.array([1, -100, 0, -100])
    losses, grad, count = softmax_cross_entropy(logits, targets)
    naive = _naive_xent(logits, targets, -100)
    assert count == 2 == naive[2]
    np.testing.assert_allclose(losses, naive[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, naive[1], rtol=1e-12, atol=1e-12)
    # each counted row of the gradient sums to zero (softmax sums to one, minus the one-hot)
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_is_stable_for_huge_logits(dtype):
    logits = np.array([[1e4, 0.0, -1e4], [5e3, 5e3, 0.0]], dtype=dtype)
    targets = np.array([1, 0])
    for losses, grad, count in (softmax_cross_entropy(logits, targets),
                                softmax_cross_entropy_reference(logits, targets)):
        assert np.isfinite(losses).all() and np.isfinite(grad).all()
        assert losses.dtype == dtype and grad.dtype == dtype
        np.testing.assert_allclose(losses, [1e4, np.log(2.0)], rtol=1e-6)
        np.testing.assert_allclose(grad[0], [1, -1, 0], atol=1e-6)
        np.testing.assert_allclose(grad[1], [-0.5, 0.5, 0], atol=1e-6)
        assert count == 2


def test_softmax_cross_entropy_float32_agrees_with_float64():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((8, 7))
    targets = rng.integers(0, 7, size=8)
    l64, g64, _ = softmax_cross_entropy(logits, targets)
    l32, g32, _ = softmax_cross_entropy(logits.astype(np.float32), targets.astype(np.int32))
    assert l32.dtype == np.float32 and g32.dtype == np.float32
    np.testing.assert_allclose(l32, l64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g32, g64, rtol=1e-5, atol=1e-6)
