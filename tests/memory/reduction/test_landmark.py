"""Landmark attention: the grouped softmax against a naive loop; decode = the last row."""
import numpy as np
import pytest

from minimem.autograd import Tensor, gradcheck, ops
from minimem.memory import LandmarkAttention, LandmarkLM, landmark_attention, landmark_decode
from minimem.memory.reduction.landmark import insert_landmarks, landmark_layout


def _naive(q, k, v, b, top_k, scale):
    """Query by query: the outer softmax over own-block tokens and (the top_k best) earlier
    landmarks; a landmark's weight spread over its block by the inner softmax."""
    B, H, T, _ = q.shape
    g, lm = landmark_layout(T, b)
    out = np.zeros(q.shape[:3] + (v.shape[-1],))
    for bb, h, i in np.ndindex(B, H, T):
        s = scale * k[bb, h] @ q[bb, h, i]
        own = [j for j in range(i + 1) if g[j] == g[i] and not lm[j]]
        lms = [j for j in range(T) if lm[j] and g[j] < g[i]]
        if top_k is not None:
            lms = sorted(lms, key=lambda j: -s[j])[:top_k]
        keys = own + lms
        a = np.exp(s[keys] - s[keys].max())
        a /= a.sum()
        for w, j in zip(a, keys):
            if lm[j]:
                blk = [jj for jj in range(T) if g[jj] == g[j] and not lm[jj]]
                e = np.exp(s[blk] - s[blk].max())
                out[bb, h, i] += w * (e / e.sum()) @ v[bb, h, blk]
            else:
                out[bb, h, i] += w * v[bb, h, j]
    return out


@pytest.mark.parametrize("T, b, top_k", [(1, 3, None), (13, 3, None), (13, 3, 2), (12, 2, 1),
                                         (5, 4, None), (21, 3, 10)])
def test_grouped_softmax_equals_the_naive_loop(T, b, top_k):
    rng = np.random.default_rng(T + b)
    q, k, v = (3 * rng.standard_normal((2, 2, T, 4)) for _ in range(3))
    o = landmark_attention(Tensor(q), Tensor(k), Tensor(v), b, top_k)
    np.testing.assert_allclose(o.data, _naive(q, k, v, b, top_k, 0.5), atol=1e-12, rtol=0)


def test_landmark_attention_gradcheck_full_and_retrieval():
    rng = np.random.default_rng(0)
    q, k, v = (Tensor(rng.standard_normal((1, 2, 11, 3)), requires_grad=True) for _ in range(3))
    assert gradcheck(lambda q, k, v: landmark_attention(q, k, v, 3), (q, k, v))
    assert gradcheck(lambda q, k, v: landmark_attention(q, k, v, 2, top_k=1), (q, k, v))


@pytest.mark.parametrize("T, b, top_k", [(3, 3, 1), (20, 3, 2), (20, 3, 9), (24, 3, 1)])
def test_decode_equals_the_last_row_forward_and_backward(T, b, top_k):
    rng = np.random.default_rng(T)
    q, k, v = (rng.standard_normal((2, 2, T, 4)) for _ in range(3))
    do = rng.standard_normal((2, 2, 4))
    grads = []
    for full in (True, False):
        leaves = [Tensor(x, requires_grad=True) for x in (q[:, :, -1], k, v)]
        if full:
            q_all = ops.concatenate([Tensor(q[:, :, :-1]), ops.expand_dims(leaves[0], 2)],
                                    axis=2)
            o = landmark_attention(q_all, leaves[1], leaves[2], b, top_k)[:, :, -1]
        else:
            o = landmark_decode(*leaves, b, top_k)
        o.backward(Tensor(do))
        grads.append([o.data] + [t.grad.data for t in leaves])
    for a, c in zip(*grads):
        assert np.abs(a - c).max() <= 1e-12


def test_insert_landmarks_and_the_layout_agree():
    tokens = np.arange(10).reshape(1, 10)
    out, keep = insert_landmarks(tokens, 4, 99)
    assert out.tolist() == [[0, 1, 2, 3, 99, 4, 5, 6, 7, 99, 8, 9]]
    np.testing.assert_array_equal(out[:, keep], tokens)
    _, lm = landmark_layout(out.shape[1], 4)
    assert (out[0, lm] == 99).all() and (out[0, ~lm] != 99).all()


def test_landmark_lm_runs_at_any_length_and_layers_check_inputs():
    lm = LandmarkLM(8, 8, 1, 2, block=3, seed=0)
    for T in (2, 7, 30):
        assert lm(np.zeros((2, T), dtype=np.int64)).shape == (2, T, 8)
    lm.top_k = 1
    assert all(b.mixer.top_k == 1 for b in lm.blocks)
    with pytest.raises(ValueError, match=r"LandmarkLM: tokens must be integer ids \(B, T\) in"):
        lm(np.full((1, 4), 8))
    with pytest.raises(ValueError, match="LandmarkAttention: block must be an int >= 1"):
        LandmarkAttention(8, 2, block=0)


def test_landmark_functions_reject_bad_inputs():
    x = Tensor(np.zeros((1, 2, 6, 4)))
    with pytest.raises(ValueError, match="landmark_attention: top_k must be an int >= 1"):
        landmark_attention(x, x, x, 2, top_k=0)
    with pytest.raises(ValueError, match=r"landmark_attention: v must have shape"):
        landmark_attention(x, x, Tensor(np.zeros((1, 2, 5, 4))), 2)
    with pytest.raises(ValueError, match=r"landmark_decode: k_cache must have shape"):
        landmark_decode(Tensor(np.zeros((1, 2, 3))), x, x, 2, 1)
    with pytest.raises(TypeError, match="insert_landmarks: block must be an int"):
        insert_landmarks(np.zeros((1, 4), dtype=int), 2.5, 9)
