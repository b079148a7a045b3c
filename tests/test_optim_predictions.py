"""Exercise 1.3: Adam's step under a constant gradient, predicted and then checked against a
run of Adam written here in NumPy (minimem.optim.adam_constant_gradient_step)."""
import numpy as np
import pytest

from minimem.optim import adam_constant_gradient_step


def adam_updates(g, lr, betas, eps, steps):
    """theta_t - theta_{t-1} for t = 1..steps of the textbook Adam, gradient g every step."""
    b1, b2 = betas
    m, v, out = np.zeros_like(g), np.zeros_like(g), []
    for t in range(1, steps + 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        out.append(-lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps))
    return out


@pytest.mark.exercise("1.3", points=2)
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.0, 0.5), (0.99, 0.9)])
@pytest.mark.parametrize("eps", [1e-8, 0.3])
def test_predicted_step_matches_a_run_of_adam(betas, eps):
    g = np.array([3.0, -0.2, 1e-6, 0.0, -40.0])
    runs = adam_updates(g, 0.01, betas, eps, 12)
    for t in (1, 2, 5, 12):
        got = adam_constant_gradient_step(g.copy(), lr=0.01, betas=betas, eps=eps, t=t)
        assert np.asarray(got).shape == g.shape
        np.testing.assert_allclose(got, runs[t - 1], rtol=1e-9, atol=1e-15)


@pytest.mark.exercise("1.3", points=2)
def test_predicted_step_is_bounded_by_the_learning_rate():
    g = np.random.default_rng(0).standard_normal(100) * 10.0 ** np.arange(-3, 7, 0.1)
    delta = adam_constant_gradient_step(g, lr=0.05, eps=1e-8, t=7)
    assert np.all(np.abs(delta) <= 0.05) and np.all(np.sign(delta) == -np.sign(g))


@pytest.mark.parametrize("kwargs, match", [
    ({"t": 0}, r"adam_constant_gradient_step: t must be an int >= 1"),
    ({"eps": 0.0}, r"adam_constant_gradient_step: eps must be"),
    ({"betas": (1.0, 0.9)}, r"adam_constant_gradient_step: betas must lie in \[0, 1\)"),
])
def test_adam_constant_gradient_step_rejects_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        adam_constant_gradient_step(np.ones(3), **kwargs)
    with pytest.raises(TypeError, match=r"adam_constant_gradient_step: .*g"):
        adam_constant_gradient_step(np.ones(3, dtype=int))
