"""Exercise 10.6: the exact one-step bit error of the classical network at finite N and P,
predicted and checked against a Monte Carlo count written here
(minimem.memory.hopfield.lab.one_step_error_exact)."""
import itertools

import numpy as np
import pytest

from minimem.memory.hopfield import lab


def monte_carlo_error(N, P, trials, seed):
    """Fraction of flipped bits after one update from a stored pattern: numpy only."""
    rng = np.random.default_rng(seed)
    X = rng.choice([-1.0, 1.0], size=(trials, P, N))
    W = np.einsum("tpi,tpj->tij", X, X) / N
    W[:, np.arange(N), np.arange(N)] = 0.0
    H = np.einsum("tpj,tij->tpi", X, W)
    return float(np.mean(X * H < -1e-12))


@pytest.mark.exercise("10.6", points=2)
@pytest.mark.parametrize("N, P", [(20, 6), (31, 4), (16, 9), (12, 12)])
def test_exact_error_matches_a_monte_carlo_count(N, P):
    p = lab.one_step_error_exact(N, P)
    assert isinstance(p, float) and 0 < p < 0.5
    trials = 3000
    mc = monte_carlo_error(N, P, trials, seed=N * 100 + P)
    sd = np.sqrt(p * (1 - p) / (trials * P * N))
    assert abs(mc - p) < 5 * sd + 1e-4, (mc, p, sd)
    # the Gaussian approximation is measurably off at such small N: the derivation is needed
    gauss = float(lab.one_step_error_theory(P / N))
    assert abs(mc - gauss) > abs(mc - p)


@pytest.mark.exercise("10.6", points=2)
def test_exact_error_limits_and_monotonicity():
    assert lab.one_step_error_exact(50, 1) == 0.0  # one pattern is always stable
    ps = [lab.one_step_error_exact(40, P) for P in range(2, 30, 3)]
    assert all(a < b for a, b in itertools.pairwise(ps))
    # large N at fixed load: close to the Gaussian limit 1/2 erfc(sqrt(N / 2P))
    big = lab.one_step_error_exact(1000, 100)
    assert big == pytest.approx(float(lab.one_step_error_theory(0.1)), rel=0.1)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-3, ValueError), (2.0, TypeError),
                                        (True, TypeError)])
def test_one_step_error_exact_rejects_bad_arguments(bad, error):
    with pytest.raises(error, match=r"one_step_error_exact: N must be an int >= 1, got"):
        lab.one_step_error_exact(bad, 3)
