"""Rotary position embeddings: the rotation, the relative property, the MHA option."""
import numpy as np
import pytest

from minimem.autograd import Tensor, gradcheck
from minimem.nn import MultiHeadAttention, rope


def _naive_rope(x, positions, base=10000.0):
    out = x.copy()
    D = x.shape[-1]
    for t, p in enumerate(positions):
        for i in range(D // 2):
            a = p * base ** (-2 * i / D)
            c, s = np.cos(a), np.sin(a)
            x0, x1 = x[..., t, 2 * i], x[..., t, 2 * i + 1]
            out[..., t, 2 * i], out[..., t, 2 * i + 1] = c * x0 - s * x1, s * x0 + c * x1
    return out


def test_rope_is_the_pairwise_rotation_and_keeps_norms():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 8))
    pos = np.array([0, 1, 7, 2, 1000])
    y = rope(Tensor(x), pos, base=100.0).data
    np.testing.assert_allclose(y, _naive_rope(x, pos, 100.0), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1),
                               atol=1e-12)
    np.testing.assert_array_equal(rope(Tensor(x)).data[..., 0, :], x[..., 0, :])


def test_scores_depend_only_on_the_position_difference():
    rng = np.random.default_rng(1)
    q, k = Tensor(rng.standard_normal((1, 16))), Tensor(rng.standard_normal((1, 16)))

    def score(p, p2):
        return float((rope(q, np.array([p])).data * rope(k, np.array([p2])).data).sum())

    for p, p2 in ((0, 5), (3, 3), (40, 2)):
        for shift in (1, 17, 1000):
            assert abs(score(p + shift, p2 + shift) - score(p, p2)) <= 1e-10
    assert abs(score(0, 5) - score(0, 6)) > 1e-3   # but it does see the difference


def test_rope_gradcheck_and_bad_inputs():
    x = Tensor(np.random.default_rng(2).standard_normal((2, 3, 4)), requires_grad=True)
    assert gradcheck(lambda x: rope(x, np.array([2, 0, 5])), (x,))
    with pytest.raises(ValueError, match="rope: x must have shape"):
        rope(Tensor(np.zeros((3, 5))))
    with pytest.raises(TypeError, match=r"rope: positions must be an integer array of shape "
                                        r"\(T,\) = \(3,\)"):
        rope(Tensor(np.zeros((3, 4))), np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="rope: base must be"):
        rope(Tensor(np.zeros((3, 4))), base=1.0)
    with pytest.raises(TypeError, match="rope: argument 'x' must be floating"):
        rope(Tensor(np.zeros((3, 4), dtype=np.int64)))


def test_multi_head_attention_rope_option():
    x = Tensor(np.random.default_rng(3).standard_normal((1, 6, 8)))
    plain = MultiHeadAttention(8, 2, seed=0).double()
    roped = MultiHeadAttention(8, 2, seed=0, rope=True).double()
    assert not plain.rope and roped.rope
    # the same weights: equal at position 0 (no rotation) and different afterwards
    a, b = plain(x).data, roped(x).data
    np.testing.assert_allclose(a[:, 0], b[:, 0], atol=1e-12)
    assert np.abs(a[:, 1:] - b[:, 1:]).max() > 1e-6
    with pytest.raises(TypeError, match="MultiHeadAttention: rope must be True or False"):
        MultiHeadAttention(8, 2, rope=1)
    with pytest.raises(ValueError, match="MultiHeadAttention: rope needs an even head size"):
        MultiHeadAttention(6, 2, rope=True)
