"""Hidden grading tests of the Titans / ATLAS chapter (independent naive formulations)."""
import math

import numpy as np
import pytest

import minimem as mm
from minimem.memory import newton_schulz, omega_memory_reference
from minimem.memory.titans.lab import predicted_capacity


def _t(x):
    return mm.tensor(x, dtype=np.float64)


@pytest.mark.exercise("25.1", points=2)
def test_newton_schulz_hidden_shapes_and_steps():
    rng = np.random.default_rng(11)
    for shape, steps in (((1, 1), 5), ((7, 3), 1), ((2, 9), 4), ((5, 5), 0)):
        G = rng.standard_normal(shape)
        U, s, Vt = np.linalg.svd(G, full_matrices=False)
        x = s / np.sqrt((G ** 2).sum() + 1e-14)
        for _ in range(steps):
            x = 3.4445 * x - 4.7750 * x ** 3 + 2.0315 * x ** 5
        np.testing.assert_allclose(newton_schulz(_t(G), steps=steps).numpy(),
                                   U @ np.diag(x) @ Vt, atol=1e-9)


@pytest.mark.exercise("25.2", points=3)
def test_omega_reference_hidden_mlp_window_longer_than_sequence():
    rng = np.random.default_rng(12)
    T, d, h, w = 4, 2, 3, 6
    k, v = rng.standard_normal((1, 1, T, d)), rng.standard_normal((1, 1, T, d))
    W1, W2 = rng.standard_normal((d, h)) * 0.5, rng.standard_normal((h, d)) * 0.5
    gamma = rng.uniform(0.2, 2.0, (1, 1, T))
    zeros = np.zeros((1, 1, T))
    _, (A, B) = omega_memory_reference(
        _t(k), _t(k), _t(v), _t(np.full((1, 1, T), 0.1)), _t(zeros), _t(zeros),
        (_t(W1[None, None]), _t(W2[None, None])), window=w, gamma=_t(gamma), memory="mlp")

    def grads(W1, W2, i):
        z = W1.T @ k[0, 0, i]
        s = 1 / (1 + np.exp(-z))
        hh = z * s
        e = 2 * (W2.T @ hh - v[0, 0, i])
        dz = (W2 @ e) * (s * (1 + z * (1 - s)))
        return np.outer(k[0, 0, i], dz), np.outer(hh, e)

    for t in range(T):
        g = [sum(gamma[0, 0, i] * grads(W1, W2, i)[j] for i in range(max(0, t - w + 1), t + 1))
             for j in range(2)]
        W1, W2 = W1 - 0.1 * g[0], W2 - 0.1 * g[1]
    np.testing.assert_allclose(A.numpy()[0, 0], W1, atol=1e-12)
    np.testing.assert_allclose(B.numpy()[0, 0], W2, atol=1e-12)


@pytest.mark.exercise("25.3", points=2)
def test_predicted_capacity_is_the_rank_of_random_poly_features():
    from minimem.memory import feature_map
    rng = np.random.default_rng(13)
    for d, p in ((2, 3), (3, 2), (4, 1), (3, 0)):
        K = rng.standard_normal((60, d))
        phi = feature_map(_t(K), "poly", degree=p).numpy()
        assert predicted_capacity(d, p) == np.linalg.matrix_rank(phi)
    assert predicted_capacity(5) == 5 and predicted_capacity(6, 2) == math.comb(8, 2)
