"""Blockwise attention with the online softmax; the exact merge of partial results."""
import numpy as np
import pytest
from _helpers import leaf
from hypothesis import given
from hypothesis import strategies as st

import minimem as mm
from minimem.autograd.registry import cases
from minimem.memory import (
    Partial,
    blockwise_attention,
    empty_partial,
    finish_partial,
    merge_partials,
    online_softmax_trace,
    partial_attention,
)
from minimem.nn import scaled_dot_product_attention


def _partial_numpy(s, v):
    """(m, l, O) of one piece, written directly (s: (T, n) scores, v: (n, Dv))."""
    m = s.max(axis=1, keepdims=True)
    p = np.exp(s - m)
    return m, p.sum(axis=1, keepdims=True), p @ v


@pytest.mark.exercise("40.3", points=2)
def test_merge_of_two_pieces_is_softmax_over_the_union():
    rng = np.random.default_rng(0)
    s1, s2 = 3 * rng.standard_normal((4, 5)), 3 * rng.standard_normal((4, 3)) + 20
    v1, v2 = rng.standard_normal((5, 2)), rng.standard_normal((3, 2))
    a = Partial(*(x if i == 0 else mm.tensor(x) for i, x in enumerate(_partial_numpy(s1, v1))))
    b = Partial(*(x if i == 0 else mm.tensor(x) for i, x in enumerate(_partial_numpy(s2, v2))))
    merged = merge_partials(a, b)
    s, v = np.concatenate([s1, s2], axis=1), np.concatenate([v1, v2])
    w = np.exp(s - s.max(axis=1, keepdims=True))
    np.testing.assert_allclose(np.asarray(merged.m), s.max(axis=1, keepdims=True))
    np.testing.assert_allclose(merged.O.numpy() / merged.l.numpy(),
                               (w / w.sum(axis=1, keepdims=True)) @ v, atol=1e-12)
    # an empty piece (-inf, 0, 0) is the neutral element, on either side
    empty = Partial(np.full((4, 1), -np.inf), mm.tensor(np.zeros((4, 1))),
                    mm.tensor(np.zeros((4, 2))))
    for m in (merge_partials(a, empty), merge_partials(empty, a)):
        assert np.isfinite(m.l.numpy()).all()
        np.testing.assert_allclose(m.O.numpy(), a.O.numpy())
        np.testing.assert_allclose(m.l.numpy(), a.l.numpy())


@pytest.mark.exercise("40.3", points=2)
def test_merge_is_associative_in_the_result():
    rng = np.random.default_rng(1)
    parts = []
    for n in (2, 4, 3):
        m, l_, O = _partial_numpy(rng.standard_normal((3, n)) * 5, rng.standard_normal((n, 2)))
        parts.append(Partial(m, mm.tensor(l_), mm.tensor(O)))
    x = merge_partials(merge_partials(parts[0], parts[1]), parts[2])
    y = merge_partials(parts[0], merge_partials(parts[1], parts[2]))
    np.testing.assert_allclose(x.O.numpy() / x.l.numpy(), y.O.numpy() / y.l.numpy(), atol=1e-12)


@given(T=st.integers(1, 12), S=st.integers(1, 12), b=st.integers(1, 5), causal=st.booleans())
def test_blockwise_equals_dense_attention(T, S, b, causal):
    rng = np.random.default_rng(T * 31 + S)
    q, k, v = leaf(rng, 1, 2, T, 3), leaf(rng, 1, 2, S, 3), leaf(rng, 1, 2, S, 2)
    out = blockwise_attention(q, k, v, causal=causal, block_size=b)
    ref = scaled_dot_product_attention(q, k, v, causal=causal)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-10)


def test_blockwise_gradients_equal_dense_gradients(rng):
    q, k, v = leaf(rng, 2, 1, 9, 4), leaf(rng, 2, 1, 9, 4), leaf(rng, 2, 1, 9, 3)
    g = rng.standard_normal((2, 1, 9, 3))
    grads = []
    for fn in (lambda: blockwise_attention(q, k, v, block_size=4),
               lambda: scaled_dot_product_attention(q, k, v, causal=True)):
        for x in (q, k, v):
            x.grad = None
        fn().backward(g)
        grads.append([x.grad.numpy().copy() for x in (q, k, v)])
    for a, c in zip(*grads):
        np.testing.assert_allclose(a, c, atol=1e-10)


def test_partial_attention_with_a_fully_masked_row_finishes_to_zero(rng):
    q, k, v = leaf(rng, 3, 2), leaf(rng, 4, 2), leaf(rng, 4, 2)
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], bool)
    part = partial_attention(q, k, v, mask)
    out = finish_partial(part)
    ref = scaled_dot_product_attention(q, k, v, mask=mask)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-12)
    out.sum().backward()
    assert np.isfinite(q.grad.numpy()).all()
    e = empty_partial((3, 2), 2, np.float64)
    np.testing.assert_array_equal(finish_partial(merge_partials(e, part)).numpy(), out.numpy())


def test_online_softmax_trace_ends_at_the_softmax_average():
    rng = np.random.default_rng(2)
    s, v = rng.standard_normal(10) * 3, rng.standard_normal(10)
    tr = online_softmax_trace(s, v, 3)
    np.testing.assert_array_equal(tr["end"], [3, 6, 9, 10])
    np.testing.assert_allclose(tr["m"], np.maximum.accumulate(s)[[2, 5, 8, 9]])
    w = np.exp(s - s.max())
    np.testing.assert_allclose(tr["o"][-1], w @ v / w.sum())
    np.testing.assert_allclose(tr["l"][-1], w.sum())


def test_blockwise_gradcheck_cases_are_registered_and_errors():
    names = [c.name for c in cases("sparse")]
    assert any(n.startswith("blockwise") for n in names)
    assert any(n.startswith("merge") for n in names)
    q = mm.zeros(1, 1, 4, 2)
    with pytest.raises(ValueError, match="blockwise_attention: block_size must be"):
        blockwise_attention(q, q, q, block_size=0)
    with pytest.raises(ValueError, match="blockwise_attention: expected q"):
        blockwise_attention(q, mm.zeros(1, 1, 4, 3), q)
    with pytest.raises(TypeError, match="merge_partials: a must be a Partial"):
        merge_partials((1, 2, 3), empty_partial((4, 2), 2, np.float64))
