"""Dense associative memory: the energy-lowering update, n = 2 is classical, capacity grows."""
import numpy as np
import pytest

from minimem.memory import ClassicalHopfield, DenseAssociativeMemory
from minimem.memory.hopfield.lab import (dense_capacity_theory, dense_recall_count, flip_bits,
                                         random_patterns)


def test_energy_is_minus_sum_of_F():
    rng = np.random.default_rng(0)
    X = random_patterns(5, 11, seed=1)
    S = rng.choice(np.array([-1.0, 1.0]), size=(3, 11))
    for F, f in [("poly", lambda z: z ** 3), ("rectified", lambda z: max(z, 0) ** 3),
                 ("exp", np.exp)]:
        mem = DenseAssociativeMemory(X, F=F, n=3)
        naive = [-sum(f(float(X[mu] @ s)) for mu in range(5)) for s in S]
        np.testing.assert_allclose(mem.energy(S), naive, rtol=1e-12)


@pytest.mark.parametrize("F", ["poly", "rectified", "exp"])
def test_recall_lowers_energy_and_matches_the_plain_loop(F):
    X = random_patterns(12, 24, seed=2)
    mem = DenseAssociativeMemory(X, F=F, n=4)
    probe = flip_bits(X[3], 0.15, seed=3)
    a = mem.recall(probe, seed=4)
    b = mem.recall(probe, seed=4, kernel=False)
    np.testing.assert_array_equal(a.state, b.state)
    np.testing.assert_allclose(a.energies, b.energies, rtol=1e-12)
    assert np.all(np.diff(a.energies) <= 1e-9 * np.abs(a.energies[:-1]))
    np.testing.assert_array_equal(a.state, X[3])  # 12 patterns are far below capacity


def test_n2_is_the_classical_network():
    """F(a + x) - F(a - x) = 4 a x for F = z^2: the same decisions as Hebbian weights."""
    X = random_patterns(9, 40, seed=5)
    dense = DenseAssociativeMemory(X, F="poly", n=2)
    classical = ClassicalHopfield(40).store(X)
    for k in range(3):
        probe = flip_bits(X[k], 0.3, seed=10 + k)
        np.testing.assert_array_equal(dense.recall(probe, seed=k).state,
                                      classical.recall(probe, seed=k).state)


def test_capacity_grows_with_n():
    """At N=20 and P=40 (twice the number of units), n=2 recalls none, n=3 few, n=4 most."""
    counts = [dense_recall_count(20, n, 40, noise=0.0, seed=0) for n in (2, 3, 4)]
    assert counts[0] <= 2 < counts[1] < counts[2]
    assert counts[2] >= 35
    assert counts[0] < dense_capacity_theory(20, 2) < counts[2]


def test_dense_capacity_theory_values():
    assert dense_capacity_theory(100, 2) == pytest.approx(100 / (2 * np.log(100)))
    assert dense_capacity_theory(100, 4) == pytest.approx(100 ** 3 / (2 * 15 * np.log(100)))


def test_errors_are_clear():
    X = random_patterns(3, 5, seed=0)
    with pytest.raises(ValueError, match=r"DenseAssociativeMemory: F must be one of"):
        DenseAssociativeMemory(X, F="cubic")
    with pytest.raises(ValueError, match=r"DenseAssociativeMemory: n must be an int >= 1"):
        DenseAssociativeMemory(X, n=0)
    with pytest.raises(ValueError, match=r"DenseAssociativeMemory.recall: probe must have 5 units"):
        DenseAssociativeMemory(X).recall(np.ones(4))
