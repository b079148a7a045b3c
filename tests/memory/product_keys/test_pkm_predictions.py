"""Exercise 30.4: the slot usage of random reads, predicted and then simulated here
(minimem.memory.product_keys.lab.expected_usage)."""
import numpy as np
import pytest

from minimem.memory.product_keys import lab


def simulated_usage(n_slots, k, reads, trials, seed):
    rng = np.random.default_rng(seed)
    fractions = []
    for _ in range(trials):
        touched = np.zeros(n_slots, dtype=bool)
        for _ in range(reads):
            touched[rng.choice(n_slots, size=k, replace=False)] = True
        fractions.append(touched.mean())
    return float(np.mean(fractions)), float(np.std(fractions) / np.sqrt(trials))


@pytest.mark.exercise("30.4", points=2)
@pytest.mark.parametrize("n_slots, k, reads", [(256, 4, 30), (64, 8, 5), (1024, 32, 40),
                                               (100, 1, 100)])
def test_predicted_usage_matches_simulated_reads(n_slots, k, reads):
    usage = lab.expected_usage(n_slots, k, reads)
    assert isinstance(usage, float) and 0 < usage < 1
    mean, se = simulated_usage(n_slots, k, reads, trials=100, seed=n_slots + k + reads)
    assert abs(usage - mean) < 5 * se + 1e-3, (usage, mean, se)
    # k reads of one slot each are not one read of k slots: the naive k * reads / N is off
    assert abs(usage - min(1.0, k * reads / n_slots)) > 5 * se


@pytest.mark.exercise("30.4", points=2)
def test_predicted_usage_limits():
    assert lab.expected_usage(50, 3, 0) == 0.0
    assert lab.expected_usage(50, 50, 1) == 1.0
    assert lab.expected_usage(10**6, 1, 10**6) == pytest.approx(1 - np.exp(-1), rel=1e-5)


@pytest.mark.parametrize("args, error, match", [
    ((0, 1, 1), ValueError, r"n_slots must be an int >= 1"),
    ((4, 5, 1), ValueError, r"k must be <= n_slots = 4, got 5"),
    ((4, 1, -1), ValueError, r"reads must be an int >= 0"),
    ((4.0, 1, 1), TypeError, r"n_slots must be an int >= 1, got float 4.0")])
def test_expected_usage_rejects_bad_arguments(args, error, match):
    with pytest.raises(error, match=r"expected_usage: " + match):
        lab.expected_usage(*args)
