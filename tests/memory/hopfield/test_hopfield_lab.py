"""The chapter's helpers: a recall strip, the fixed points across beta, the loads of section 2."""
import math

import numpy as np
import pytest

from minimem import memory
from minimem.memory.hopfield import lab


def test_recall_strip_frames_descend_the_energy_to_the_recalled_pattern():
    X = lab.random_patterns(10, 256, seed=0)
    net = memory.ClassicalHopfield(256).store(X)
    probe = lab.flip_bits(X[0], 0.42, seed=1)
    frames = lab.recall_strip(net, probe, 4, seed=2)
    assert frames.shape == (5, 256) and np.array_equal(frames[0], probe)
    energies = [net.energy(f) for f in frames]
    assert all(b <= a + 1e-12 for a, b in zip(energies, energies[1:]))
    assert np.array_equal(frames[-1], X[0])                  # recalled exactly
    assert np.array_equal(lab.recall_strip(net, frames[-1], 1, seed=5)[1], frames[-1])


def test_fixed_points_span_average_to_single_pattern():
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((6, 8))
    q = Y[2] + 0.01 * rng.standard_normal(8)
    small, large = lab.fixed_points(q, Y, (1e-12, 1e3), steps=5)
    assert np.allclose(small, Y.mean(axis=0), atol=1e-9)     # uniform weights: the mean
    assert np.allclose(large, Y[2], atol=1e-9)               # one pattern wins


# -- the loads of section 2 -----------------------------------------------------------------
def test_one_step_load_inverts_the_gaussian_one_step_error():
    for p in (1e-6, 1e-3, 0.01, 0.2):
        assert float(lab.one_step_error_theory(lab.one_step_load(p))) == pytest.approx(p)
    # z = 3.090 standard deviations for a one-sided tail of 0.001: alpha = 1 / z^2
    assert lab.one_step_load(1e-3) == pytest.approx(1 / 3.0902 ** 2, rel=1e-4)
    for bad in (0, 0.5, float("nan")):
        with pytest.raises(ValueError, match="one_step_load: p_err"):
            lab.one_step_load(bad)


def _replica_symmetric_overlap(alpha, iters=4000):
    """Independent formulation: iterate the three T = 0 replica-symmetric equations
    m = erf(m / sqrt(2 alpha r)), C = sqrt(2 / (pi alpha r)) exp(-m^2 / (2 alpha r)),
    r = 1 / (1 - C)^2 from the retrieval start m = 1; returns (m, r), m = 0 on collapse."""
    m, r = 1.0, 1.0
    for _ in range(iters):
        C = math.sqrt(2 / (math.pi * alpha * r)) * math.exp(-m * m / (2 * alpha * r))
        if C >= 1:
            return 0.0, r
        r = 1 / (1 - C) ** 2
        m = math.erf(m / math.sqrt(2 * alpha * r))
        if m < 1e-3:
            return 0.0, r
    return m, r


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.13])
def test_retrieval_load_is_the_load_of_the_replica_symmetric_solution(alpha):
    m, r = _replica_symmetric_overlap(alpha)
    assert m > 0.9
    y = m / math.sqrt(2 * alpha * r)
    assert float(lab.retrieval_load(y)) == pytest.approx(alpha, rel=1e-6)
    # and y solves the one-variable equation y (sqrt(2 alpha) + 2/sqrt(pi) e^-y^2) = erf y
    a = float(lab.retrieval_load(y))
    assert y * (math.sqrt(2 * a) + 2 / math.sqrt(math.pi) * math.exp(-y * y)) == \
        pytest.approx(math.erf(y), rel=1e-9)


def test_critical_load_is_where_retrieval_disappears():
    alpha_c, m_c = lab.critical_load()
    assert alpha_c == pytest.approx(0.138, abs=5e-4)          # Amit et al. 1985
    assert m_c == pytest.approx(0.967, abs=1e-3)               # 1.6 % wrong bits
    y = np.linspace(0.05, 6, 20001)
    assert lab.retrieval_load(y).max() <= alpha_c + 1e-12
    assert _replica_symmetric_overlap(alpha_c - 0.002)[0] > 0.9
    assert _replica_symmetric_overlap(alpha_c + 0.002)[0] == 0.0
    with pytest.raises(ValueError, match="retrieval_load: y must be finite and > 0"):
        lab.retrieval_load([1.0, 0.0])


def test_retrieval_branch_runs_from_the_critical_point_to_perfect_recall():
    alphas, m = lab.retrieval_branch(n=50, y_max=6.0)
    alpha_c, m_c = lab.critical_load()
    assert alphas[0] == pytest.approx(alpha_c) and m[0] == pytest.approx(m_c)
    assert (np.diff(alphas) < 0).all() and (np.diff(m) > 0).all() and m[-1] > 0.999999
    for a, mm in zip(alphas[1::10], m[1::10]):      # each point is the iterated solution
        assert _replica_symmetric_overlap(a)[0] == pytest.approx(mm, abs=1e-6)
    with pytest.raises(ValueError, match="retrieval_branch: y_max must be"):
        lab.retrieval_branch(y_max=1.0)
