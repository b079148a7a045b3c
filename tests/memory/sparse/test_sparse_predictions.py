"""Exercise 40.5: the number of pairs of the strided pattern in closed form, checked against
masks built here for small T and against its own row counts at T = 10^15
(minimem.memory.sparse.patterns.strided_pair_count)."""
import numpy as np
import pytest

from minimem.memory.sparse.patterns import strided_pair_count


def strided_by_hand(T, l):
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    d = i - j
    return int(((d >= 0) & ((d < l) | (d % l == 0))).sum())


@pytest.mark.exercise("40.5", points=2)
def test_pair_count_matches_the_mask_for_small_lengths():
    for T in range(1, 41):
        for l in (1, 2, 3, 5, 8, 40, 57):
            got = strided_pair_count(T, l)
            assert isinstance(got, int) and got == strided_by_hand(T, l), (T, l)


@pytest.mark.exercise("40.5", points=2)
@pytest.mark.parametrize("l", [1, 7, 31_622_777, 10**15 + 3])
def test_pair_count_is_exact_at_a_length_no_mask_reaches(l):
    T = 10**15
    row = min(T + 1, l) + T // l  # the keys of row T (module docstring): count(T+1) - count(T)
    assert strided_pair_count(T + 1, l) - strided_pair_count(T, l) == row
    assert strided_pair_count(T, l) <= T * (T + 1) // 2  # never more than causal


@pytest.mark.parametrize("T, l, err", [(0, 2, ValueError), (4, 0, ValueError),
                                       (2.0, 1, TypeError), (4, True, TypeError)])
def test_strided_pair_count_rejects_bad_arguments(T, l, err):
    with pytest.raises(err, match=r"strided_pair_count: (T|l) must be"):
        strided_pair_count(T, l)
