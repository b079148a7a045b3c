"""Hidden grading tests of the prediction and derivation exercises 0.6, 1.3, 10.6, 30.4, 40.5
and 50.4 (not shipped to students): exact values by enumeration or formulas written here."""
import itertools
import math

import numpy as np
import pytest

from minimem.autograd.experiments import forward_difference_best_step
from minimem.memory.hopfield.lab import one_step_error_exact
from minimem.memory.product_keys.lab import expected_usage
from minimem.memory.segment.memformer import normalized_norm_gradient
from minimem.memory.sparse.patterns import strided_pair_count
from minimem.optim import adam_constant_gradient_step


@pytest.mark.exercise("0.6", points=2)
def test_hidden_best_step_is_the_minimiser_of_the_error_model():
    # E(h) = h |f''| / 2 + 2 eps |f| / h (round-off of the two evaluations added): h* is its
    # minimiser; a model that adds them in quadrature (sqrt 2 eps |f| / h) is accepted too
    for eps, f, d2f in [(2.2e-16, 1.0, 1.0), (1.2e-7, 3.0, 0.5), (1e-10, 0.2, 40.0)]:
        h = forward_difference_best_step(eps, f, d2f)
        grid = np.logspace(-12, 0, 20001)
        model = grid * d2f / 2 + 2 * eps * f / grid
        assert h == pytest.approx(grid[np.argmin(model)], rel=0.35)


@pytest.mark.exercise("1.3", points=2)
def test_hidden_adam_step_for_float32_and_zero_gradients():
    g = np.array([0.0, 1.0, -2.5], dtype=np.float32)
    delta = np.asarray(adam_constant_gradient_step(g, lr=0.1, betas=(0.5, 0.25), eps=1e-3,
                                                   t=30))
    np.testing.assert_allclose(delta, -0.1 * g / (np.abs(g) + 1e-3), rtol=1e-6)
    assert delta[0] == 0.0


@pytest.mark.exercise("10.6", points=2)
@pytest.mark.parametrize("N, P", [(3, 2), (4, 3), (5, 2)])
def test_hidden_exact_error_by_enumerating_every_pattern_set(N, P):
    errors = total = 0
    for bits in itertools.product([-1.0, 1.0], repeat=N * P):
        X = np.array(bits).reshape(P, N)
        W = X.T @ X / N
        np.fill_diagonal(W, 0.0)
        errors += int((X * (X @ W) < -1e-12).sum())
        total += X.size
    assert one_step_error_exact(N, P) == pytest.approx(errors / total, rel=1e-12, abs=1e-15)


@pytest.mark.exercise("30.4", points=2)
def test_hidden_usage_by_enumerating_every_read():
    n, k, reads = 5, 2, 3
    subsets = list(itertools.combinations(range(n), k))
    touched = 0
    for choice in itertools.product(subsets, repeat=reads):
        touched += len(set().union(*map(set, choice)))
    exact = touched / (n * len(subsets) ** reads)
    assert expected_usage(n, k, reads) == pytest.approx(exact, rel=1e-12)


@pytest.mark.exercise("40.5", points=2)
def test_hidden_pair_count_for_strides_longer_than_the_sequence():
    for T in range(1, 30):
        for l in (T, T + 1, 3 * T):
            assert strided_pair_count(T, l) == T * (T + 1) // 2  # all of causal
    rng = np.random.default_rng(1)
    for _ in range(50):
        T, l = int(rng.integers(10**12, 10**13)), int(rng.integers(1, 10**6))
        assert strided_pair_count(T + 1, l) - strided_pair_count(T, l) == min(T + 1, l) + T // l


@pytest.mark.exercise("50.4", points=2)
def test_hidden_norm_gradient_in_float32_and_one_slot():
    u = np.array([0.01, -0.02, 0.005], dtype=np.float32)
    eps = 1e-4
    sq = float(np.sum(u.astype(np.float64) ** 2))
    expected = 2 * eps * u.astype(np.float64) / (sq + eps) ** 2
    np.testing.assert_allclose(normalized_norm_gradient(u, eps=eps), expected, rtol=1e-5)
    assert math.isfinite(float(np.sum(normalized_norm_gradient(np.zeros(4), eps=1e-5))))
