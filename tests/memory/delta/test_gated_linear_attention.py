"""Gated linear attention and normalized linear attention: fast forms = references =
closed forms written in the test, forward and backward (float64, <= 1e-10)."""
import numpy as np
import pytest
from _helpers import tensor64

from minimem.memory import (feature_dim, feature_map, gated_linear_attention,
                            gated_linear_attention_reference, linear_attention,
                            linear_attention_reference)

MODES = [{"mode": "recurrent", "checkpoint": 3}, {"mode": "chunk", "chunk_size": 4},
         {"mode": "chunk"}]


def _qkv(rng, B=2, H=2, T=13, D=3, Dv=4):
    return (rng.standard_normal((B, H, T, D)), rng.standard_normal((B, H, T, D)),
            rng.standard_normal((B, H, T, Dv)))


def _grads(fn, arrays, seed=1):
    """Output, state and the gradient of every input under a random linear loss."""
    ins = [tensor64(a, True) for a in arrays]
    o, S = fn(*ins)
    r = np.random.default_rng(seed)
    ((o * tensor64(r.standard_normal(o.shape))).sum()
     + (S * tensor64(r.standard_normal(S.shape))).sum()).backward()
    return [o.numpy(), S.numpy()] + [x.grad.numpy() for x in ins]


def _assert_all_close(runs):
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-10, rtol=0)


def test_gated_matches_decayed_masked_attention(rng):
    """o_t = sum_{j<=t} exp(gamma_t - gamma_j) s q_t.k_j v_j (+ exp(gamma_t) s S0^T q_t)."""
    q, k, v = _qkv(rng)
    g = -rng.uniform(0, 0.7, q.shape[:3])
    S0 = rng.standard_normal((2, 2, 3, 4))
    gamma = np.cumsum(g, axis=-1)
    T = q.shape[2]
    decay = np.exp(gamma[..., :, None] - gamma[..., None, :]) * np.tril(np.ones((T, T)))
    s = 3 ** -0.5
    want = (s * np.einsum("bhtd,bhjd->bhtj", q, k) * decay) @ v \
        + s * np.exp(gamma)[..., None] * (q @ S0)
    for kw in MODES:
        o, _ = gated_linear_attention(*map(tensor64, (q, k, v, g)), initial_state=tensor64(S0),
                                      **kw)
        np.testing.assert_allclose(o.numpy(), want, atol=1e-10)


def test_gated_fast_forms_equal_reference_forward_and_backward(rng):
    q, k, v = _qkv(rng)
    g = -rng.uniform(0, 0.7, q.shape[:3])
    S0 = rng.standard_normal((2, 2, 3, 4))
    runs = [_grads(lambda *a: gated_linear_attention_reference(*a[:4], initial_state=a[4]),
                   (q, k, v, g, S0))]
    for kw in MODES:
        runs.append(_grads(lambda *a, kw=kw: gated_linear_attention(
            *a[:4], initial_state=a[4], output_final_state=True, **kw), (q, k, v, g, S0)))
    _assert_all_close(runs)


def test_constant_decay_is_retnet_power_law(rng):
    """g = log(gamma) constant: the weight of v_j seen from t is gamma^(t-j) s q_t.k_j."""
    q, k, v = _qkv(rng, B=1, H=1, T=6)
    gam = 0.9
    o, _ = gated_linear_attention(*map(tensor64, (q, k, v)), tensor64(np.full((1, 1, 6),
                                                                              np.log(gam))))
    t, j = np.arange(6)[:, None], np.arange(6)[None, :]
    w = np.where(t >= j, gam ** (t - j), 0.0) * (q[0, 0] @ k[0, 0].T) * 3 ** -0.5
    np.testing.assert_allclose(o.numpy()[0, 0], w @ v[0, 0], atol=1e-12)


