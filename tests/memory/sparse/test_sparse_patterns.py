"""Sparse attention patterns: masks, layouts, key counts, reachability (chapter 'sparse')."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minimem.memory import (
    attended_pairs,
    block_layout,
    density,
    expand_layout,
    factorized_masks,
    fixed_mask,
    mask_to_layout,
    reachability,
    sparse_mask,
    strided_mask,
)


def naive_strided(T, l):
    m = np.zeros((T, T), bool)
    for i in range(T):
        for j in range(i + 1):
            m[i, j] = (i - j < l) or ((i - j) % l == 0)
    return m


def naive_fixed(T, l, c):
    m = np.zeros((T, T), bool)
    for i in range(T):
        for j in range(i + 1):
            m[i, j] = (i // l == j // l) or (j % l >= l - c)
    return m


@pytest.mark.exercise("40.1", points=2)
@given(T=st.integers(1, 40), l=st.integers(1, 9))
def test_strided_mask_matches_naive_loops(T, l):
    m = strided_mask(T, l)
    assert m.dtype == bool and m.shape == (T, T)
    np.testing.assert_array_equal(m, naive_strided(T, l))


@pytest.mark.exercise("40.1", points=2)
def test_strided_mask_key_count_per_row():
    T, l = 50, 7
    counts = strided_mask(T, l).sum(axis=1)
    i = np.arange(T)
    np.testing.assert_array_equal(counts, np.minimum(i + 1, l) + i // l)


@pytest.mark.exercise("40.2", points=2)
@given(T=st.integers(1, 40), l=st.integers(1, 9), data=st.data())
def test_fixed_mask_matches_naive_loops(T, l, data):
    c = data.draw(st.integers(0, l))
    m = fixed_mask(T, l, c)
    assert m.dtype == bool and m.shape == (T, T)
    np.testing.assert_array_equal(m, naive_fixed(T, l, c))


@pytest.mark.exercise("40.2", points=2)
def test_fixed_mask_key_count_per_row():
    T, l, c = 64, 8, 2
    i = np.arange(T)
    np.testing.assert_array_equal(fixed_mask(T, l, c).sum(axis=1), i % l + 1 + c * (i // l))


def test_local_longformer_bigbird_rules():
    T = 12
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    np.testing.assert_array_equal(sparse_mask("local", T, w=3), (i >= j) & (i - j < 3))
    np.testing.assert_array_equal(sparse_mask("causal", T), i >= j)
    lf = sparse_mask("longformer", T, w=2, global_tokens=(0, 5))
    assert (lf == lf.T).all()                            # symmetric
    assert lf[5].all() and lf[:, 0].all()                # global rows and columns
    assert lf[9, 7] and lf[9, 11] and not lf[9, 6]       # |i - j| <= 2
    bb = sparse_mask("bigbird", 16, block=4, w=0, g=1, r=1, seed=3)
    lay = mask_to_layout(bb, 4)
    assert lay[0].all() and lay[:, 0].all()              # one global block
    assert (lay.sum(axis=1)[1:] == 3).all()              # diagonal + global + 1 random
    np.testing.assert_array_equal(bb, sparse_mask("bigbird", 16, block=4, w=0, g=1, r=1, seed=3))


def test_block_layout_is_the_pattern_on_blocks_and_expands():
    lay = block_layout("fixed", 6, l=2, c=1)
    np.testing.assert_array_equal(lay, naive_fixed(6, 2, 1))
    b, T = 4, 22  # T not a multiple of b: the last block is short
    mask = expand_layout(block_layout("local", 6, w=2), b, T, causal=True)
    for i in range(T):
        for j in range(T):
            assert mask[i, j] == (j <= i and 0 <= i // b - j // b < 2)
    np.testing.assert_array_equal(mask_to_layout(mask, b), block_layout("local", 6, w=2))


def test_density_and_attended_pairs_scale_like_T_sqrt_T():
    assert density(sparse_mask("causal", 10)) == pytest.approx(55 / 100)
    Ts = np.array([64, 256, 1024])
    dense = np.array([attended_pairs("causal", T) for T in Ts])
    strided = np.array([attended_pairs("strided", T) for T in Ts])  # l = ceil(sqrt T)
    np.testing.assert_array_equal(dense, Ts * (Ts + 1) // 2)
    ratio = strided / (Ts * np.sqrt(Ts))
    assert ratio.max() / ratio.min() < 1.2  # O(T sqrt T)
    assert strided[-1] < dense[-1] / 10


def test_factorized_heads_union_and_two_hop_reachability():
    T = 40
    causal = sparse_mask("causal", T)
    for kind, params in (("strided", {"l": 6}), ("fixed", {"l": 6, "c": 1})):
        a1, a2 = factorized_masks(kind, T, **params)
        np.testing.assert_array_equal(a1 | a2, sparse_mask(kind, T, **params))
        assert not reachability(a1 | a2, hops=1).all(where=causal)
        np.testing.assert_array_equal(reachability(a1 | a2, hops=2), causal)
    local = sparse_mask("local", T, w=4)
    reach = reachability(local, hops=2)
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    np.testing.assert_array_equal(reach, (i >= j) & (i - j <= 6))


def test_pattern_errors_are_clear():
    with pytest.raises(ValueError, match="sparse_mask: kind must be one of"):
        sparse_mask("banded", 8)
    with pytest.raises(TypeError, match="sparse_mask: unexpected parameter"):
        sparse_mask("local", 8, l=3)
    with pytest.raises(ValueError, match="fixed_mask: c must be <= l"):
        fixed_mask(8, 2, 3)
    with pytest.raises(ValueError, match="strided_mask: l must be an int >= 1"):
        strided_mask(8, 0)
    with pytest.raises(ValueError, match="expand_layout: layout must be"):
        expand_layout(np.ones((3, 3), bool), 4, 20)
    with pytest.raises(TypeError, match="density: mask must be boolean"):
        density(np.ones((2, 2)))
