"""Aaren's prefix attention: scan = recurrent = a naive loop over prefixes; the Aaren layer."""
import numpy as np
import pytest

from minimem.autograd import Tensor, gradcheck
from minimem.memory import Aaren, prefix_attention
from minimem.memory.reduction.prefix import scan_rounds
from minimem.nn import TransformerLM


def _naive(q, k, v, scale):
    """o_t = softmax over i <= t of scale q.k_i, weighted values: one prefix at a time."""
    B, H, T, _ = k.shape
    out = np.zeros((B, H, T, v.shape[-1]))
    for t in range(T):
        s = scale * np.einsum("bhd,bhid->bhi", q, k[:, :, :t + 1])
        w = np.exp(s - s.max(-1, keepdims=True))
        out[:, :, t] = np.einsum("bhi,bhie->bhe", w / w.sum(-1, keepdims=True), v[:, :, :t + 1])
    return out


def _inputs(T, seed=0, B=2, H=3, D=4, Dv=5, spread=1.0):
    rng = np.random.default_rng(seed)
    return (spread * rng.standard_normal((B, H, D)), rng.standard_normal((B, H, T, D)),
            rng.standard_normal((B, H, T, Dv)))


def _run(mode, arrays, do):
    leaves = [Tensor(a, requires_grad=True) for a in arrays]
    o = prefix_attention(*leaves, mode=mode)
    o.backward(Tensor(do))
    return [o.data] + [t.grad.data for t in leaves]


@pytest.mark.exercise("45.1", points=2)
@pytest.mark.parametrize("T", [1, 2, 7, 16, 33])
def test_scan_and_recurrent_equal_the_naive_prefixes_forward_and_backward(T):
    arrays = _inputs(T, seed=T, spread=10.0)  # large scores: the stabilizer matters
    naive = _naive(*arrays, 4 ** -0.5)
    do = np.random.default_rng(1).standard_normal(naive.shape)
    scan, rec = _run("scan", arrays, do), _run("recurrent", arrays, do)
    assert np.abs(scan[0] - naive).max() <= 1e-12
    for a, b in zip(scan, rec):
        assert np.abs(a - b).max() <= 1e-12


def test_prefix_attention_gradcheck_and_custom_scale():
    q, k, v = (Tensor(a, requires_grad=True) for a in _inputs(6, seed=3, B=1, H=2))
    assert gradcheck(lambda q, k, v: prefix_attention(q, k, v, scale=0.3), (q, k, v))
    np.testing.assert_allclose(prefix_attention(q, k, v, scale=0.3).data,
                               _naive(q.data, k.data, v.data, 0.3), atol=1e-12)


def test_scan_rounds_cover_every_prefix():
    for T in (1, 5, 8, 13):
        covered = [{t} for t in range(T)]
        for d, pairs in scan_rounds(T):
            covered = [covered[t] | (covered[t - d] if t >= d else set()) for t in range(T)]
        assert covered == [set(range(t + 1)) for t in range(T)]
        assert len(scan_rounds(T)) == int(np.ceil(np.log2(T)))


def test_aaren_layer_is_causal_and_a_mixer():
    layer = Aaren(8, 2, seed=0).double()
    x = np.random.default_rng(0).standard_normal((2, 6, 8))
    y = layer(Tensor(x)).data
    x2 = x.copy()
    x2[:, 4:] += 1.0                     # change the future only
    np.testing.assert_allclose(layer(Tensor(x2)).data[:, :4], y[:, :4], atol=1e-12)
    lm = TransformerLM(11, 8, 1, 2, 16, mixer=lambda **kw: Aaren(**kw, seed=1), seed=0)
    assert lm(np.zeros((2, 5), dtype=int)).shape == (2, 5, 11)


def test_prefix_attention_rejects_bad_inputs():
    q, k, v = (Tensor(a) for a in _inputs(4))
    with pytest.raises(ValueError, match=r"prefix_attention: k must have shape \(B, H, T, D_k\)"):
        prefix_attention(q, Tensor(k.data[..., :3]), v)
    with pytest.raises(ValueError, match="prefix_attention: v must have shape"):
        prefix_attention(q, k, Tensor(v.data[:, :, :3]))
    with pytest.raises(ValueError, match="prefix_attention: mode must be one of"):
        prefix_attention(q, k, v, mode="parallel")
    with pytest.raises(TypeError, match="prefix_attention: argument 'q' must be floating"):
        prefix_attention(Tensor(np.ones((2, 3, 4), dtype=np.int64)), k, v)
    with pytest.raises(ValueError, match="prefix_attention: scale must be"):
        prefix_attention(q, k, v, scale=-1.0)
    with pytest.raises(ValueError, match="Aaren: d_model"):
        Aaren(7, 2)
