"""Hidden grading tests of chapter 55's exercises 55.1-55.3 (not shipped to students).

Each exercise is tested against a formulation written here, never against instructor code.
"""
import numpy as np
import pytest
from _helpers import check_gradients

import minimem as mm
from minimem.memory import GatedRecurrentCache, associative_read, normalizer_gain


def t(x, grad=False):
    return mm.tensor(np.asarray(x, dtype=np.float64), requires_grad=grad)


@pytest.mark.exercise("55.1", points=1)
@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_normalizer_gain_hidden(eps):
    r = np.random.default_rng(11)
    z, k = r.uniform(0, 0.5, (3, 6)), r.uniform(0, 1, (3, 5, 6))
    z[2] = k[2, 1]                                   # the key itself is already in z
    got = normalizer_gain(t(z), t(k), eps=eps).numpy()
    want = np.empty((3, 5))
    for b in range(3):
        for i in range(5):
            want[b, i] = min(1.0, max(0.0, 1.0 - z[b] @ k[b, i] / (k[b, i] @ k[b, i] + eps)))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert got.shape == (3, 5)
    inner = (t(z[:1] * 0.2, True), t(k[:1], True))   # gamma inside (0, 1): smooth there
    check_gradients(lambda a, b: normalizer_gain(a, b, eps=eps), inner)


@pytest.mark.exercise("55.1", points=1)
def test_normalizer_gain_counts_an_orthogonal_key_fully():
    z = np.zeros((1, 4))
    z[0, :2] = 1.0
    k = np.array([[[0, 0, 2.0, 1.0], [1.0, 0, 0, 0]]])
    got = normalizer_gain(t(z), t(k), eps=1e-12).numpy()
    np.testing.assert_allclose(got, [[1.0, 0.0]], atol=1e-9)


@pytest.mark.exercise("55.2", points=1)
@pytest.mark.parametrize("eps", [1e-5, 0.3])
def test_associative_read_hidden(eps):
    r = np.random.default_rng(12)
    A, z, q = r.standard_normal((2, 5, 3)), r.uniform(0, 1, (2, 5)), r.uniform(0, 1, (2, 4, 5))
    got = associative_read(t(A), t(z), t(q), eps=eps).numpy()
    want = np.empty((2, 4, 3))
    for b in range(2):
        for s in range(4):
            want[b, s] = A[b].T @ q[b, s] / (z[b] @ q[b, s] + eps)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    check_gradients(lambda a, c, d: associative_read(a, c, d, eps=eps),
                    (t(A[:1], True), t(z[:1], True), t(q[:1], True)))


@pytest.mark.exercise("55.3", points=2)
def test_gated_recurrent_cache_hidden():
    grc = GatedRecurrentCache(3, 2, seed=5).double()
    r = np.random.default_rng(13)
    C, x = r.standard_normal((2, 2, 3)), r.standard_normal((2, 4, 3))
    P, W, bias = grc.P.numpy(), grc.W_g.weight.numpy(), grc.W_g.bias.numpy()
    want = np.empty_like(C)
    for b in range(2):
        s = P @ x[b].T / np.sqrt(3)
        a = np.exp(s - s.max(axis=1, keepdims=True))
        pooled = (a / a.sum(axis=1, keepdims=True)) @ x[b]
        g = 1.0 / (1.0 + np.exp(-(np.hstack([pooled, C[b]]) @ W.T + bias)))
        want[b] = C[b] + g * (pooled - C[b])
    np.testing.assert_allclose(grc(t(C), t(x)).numpy(), want, rtol=1e-10, atol=1e-12)
    check_gradients(lambda c, y: grc(c, y), (t(C[:1], True), t(x[:1], True)))


def _simulated_first_share(beta, n, d_phi=5, d_v=6, eps=1e-12):
    """One key written n times in NumPy, with the equations of the chapter."""
    r = np.random.default_rng(int(100 * beta) + n)
    k = r.uniform(0.2, 1.0, d_phi)
    V = np.linalg.qr(r.standard_normal((d_v, d_v)))[0][:n]
    A, z = np.zeros((d_phi, d_v)), np.zeros(d_phi)
    for v in V:
        seen = z @ k
        v_bar = A.T @ k / (seen + eps)
        A = A + beta * np.outer(k, v - v_bar)
        z = z + np.clip(1 - seen / (k @ k + eps), 0, 1) * k
    return float((A.T @ k / (z @ k + eps)) @ V[0])


@pytest.mark.exercise("55.4", points=2)
@pytest.mark.parametrize("beta", [0.1, 0.45, 0.9])
def test_first_value_share_hidden(beta):
    from minimem.memory.associative.lab import first_value_share

    for n in (1, 3, 6):
        assert first_value_share(beta, n) == pytest.approx(_simulated_first_share(beta, n),
                                                           abs=1e-8)
