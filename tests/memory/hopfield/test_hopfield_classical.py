"""Classical binary Hopfield network: storage, energy, updates, capacity, spurious states."""
import math

import numpy as np
import pytest

from minimem.kernels.async_sweeps import async_sweeps_reference
from minimem.memory import ClassicalHopfield, classical_energy, hebbian_weights
from minimem.memory.hopfield.lab import (capacity_curve, find_sync_two_cycle, flip_bits,
                                         mixture_state, one_step_error, one_step_error_theory,
                                         overlap, random_patterns)


def _pm1(rng, *shape):
    return rng.choice(np.array([-1.0, 1.0]), size=shape)


# -- exercises (independent naive formulations written here) ----------------------------------
@pytest.mark.exercise("10.1", points=2)
def test_exercise_hebbian_weights():
    rng = np.random.default_rng(0)
    P, N = 4, 9
    X = _pm1(rng, P, N)
    W = hebbian_weights(X)
    naive = np.zeros((N, N))
    for i in range(N):
        for j in range(N):
            if i != j:
                naive[i, j] = sum(X[mu, i] * X[mu, j] for mu in range(P)) / N
    np.testing.assert_allclose(W, naive, atol=1e-12)
    assert W.shape == (N, N) and np.all(np.diag(W) == 0)


@pytest.mark.exercise("10.2", points=2)
def test_exercise_async_update():
    rng = np.random.default_rng(1)
    N = 12
    A = rng.standard_normal((N, N))
    W = (A + A.T) / 2
    np.fill_diagonal(W, 0)
    b = 0.2 * rng.standard_normal(N)
    s0 = _pm1(rng, N)
    orders = np.stack([rng.permutation(N) for _ in range(3)])
    s, energies, _ = async_sweeps_reference(W, b, s0, orders, stop_when_stable=False)
    expected = s0.copy()
    for order in orders:
        for i in order:
            h = sum(W[i, j] * expected[j] for j in range(N)) - b[i]
            if h > 0:
                expected[i] = 1.0
            elif h < 0:
                expected[i] = -1.0
    np.testing.assert_array_equal(s, expected)
    assert np.all(np.diff(energies) <= 1e-12)


@pytest.mark.exercise("10.3", points=1)
def test_exercise_energy():
    rng = np.random.default_rng(2)
    N = 7
    W = rng.standard_normal((N, N))
    W = W + W.T
    b = rng.standard_normal(N)
    S = _pm1(rng, 3, N)
    naive = [-0.5 * sum(W[i, j] * s[i] * s[j] for i in range(N) for j in range(N))
             + sum(b[i] * s[i] for i in range(N)) for s in S]
    np.testing.assert_allclose(classical_energy(W, b, S), naive, atol=1e-12)
    assert isinstance(classical_energy(W, b, S[0]), float)
    assert classical_energy(W, b, S[0]) == pytest.approx(naive[0], abs=1e-12)


# -- the network --------------------------------------------------------------------------------
def test_store_is_additive_and_recall_is_seeded():
    rng = np.random.default_rng(3)
    X = _pm1(rng, 6, 60)
    net = ClassicalHopfield(60).store(X[:2]).store(X[2:])
    np.testing.assert_allclose(net.W, hebbian_weights(X), atol=1e-12)
    assert net.n_patterns == 6 and net.load == pytest.approx(0.1)
    probe = flip_bits(X[0], 0.15, seed=4)
    a = net.recall(probe, seed=5)
    b = net.recall(probe, seed=5)
    c = net.recall(probe, seed=5, kernel=False)
    np.testing.assert_array_equal(a.state, b.state)
    np.testing.assert_array_equal(a.state, c.state)
    np.testing.assert_allclose(a.energies, c.energies, atol=1e-10)
    state, energies = a  # unpacks as (state, energy trace)
    assert overlap(state, X[0]) == 1.0 and a.converged
    assert len(energies) == a.sweeps + 1 and energies[0] == pytest.approx(net.energy(probe))
    assert np.all(np.diff(energies) <= 1e-12)


def test_sync_two_cycle_two_units():
    net = ClassicalHopfield(2).store([[1, 1]])
    res = net.recall([1, -1], mode="sync", max_sweeps=10)
    assert res.cycle == 2 and not res.converged
    np.testing.assert_array_equal(res.states[1], [-1, 1])
    np.testing.assert_array_equal(res.states[2], [1, -1])
    # asynchronous updates cannot cycle: they reach a stored state (or its inverse)
    state, _ = net.recall([1, -1], mode="async", seed=0)
    assert abs(overlap(state, [1, 1])) == 1


