"""Hopfield kernels (Numba) against their plain NumPy twins; small enough for NUMBA_DISABLE_JIT=1."""
import numpy as np
import pytest

from minimem.kernels.async_sweeps import (
    async_sweeps,
    async_sweeps_reference,
    dense_async_sweeps,
    dense_async_sweeps_reference,
)


def _pm1(rng, *shape):
    return rng.choice(np.array([-1.0, 1.0]), size=shape)


def _orders(rng, n_sweeps, N):
    return np.stack([rng.permutation(N) for _ in range(n_sweeps)])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_bias", [False, True])
def test_async_kernel_matches_reference(seed, with_bias):
    rng = np.random.default_rng(seed)
    N, P = 40, 7
    X = _pm1(rng, P, N)
    W = X.T @ X / N
    np.fill_diagonal(W, 0)
    b = 0.3 * rng.standard_normal(N) if with_bias else np.zeros(N)
    s0 = _pm1(rng, N)
    s0_before = s0.copy()
    orders = _orders(rng, 6, N)
    for stop in (True, False):
        s1, e1, c1 = async_sweeps(W, b, s0, orders, stop_when_stable=stop)
        s2, e2, c2 = async_sweeps_reference(W, b, s0, orders, stop_when_stable=stop)
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_allclose(e1, e2, rtol=0, atol=1e-10)
        assert c1 == c2
    np.testing.assert_array_equal(s0, s0_before)  # neither modifies the input state
    # the energy the kernel reports is the energy of the state it returns
    assert e1[-1] == pytest.approx(-0.5 * s1 @ W @ s1 + b @ s1, abs=1e-10)
    assert np.all(np.diff(e1) <= 1e-12)


def test_async_kernel_general_symmetric_weights():
    """Non-Hebbian symmetric weights with a diagonal: the field bookkeeping still agrees."""
    rng = np.random.default_rng(5)
    N = 25
    A = rng.standard_normal((N, N))
    W = (A + A.T) / 2
    b = rng.standard_normal(N)
    s0 = _pm1(rng, N)
    orders = _orders(rng, 5, N)
    s1, e1, _ = async_sweeps(W, b, s0, orders, stop_when_stable=False)
    s2, e2, _ = async_sweeps_reference(W, b, s0, orders, stop_when_stable=False)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_allclose(e1, e2, atol=1e-9)


def test_async_kernel_keeps_tied_units():
    W = np.zeros((3, 3))
    s0 = np.array([1.0, -1.0, 1.0])
    s, e, converged = async_sweeps(W, np.zeros(3), s0, np.array([[2, 0, 1]]))
    np.testing.assert_array_equal(s, s0)
    assert converged and e.shape == (1,)


@pytest.mark.parametrize("kind,n", [("poly", 2), ("poly", 3), ("rectified", 4), ("exp", 1)])
def test_dense_kernel_matches_reference(kind, n):
    rng = np.random.default_rng(7)
    N, P = 16, 12
    X = _pm1(rng, P, N)
    s0 = _pm1(rng, N)
    orders = _orders(rng, 4, N)
    s1, e1, c1 = dense_async_sweeps(X, s0, orders, kind, n, stop_when_stable=False)
    s2, e2, c2 = dense_async_sweeps_reference(X, s0, orders, kind, n, stop_when_stable=False)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_allclose(e1, e2, rtol=1e-12)
    assert c1 == c2
    assert np.all(np.diff(e1) <= 1e-9 * np.abs(e1[:-1]))


def test_kernel_argument_errors():
    W = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"async_sweeps: W must be a square"):
        async_sweeps(np.zeros((3, 2)), np.zeros(3), np.ones(3), np.zeros((1, 3), int))
    with pytest.raises(ValueError, match=r"async_sweeps: orders must be \(n_sweeps, 3\)"):
        async_sweeps(W, np.zeros(3), np.ones(3), np.zeros((1, 4), int))
    with pytest.raises(ValueError, match=r"dense_async_sweeps: kind must be one of"):
        dense_async_sweeps(np.ones((2, 3)), np.ones(3), np.zeros((1, 3), int), kind="cubic")
