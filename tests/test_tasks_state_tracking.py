"""State-tracking tasks: targets recomputed here by a plain automaton loop."""
import numpy as np
import pytest

from minimem.tasks import IGNORE, modular_counting, parity, permutation_word, permutations


def test_parity_is_the_running_xor():
    x, y = parity(5, 12, seed=3)
    assert x.shape == y.shape == (5, 12) and x.dtype == y.dtype == np.int64
    for b in range(5):
        state = 0
        for t in range(12):
            state ^= int(x[b, t])
            assert y[b, t] == state
    assert set(np.unique(x)) <= {0, 1}


@pytest.mark.parametrize("m", [3, 5])
def test_modular_counting_counts_ones_modulo_m(m):
    x, y = modular_counting(4, 30, modulus=m, seed=1)
    for b in range(4):
        count = 0
        for t in range(30):
            count = (count + int(x[b, t] == 1)) % m
            assert y[b, t] == count


def test_last_only_and_seeds():
    _, y = modular_counting(3, 9, modulus=3, seed=2, targets="last")
    _, y_all = modular_counting(3, 9, modulus=3, seed=2)
    assert (y[:, :-1] == IGNORE).all() and (y[:, -1] == y_all[:, -1]).all()
    a, _ = parity(3, 9, seed=7)
    b, _ = parity(3, 9, seed=7)
    c, _ = parity(3, 9, seed=8)
    assert (a == b).all() and not (a == c).all()


def test_permutation_word_composes_left():
    x, y = permutation_word(3, 8, n=3, seed=0)
    perms = permutations(3)
    assert perms.shape == (6, 3)
    for b in range(3):
        p = list(range(3))
        for t in range(8):
            p = [int(perms[x[b, t]][p[i]]) for i in range(3)]      # x_t o p
            assert list(perms[y[b, t]]) == p
    # S3 is not abelian: the order of the tokens matters
    a, c = perms[1], perms[2]
    assert list(a[c]) != list(c[a])


def test_bad_inputs():
    with pytest.raises(ValueError, match="modular_counting: modulus must be an int >= 2, got 1"):
        modular_counting(2, 4, modulus=1)
    with pytest.raises(TypeError, match="parity: seq_len must be an int"):
        parity(2, 4.0)
    with pytest.raises(ValueError, match="parity: targets must be one of"):
        parity(2, 4, targets="first")
    with pytest.raises(ValueError, match="permutation_word: n must be <= 6"):
        permutation_word(2, 4, n=7)
    with pytest.raises(ValueError, match="modular_counting: n_examples must be an int >= 1"):
        modular_counting(0, 4)
