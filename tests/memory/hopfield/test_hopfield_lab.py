"""The chapter's picture helpers: a recall strip and the fixed points across beta."""
import numpy as np

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
