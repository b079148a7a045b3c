"""Hidden grading tests of the attention-as-a-reduction chapter (independent formulations)."""
import numpy as np
import pytest

from minimem.autograd import Tensor
from minimem.memory import Partial, causal_block_counts, prefix_attention
from minimem.memory.reduction.split_kv import tree_reduce


def _naive_prefix(q, k, v):
    T = k.shape[2]
    out = np.zeros(k.shape[:3] + (v.shape[-1],))
    for t in range(T):
        s = np.einsum("bhd,bhid->bhi", q, k[:, :, :t + 1]) / np.sqrt(q.shape[-1])
        w = np.exp(s - s.max(-1, keepdims=True))
        out[:, :, t] = np.einsum("bhi,bhie->bhe", w / w.sum(-1, keepdims=True), v[:, :, :t + 1])
    return out


@pytest.mark.exercise("45.1", points=2)
def test_prefix_scan_hidden_lengths_and_extreme_scores():
    rng = np.random.default_rng(11)
    for T in (1, 3, 4, 9, 31):
        q = 30 * rng.standard_normal((1, 2, 3))
        k, v = rng.standard_normal((1, 2, T, 3)), rng.standard_normal((1, 2, T, 2))
        o = prefix_attention(Tensor(q), Tensor(k), Tensor(v), mode="scan").data
        np.testing.assert_allclose(o, _naive_prefix(q, k, v), atol=1e-10)


@pytest.mark.exercise("45.1", points=2)
def test_prefix_scan_hidden_gradient_matches_finite_differences():
    rng = np.random.default_rng(12)
    q, k, v = rng.standard_normal((1, 1, 2)), rng.standard_normal((1, 1, 6, 2)), \
        rng.standard_normal((1, 1, 6, 2))
    w = rng.standard_normal((1, 1, 6, 2))
    kt = Tensor(k, requires_grad=True)
    (prefix_attention(Tensor(q), kt, Tensor(v), mode="scan") * Tensor(w)).sum().backward()
    eps, num = 1e-6, np.zeros_like(k)
    for idx in np.ndindex(k.shape):
        kp, km = k.copy(), k.copy()
        kp[idx] += eps
        km[idx] -= eps
        num[idx] = ((_naive_prefix(q, kp, v) - _naive_prefix(q, km, v)) * w).sum() / (2 * eps)
    np.testing.assert_allclose(kt.grad.data, num, atol=1e-7)


@pytest.mark.exercise("45.2", points=2)
def test_tree_reduce_hidden_many_parts_and_an_empty_piece():
    rng = np.random.default_rng(13)
    scores = [rng.standard_normal((2, 3)) * 40 for _ in range(7)]
    values = [rng.standard_normal((3, 2)) for _ in range(7)]
    parts = []
    for s, v in zip(scores, values):
        m = s.max(1, keepdims=True)
        parts.append(Partial(m, Tensor(np.exp(s - m).sum(1, keepdims=True)),
                             Tensor(np.exp(s - m) @ v)))
    parts.append(Partial(np.full((2, 1), -np.inf), Tensor(np.zeros((2, 1))),
                         Tensor(np.zeros((2, 2)))))
    out = tree_reduce(parts)
    s_all, v_all = np.concatenate(scores, 1), np.concatenate(values, 0)
    w = np.exp(s_all - s_all.max(1, keepdims=True))
    np.testing.assert_allclose(out.O.data / out.l.data, (w / w.sum(1, keepdims=True)) @ v_all,
                               atol=1e-12)


@pytest.mark.exercise("45.3", points=2)
def test_causal_block_counts_hidden_sizes():
    for P in (5, 16, 33):
        counts, imbalance = causal_block_counts(P)
        held = [[(r - s) % P for s in range(P)] for r in range(P)]
        expected = np.array([sum(j <= r for j in held[r]) for r in range(P)])
        np.testing.assert_array_equal(np.asarray(counts), expected)
        assert imbalance == pytest.approx(2 * P / (P + 1))
