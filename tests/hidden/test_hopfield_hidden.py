"""Hidden grading tests of the Hopfield exercises 10.1-10.5 (not shipped to students).

Each exercise is tested on its own, against formulas written here (never the solution code).
"""
import numpy as np
import pytest
from _helpers import check_gradients
from hypothesis import given, settings
from hypothesis import strategies as st

import minimem as mm
from minimem.kernels.async_sweeps import async_sweeps_reference
from minimem.memory import classical_energy, hebbian_weights, hopfield_retrieve, softmax1


def _pm1(rng, *shape):
    return rng.choice(np.array([-1.0, 1.0]), size=shape)


@pytest.mark.exercise("10.1", points=2)
@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(2, 12), st.integers(0, 10**6))
def test_hebbian_weights_properties(P, N, seed):
    X = _pm1(np.random.default_rng(seed), P, N)
    W = hebbian_weights(X)
    expected = sum(np.outer(x, x) for x in X) / N - P / N * np.eye(N)
    np.testing.assert_allclose(W, expected, atol=1e-12)
    np.testing.assert_array_equal(W, W.T)


@pytest.mark.exercise("10.1", points=2)
def test_hebbian_single_pattern_is_a_fixed_point():
    x = _pm1(np.random.default_rng(3), 15)
    W = hebbian_weights(x[None])
    np.testing.assert_array_equal(np.sign(W @ x), x)  # h = (N - 1)/N x
    np.testing.assert_allclose(W @ x, (14 / 15) * x, atol=1e-12)


@pytest.mark.exercise("10.2", points=2)
def test_async_update_keeps_ties_and_respects_the_order():
    # one unit's field is exactly zero: it must keep its value
    W = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    s0 = np.array([1.0, -1.0, -1.0])
    # order 0 then 1: unit 0 sees h = -1 -> -1; unit 1 then sees h = -1 -> stays -1
    s, _, _ = async_sweeps_reference(W, np.zeros(3), s0, np.array([[0, 1, 2]]),
                                     stop_when_stable=False)
    np.testing.assert_array_equal(s, [-1.0, -1.0, -1.0])
    # order 1 then 0: unit 1 sees h = +1 -> +1; unit 0 then sees h = +1 -> stays +1
    s, _, _ = async_sweeps_reference(W, np.zeros(3), s0, np.array([[1, 0, 2]]),
                                     stop_when_stable=False)
    np.testing.assert_array_equal(s, [1.0, 1.0, -1.0])


@pytest.mark.exercise("10.2", points=2)
def test_async_update_with_thresholds_reaches_a_fixed_point():
    rng = np.random.default_rng(4)
    N = 20
    A = rng.standard_normal((N, N))
    W = (A + A.T) / 2
    np.fill_diagonal(W, 0)
    b = rng.standard_normal(N)
    orders = np.stack([rng.permutation(N) for _ in range(60)])
    s, _, converged = async_sweeps_reference(W, b, _pm1(rng, N), orders)
    assert converged
    h = W @ s - b
    assert np.all(s * h >= -1e-9)  # every unit agrees with its field


@pytest.mark.exercise("10.3", points=1)
def test_energy_with_bias_and_flip_difference():
    rng = np.random.default_rng(5)
    N = 9
    A = rng.standard_normal((N, N))
    W = (A + A.T) / 2
    np.fill_diagonal(W, 0)
    b = rng.standard_normal(N)
    s = _pm1(rng, N)
    t = s.copy()
    t[4] *= -1
    h4 = W[4] @ s - b[4]
    # flipping unit 4 changes E by 2 s_4 h_4 (with a zero diagonal)
    assert classical_energy(W, b, t) - classical_energy(W, b, s) == pytest.approx(2 * s[4] * h4)
    assert classical_energy(W, b, np.stack([s, t])).shape == (2,)


@pytest.mark.exercise("10.4", points=2)
def test_continuous_update_batch_dims_and_vector_query():
    rng = np.random.default_rng(6)
    R, Y = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4))
    out = hopfield_retrieve(mm.tensor(R, dtype=np.float64), mm.tensor(Y, dtype=np.float64), 0.5)
    for b in range(2):
        for q in range(3):
            z = 0.5 * Y[b] @ R[b, q]
            p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            np.testing.assert_allclose(out.numpy()[b, q], Y[b].T @ p, atol=1e-12)


@pytest.mark.exercise("10.4", points=2)
def test_continuous_update_large_beta_retrieves_nearest_pattern():
    Y = np.eye(4) * 3
    xi = np.array([[2.0, 1.0, 0.5, 0.0]])
    out = hopfield_retrieve(mm.tensor(xi, dtype=np.float64), mm.tensor(Y, dtype=np.float64), 50.0)
    np.testing.assert_allclose(out.numpy(), Y[:1], atol=1e-10)


@pytest.mark.exercise("10.5", points=2)
def test_softmax1_other_axis_and_extremes():
    rng = np.random.default_rng(7)
    z = rng.standard_normal((3, 4))
    y = softmax1(mm.tensor(z, dtype=np.float64), axis=0).numpy()
    np.testing.assert_allclose(y, np.exp(z) / (1 + np.exp(z).sum(axis=0)), atol=1e-14)
    y = softmax1(mm.tensor([[800.0, -800.0], [-800.0, -800.0]], dtype=np.float64)).numpy()
    np.testing.assert_allclose(y, [[1.0, 0.0], [0.0, 0.0]], atol=1e-300)


@pytest.mark.exercise("10.5", points=2)
def test_softmax1_gradient():
    rng = np.random.default_rng(8)
    z = mm.tensor(rng.standard_normal((2, 5)), requires_grad=True, dtype=np.float64)
    check_gradients(softmax1, (z,))
