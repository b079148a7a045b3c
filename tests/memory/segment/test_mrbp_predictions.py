"""Exercise 50.4: the gradient of a normalized slot's squared norm, derived and checked
against central differences written here (minimem.memory.segment.memformer)."""
import numpy as np
import pytest

from minimem.memory.segment.memformer import normalized_norm_gradient


def ratio(u, eps):
    sq = float(u @ u)
    return sq / (sq + eps)


@pytest.mark.exercise("50.4", points=2)
@pytest.mark.parametrize("eps", [1e-5, 0.1, 2.0])
def test_gradient_matches_central_differences(eps):
    rng = np.random.default_rng(3)
    U = rng.standard_normal((3, 4, 6)) * np.array([0.01, 0.3, 2.0])[:, None, None]
    grad = normalized_norm_gradient(U, eps=eps)
    assert grad.shape == U.shape
    h = 1e-6
    for idx in np.ndindex(U.shape[:-1]):
        u = U[idx]
        for c in range(u.size):
            e = np.zeros_like(u)
            e[c] = h
            fd = (ratio(u + e, eps) - ratio(u - e, eps)) / (2 * h)
            assert grad[idx][c] == pytest.approx(fd, rel=1e-5, abs=1e-9)


@pytest.mark.exercise("50.4", points=2)
def test_gradient_vanishes_for_large_slots_and_points_along_the_slot():
    u = np.array([3.0, -4.0])  # |u| = 5
    small = normalized_norm_gradient(u, eps=1e-5)
    assert np.linalg.norm(small) < 1e-6  # saturated: the normalization hides the size
    assert small[0] * u[1] - small[1] * u[0] == pytest.approx(0.0, abs=1e-20)  # parallel
    big = normalized_norm_gradient(u * 1e-3, eps=1e-5)
    assert np.linalg.norm(big) > 1.0


@pytest.mark.parametrize("u, eps, err, match", [
    (np.ones(3, dtype=int), 1e-5, TypeError, r"u must be a float32/float64 array"),
    (np.ones(3, dtype=np.float16), 1e-5, TypeError, r"u must be a float32/float64 array"),
    (np.ones(3), 0.0, ValueError, r"eps must be a finite number > 0"),
    (np.ones(3), float("nan"), ValueError, r"eps must be a finite number > 0"),
])
def test_normalized_norm_gradient_rejects_bad_arguments(u, eps, err, match):
    with pytest.raises(err, match=r"normalized_norm_gradient: " + match):
        normalized_norm_gradient(u, eps=eps)
