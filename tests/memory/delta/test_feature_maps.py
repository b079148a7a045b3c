"""Feature maps: each kernel phi(q).phi(k) against its closed form, written in the test."""
import math

import numpy as np
import pytest
from _helpers import tensor64

from minimem.autograd.gradcheck import gradcheck
from minimem.memory import feature_dim, feature_map


def _kernel(q, k, kind, **params):
    fq = feature_map(tensor64(q), kind, **params).numpy()
    fk = feature_map(tensor64(k), kind, **params).numpy()
    return (fq * fk).sum(-1)


@pytest.fixture
def qk(rng):
    return 0.6 * rng.standard_normal((7, 4)), 0.6 * rng.standard_normal((7, 4))


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_poly_is_the_taylor_polynomial_of_exp(qk, degree):
    q, k = qk
    dot = (q * k).sum(-1)
    want = sum(dot ** i / math.factorial(i) for i in range(degree + 1))
    np.testing.assert_allclose(_kernel(q, k, "poly", degree=degree), want, atol=1e-12)


def test_taylor2_is_poly_degree_2(qk):
    q, k = qk
    dot = (q * k).sum(-1)
    np.testing.assert_allclose(_kernel(q, k, "taylor2"), 1 + dot + dot ** 2 / 2, atol=1e-12)
    np.testing.assert_array_equal(feature_map(tensor64(q), "taylor2").numpy(),
                                  feature_map(tensor64(q), "poly", degree=2).numpy())


def test_elementwise_maps(qk):
    x = qk[0]
    np.testing.assert_array_equal(feature_map(tensor64(x), "identity").numpy(), x)
    np.testing.assert_allclose(feature_map(tensor64(x), "elu1").numpy(),
                               np.where(x > 0, x + 1, np.exp(x)), atol=1e-15)
    np.testing.assert_array_equal(feature_map(tensor64(x), "relu").numpy(), np.maximum(x, 0))
    big = feature_map(tensor64(np.array([-800.0, 800.0])), "elu1").numpy()   # no overflow
    np.testing.assert_array_equal(big, [0.0, 801.0])


@pytest.mark.parametrize("nu", [1, 3])
def test_dpfp_entries(qk, nu):
    """phi_{(j-1) 2d + i} = r_i r_{(i + j) mod 2d}, r = [relu(x), relu(-x)], loops in the test."""
    x = qk[0]
    d = x.shape[1]
    r = np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], axis=1)
    want = np.zeros((x.shape[0], 2 * d * nu))
    for j in range(1, nu + 1):
        for i in range(2 * d):
            want[:, (j - 1) * 2 * d + i] = r[:, i] * r[:, (i + j) % (2 * d)]
    np.testing.assert_allclose(feature_map(tensor64(x), "dpfp", nu=nu).numpy(), want)
    assert feature_dim("dpfp", d, nu=nu) == 2 * d * nu


def test_performer_is_positive_and_unbiased(qk):
    """phi(x) = exp(Omega x - |x|^2 / 2) / sqrt(m), and the mean of phi(q).phi(k) over 1500
    projections is exp(q.k) within 5 standard errors (NumPy here, the map checked against it)."""
    from minimem.memory.delta.feature_maps import performer_projection
    q, k = (0.5 * x for x in qk)    # |q.k| < 1: the estimator's tail is light enough for SEMs
    m = 8

    def phi(x, omega):
        return np.exp(x @ omega.T - 0.5 * (x * x).sum(-1, keepdims=True)) / np.sqrt(m)

    omega = performer_projection(4, m, seed=3)
    np.testing.assert_allclose(feature_map(tensor64(q), "performer", n_features=m,
                                           seed=3).numpy(), phi(q, omega), atol=1e-13)
    est = []
    for s in range(1500):
        omega = performer_projection(4, m, seed=s)
        est.append((phi(q, omega) * phi(k, omega)).sum(-1))
    est = np.array(est)
    assert (est > 0).all()
    mean, sem = est.mean(0), est.std(0) / math.sqrt(len(est))
    np.testing.assert_array_less(np.abs(mean - np.exp((q * k).sum(-1))), 5 * sem)
    np.testing.assert_array_equal(_kernel(q, k, "performer", n_features=m, seed=3),
                                  _kernel(q, k, "performer", n_features=m, seed=3))


def test_performer_blocks_are_orthogonal():
    from minimem.memory.delta.feature_maps import performer_projection
    omega = performer_projection(4, 10, seed=0)
    block = omega[:4] / np.linalg.norm(omega[:4], axis=1, keepdims=True)
    np.testing.assert_allclose(block @ block.T, np.eye(4), atol=1e-12)
    assert omega.shape == (10, 4)


@pytest.mark.parametrize("kind,params", [("elu1", {}), ("dpfp", {"nu": 2}), ("poly", {"degree": 3}),
                                         ("performer", {"n_features": 6})])
def test_gradcheck(rng, kind, params):
    x = tensor64(0.5 * rng.standard_normal((2, 3)) + 0.05, True)
    gradcheck(lambda z: feature_map(z, kind, **params), (x,))


def test_feature_dim_matches_output():
    x = tensor64(np.ones((2, 3)))
    for kind, params in [("identity", {}), ("dpfp", {"nu": 2}), ("poly", {"degree": 3}),
                         ("taylor2", {}), ("performer", {"n_features": 7})]:
        assert feature_map(x, kind, **params).shape[-1] == feature_dim(kind, 3, **params)


def test_bad_inputs():
    x = tensor64(np.ones((2, 3)))
    with pytest.raises(ValueError, match="feature_map: kind must be one of"):
        feature_map(x, "softmax")
    with pytest.raises(TypeError, match="feature_map: kind 'relu' takes parameters"):
        feature_map(x, "relu", nu=2)
    with pytest.raises(ValueError, match="feature_map: nu must be an int >= 1, got 0"):
        feature_map(x, "dpfp", nu=0)
    with pytest.raises(TypeError, match="feature_map: degree must be an int >= 0"):
        feature_map(x, "poly", degree=1.5)
    with pytest.raises(TypeError, match="feature_map: x must be float32 or float64"):
        feature_map(tensor64(np.ones(3)).astype(np.float16), "relu")
    with pytest.raises(TypeError, match="feature_map: x must be a Tensor"):
        feature_map([1.0, 2.0], "relu")
    with pytest.raises(TypeError, match="feature_map: seed must be an int"):
        feature_map(x, "performer", seed="a")
