"""Hidden grading tests of the sparse chapter (independent naive formulations in the test)."""
import numpy as np
import pytest

import minimem as mm
from minimem.kernels.block_sparse_attention import block_sparse_attention_forward
from minimem.memory import Partial, fixed_mask, merge_partials, strided_mask


@pytest.mark.exercise("40.1", points=2)
def test_strided_mask_hidden_sizes():
    for T, l in ((1, 1), (17, 4), (33, 1), (20, 25)):
        expected = np.array([[j_ <= i_ and (i_ - j_ < l or (i_ - j_) % l == 0)
                              for j_ in range(T)] for i_ in range(T)])
        np.testing.assert_array_equal(strided_mask(T, l), expected)


@pytest.mark.exercise("40.2", points=2)
def test_fixed_mask_hidden_sizes():
    for T, l, c in ((1, 1, 1), (23, 5, 0), (23, 5, 5), (30, 4, 1)):
        expected = np.array([[j <= i and (i // l == j // l or j % l >= l - c)
                              for j in range(T)] for i in range(T)])
        np.testing.assert_array_equal(fixed_mask(T, l, c), expected)


@pytest.mark.exercise("40.3", points=2)
def test_merge_hidden_extreme_scores_and_gradients():
    rng = np.random.default_rng(5)
    s1, s2 = rng.standard_normal((2, 3)) + 500.0, rng.standard_normal((2, 4)) - 500.0
    v1, v2 = rng.standard_normal((3, 2)), rng.standard_normal((4, 2))

    def piece(s, v):
        m = s.max(axis=1, keepdims=True)
        lt = mm.tensor(np.exp(s - m).sum(axis=1, keepdims=True), requires_grad=True)
        Ot = mm.tensor(np.exp(s - m) @ v, requires_grad=True)
        return Partial(m, lt, Ot)

    a, b = piece(s1, v1), piece(s2, v2)
    out = merge_partials(a, b)
    assert np.isfinite(out.l.numpy()).all() and np.isfinite(out.O.numpy()).all()
    np.testing.assert_allclose(np.asarray(out.m), s1.max(axis=1, keepdims=True))
    (out.l.sum() + out.O.sum()).backward()
    alpha = np.exp(s2.max(axis=1, keepdims=True) - s1.max(axis=1, keepdims=True))
    np.testing.assert_allclose(a.l.grad.numpy(), np.ones((2, 1)))
    np.testing.assert_allclose(b.l.grad.numpy(), alpha)


def _naive_forward(q, k, v, layout, b, causal):
    T, S = q.shape[0], k.shape[0]
    o = np.zeros((T, v.shape[1]))
    for i in range(T):
        allowed = [j for j in range(S) if layout[i // b, j // b] and (not causal or j <= i)]
        if allowed:
            s = np.array([q[i] @ k[j] for j in allowed]) / np.sqrt(q.shape[1])
            w = np.exp(s - s.max())
            o[i] = (w / w.sum()) @ v[allowed]
    return o


@pytest.mark.exercise("40.4", points=3)
@pytest.mark.parametrize("T,b,causal", [(11, 4, True), (16, 4, False), (3, 8, True)])
def test_sparse_forward_block_hidden(T, b, causal):
    rng = np.random.default_rng(T)
    q, k, v = rng.standard_normal((T, 3)), rng.standard_normal((T, 3)), rng.standard_normal((T, 2))
    n = -(-T // b)
    layout = rng.random((n, n)) < 0.7
    np.fill_diagonal(layout, True)
    o, _ = block_sparse_attention_forward(q[None, None], k[None, None], v[None, None], layout,
                                            b, causal)
    np.testing.assert_allclose(o[0, 0], _naive_forward(q, k, v, layout, b, causal), atol=1e-12)