def test_find_sync_two_cycle_in_a_loaded_network():
    X = random_patterns(30, 100, seed=6)
    net = ClassicalHopfield(100).store(X)
    res = find_sync_two_cycle(net, n_tries=100, seed=7)
    assert res is not None
    s = res.state

    def step(v):  # s <- sgn(W s), a zero field keeps the unit
        h = net.W @ v
        return np.where(np.abs(h) < 1e-9, v, np.sign(h))

    assert not np.array_equal(step(s), s) and np.array_equal(step(step(s)), s)


def test_spurious_states():
    rng = np.random.default_rng(8)
    N = 500
    X = _pm1(rng, 5, N)
    net = ClassicalHopfield(N).store(X)
    # the inverted pattern has the same energy and is itself a fixed point
    assert net.energy(-X[0]) == pytest.approx(net.energy(X[0]))
    state, _ = net.recall(-X[0], seed=0)
    np.testing.assert_array_equal(state, -X[0])
    # the symmetric mixture of three patterns is (close to) a fixed point, overlap 1/2 with each
    mix = mixture_state(X[:3])
    state, _ = net.recall(mix, seed=1)
    assert overlap(state, mix) > 0.95
    np.testing.assert_allclose(overlap(state, X[:3]), 0.5, atol=0.1)


def test_capacity_transition_at_N500():
    """AGS: retrieval below alpha_c ~ 0.138, none well above it (final overlap from a pattern)."""
    m_low, m_high = capacity_curve(500, [0.05, 0.25], n_probes=8, seed=0)
    assert m_low >= 0.99
    assert m_high < 0.6


def _binomial_tail(n, k_max):
    """P(Bin(n, 1/2) <= k_max), summed in log space."""
    logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2)
            for k in range(k_max + 1)]
    top = max(logs)
    return math.exp(top) * sum(math.exp(v - top) for v in logs)


@pytest.mark.parametrize("P", [51, 101])
def test_one_step_error_against_erf(P):
    """Simulated one-step error vs 1/2 (1 - erf(sqrt(N / 2P))).

    Tolerance = 4 binomial standard errors of the estimate (n_bits = trials P N indicator
    variables) + the model error of the erf formula, i.e. its distance to the exact law: at a
    stored pattern N h_i x_i = (N - 1) + C, C a sum of (P - 1)(N - 1) independent +-1 terms, and
    the bit flips iff C < -(N - 1) (N - 1 odd and P odd: no ties). erf is its Gaussian limit.
    """
    N, trials = 500, 2
    sim = one_step_error(N, P, trials=trials, seed=P)
    theory = float(one_step_error_theory(P / N))
    assert theory == pytest.approx(0.5 * (1 - math.erf(math.sqrt(N / (2 * P)))))
    n = (P - 1) * (N - 1)
    exact = _binomial_tail(n, (n - N) // 2)  # C = 2K - n < -(N - 1)  <=>  K <= (n - N) / 2
    stat = 4 * math.sqrt(exact * (1 - exact) / (trials * P * N))
    assert abs(sim - exact) <= stat
    assert abs(sim - theory) <= stat + abs(theory - exact)
    assert abs(theory - exact) < 0.15 * theory  # and the erf law itself is close


def test_one_step_error_theory_milestone():
    """0.105 N patterns give a one-step error of about 0.001."""
    assert float(one_step_error_theory(0.105)) == pytest.approx(1e-3, rel=0.15)


def test_errors_are_clear():
    net = ClassicalHopfield(4)
    with pytest.raises(ValueError, match=r"ClassicalHopfield.store: patterns must contain only -1"):
        net.store([[1, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"ClassicalHopfield.recall: probe must have 4 units"):
        net.recall([1, 1, 1])
    with pytest.raises(ValueError, match=r"ClassicalHopfield.recall: mode must be 'async' or"):
        net.recall([1, 1, 1, 1], mode="parallel")
    with pytest.raises(ValueError, match=r"ClassicalHopfield: n_units must be an int >= 1"):
        ClassicalHopfield(0)
    with pytest.raises(ValueError, match=r"hebbian_weights: patterns must have 2 dims"):
        hebbian_weights(np.ones(4))