@pytest.mark.parametrize("kind", ["elu1", "dpfp", "taylor2", "performer"])
def test_normalized_is_kernel_weighted_average(rng, kind):
    """o_t = sum_j kappa(q_t, k_j) v_j / (sum_j kappa(q_t, k_j) + eps), kappa from the map."""
    q, k, v = _qkv(rng, T=9)
    fq = feature_map(tensor64(q), kind).numpy()
    fk = feature_map(tensor64(k), kind).numpy()
    kappa = np.einsum("bhtd,bhjd->bhtj", fq, fk) * np.tril(np.ones((9, 9)))
    want = (kappa @ v) / (kappa.sum(-1, keepdims=True) + 1e-6)
    for kw in MODES:
        o, S = linear_attention(*map(tensor64, (q, k, v)), feature_map=kind, normalize=True,
                                output_final_state=True, **kw)
        np.testing.assert_allclose(o.numpy(), want, atol=1e-10)
        assert S.shape == (2, 2, feature_dim(kind, 3), 4 + 1)     # [S | z]
        np.testing.assert_allclose(S.numpy()[..., -1], fk.sum(2), atol=1e-10)


def test_normalized_fast_forms_equal_reference_forward_and_backward(rng):
    q, k, v = _qkv(rng)
    S0 = np.abs(rng.standard_normal((2, 2, feature_dim("dpfp", 3, nu=2), 5)))
    phi = lambda x: feature_map(x, "dpfp", nu=2)   # noqa: E731  (a callable map)
    runs = [_grads(lambda *a: linear_attention_reference(
        *a[:3], initial_state=a[3], feature_map=phi, normalize=True), (q, k, v, S0))]
    for kw in MODES:
        runs.append(_grads(lambda *a, kw=kw: linear_attention(
            *a[:3], initial_state=a[3], feature_map=phi, normalize=True,
            output_final_state=True, **kw), (q, k, v, S0)))
    _assert_all_close(runs)


def test_feature_map_without_normalizer_equals_mapped_inputs(rng):
    q, k, v = _qkv(rng, T=7)
    o, _ = linear_attention(*map(tensor64, (q, k, v)), feature_map="elu1", mode="chunk")
    fq, fk = (feature_map(tensor64(x), "elu1") for x in (q, k))
    o2, _ = linear_attention(fq, fk, tensor64(v))
    np.testing.assert_allclose(o.numpy(), o2.numpy(), atol=1e-12)


def test_feature_map_as_kind_and_parameters(rng):
    q, k, v = map(tensor64, _qkv(rng, T=5))
    a, _ = linear_attention(q, k, v, feature_map=("dpfp", {"nu": 2}), normalize=True)
    b, _ = linear_attention(q, k, v, feature_map=lambda x: feature_map(x, "dpfp", nu=2),
                            normalize=True)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_bad_inputs(rng):
    q, k, v = map(tensor64, _qkv(rng, T=8, B=1))
    with pytest.raises(ValueError, match=r"gated_linear_attention: g must have shape "
                                         r"\(B, H, T\) = \(1, 2, 8\), got \(1, 2, 7\)"):
        gated_linear_attention(q, k, v, tensor64(np.zeros((1, 2, 7))))
    with pytest.raises(ValueError, match="gated_linear_attention: g is a log-decay and must "
                                         "be <= 0"):
        gated_linear_attention(q, k, v, tensor64(np.full((1, 2, 8), 0.1)))
    with pytest.raises(TypeError, match="gated_linear_attention: g is required"):
        gated_linear_attention(q, k, v, None)
    with pytest.raises(ValueError, match="linear_attention: eps must be > 0"):
        linear_attention(q, k, v, normalize=True, eps=0.0)
    with pytest.raises(TypeError, match="linear_attention: normalize must be True or False"):
        linear_attention(q, k, v, normalize=1)
    with pytest.raises(TypeError, match="linear_attention: feature_map must be None, a kind"):
        linear_attention(q, k, v, feature_map=3)
    with pytest.raises(ValueError, match="linear_attention: feature_map must be one of"):
        linear_attention(q, k, v, feature_map="softmax")
    with pytest.raises(ValueError, match=r"linear_attention: initial_state must have shape "
                                         r"\(B, H, D_k, D_v\) = \(1, 2, 3, 5\)"):
        linear_attention(q, k, v, normalize=True, initial_state=tensor64(np.ones((1, 2, 3, 4))))
