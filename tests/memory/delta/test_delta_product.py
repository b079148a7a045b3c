"""DeltaProduct and beta in [0, 2]: the interleaved fast forms equal the per-token reference
and a plain NumPy loop written here, forward and backward (float64, <= 1e-10)."""
import numpy as np
import pytest
from _helpers import tensor64

from minimem.memory import (DeltaNet, DeltaProductNet, delta_product, delta_product_reference,
                            delta_rule, householder_product, transition_matrix)
from minimem.memory.delta import lab

MODES = [{"mode": "recurrent", "checkpoint": 2}, {"mode": "chunk", "chunk_size": 3},
         {"mode": "chunk"}]


def _inputs(rng, B=2, H=2, T=7, n_h=3, D=3, Dv=2):
    k = rng.standard_normal((B, H, T, n_h, D))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    return (rng.standard_normal((B, H, T, D)), k, rng.standard_normal((B, H, T, n_h, Dv)),
            rng.uniform(0, 2, (B, H, T, n_h)), -rng.uniform(0, 0.5, (B, H, T)),
            rng.standard_normal((B, H, D, Dv)))


def _numpy_loop(q, k, v, beta, g, S0, scale):
    """S <- e^g S, then S <- (I - b k k^T) S + b k v^T n_h times; o_t = S^T (s q_t)."""
    B, H, T, n_h, _ = k.shape
    o = np.zeros((B, H, T, v.shape[-1]))
    S = S0.copy()
    for b in range(B):
        for h in range(H):
            St = S[b, h]
            for t in range(T):
                St = np.exp(g[b, h, t]) * St
                for j in range(n_h):
                    kk, bb = k[b, h, t, j], beta[b, h, t, j]
                    St = (np.eye(len(kk)) - bb * np.outer(kk, kk)) @ St \
                        + bb * np.outer(kk, v[b, h, t, j])
                o[b, h, t] = St.T @ (scale * q[b, h, t])
            S[b, h] = St
    return o, S


@pytest.mark.parametrize("kw", MODES)
def test_matches_numpy_loop(rng, kw):
    q, k, v, beta, g, S0 = _inputs(rng)
    o, S = delta_product(*map(tensor64, (q, k, v, beta, g)), initial_state=tensor64(S0),
                         output_final_state=True, **kw)
    o_ref, S_ref = _numpy_loop(q, k, v, beta, g, S0, 3 ** -0.5)
    np.testing.assert_allclose(o.numpy(), o_ref, atol=1e-10)
    np.testing.assert_allclose(S.numpy(), S_ref, atol=1e-10)


def test_fast_forms_equal_reference_forward_and_backward(rng):
    arrays = _inputs(rng)
    runs = []
    for kw in [None] + MODES:
        ins = [tensor64(a, True) for a in arrays]
        if kw is None:
            o, S = delta_product_reference(*ins[:5], initial_state=ins[5])
        else:
            o, S = delta_product(*ins[:5], initial_state=ins[5], output_final_state=True, **kw)
        r = np.random.default_rng(5)
        ((o * tensor64(r.standard_normal(o.shape))).sum()
         + (S * tensor64(r.standard_normal(S.shape))).sum()).backward()
        runs.append([o.numpy(), S.numpy()] + [x.grad.numpy() for x in ins])
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-10, rtol=0)


def test_equals_delta_rule_on_interleaved_steps_read_every_n_h(rng):
    q, k, v, beta, _, S0 = _inputs(rng, n_h=2)
    B, H, T, n_h, D = k.shape
    o, S = delta_product(*map(tensor64, (q, k, v, beta)), initial_state=tensor64(S0),
                         output_final_state=True)
    q_steps = np.repeat(q, n_h, axis=2)              # any query: only every n_h-th is read
    o_steps, S_steps = delta_rule(tensor64(q_steps), tensor64(k.reshape(B, H, T * n_h, D)),
                                  tensor64(v.reshape(B, H, T * n_h, -1)),
                                  tensor64(beta.reshape(B, H, T * n_h)), scale=D ** -0.5,
                                  initial_state=tensor64(S0), output_final_state=True)
    np.testing.assert_allclose(o.numpy(), o_steps.numpy()[:, :, n_h - 1::n_h], atol=1e-12)
    np.testing.assert_allclose(S.numpy(), S_steps.numpy(), atol=1e-12)


def test_n_h_1_is_the_delta_rule(rng):
    q, k, v, beta, _, S0 = _inputs(rng, n_h=1)
    o, _ = delta_product(*map(tensor64, (q, k, v, beta)))
    o2, _ = delta_rule(*map(tensor64, (q, k[:, :, :, 0], v[:, :, :, 0], beta[..., 0])))
    np.testing.assert_allclose(o.numpy(), o2.numpy(), atol=1e-12)


def test_beta_2_is_a_reflection_and_two_make_a_rotation(rng):
    k = rng.standard_normal(4)
    k /= np.linalg.norm(k)
    H = transition_matrix(k, 2.0)
    np.testing.assert_allclose(H @ H, np.eye(4), atol=1e-12)       # involution
    np.testing.assert_allclose(np.linalg.eigvalsh(H), [-1, 1, 1, 1], atol=1e-12)
    # two reflections in the plane of e1, e2 at angle theta/2: a rotation by theta
    theta = 0.7
    k1, k2 = np.array([0.0, 1, 0, 0]), np.array([-np.sin(theta / 2), np.cos(theta / 2), 0, 0])
    A = householder_product(np.stack([k1, k2]), np.array([2.0, 2.0]))
    R = np.eye(4)
    R[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    np.testing.assert_allclose(A, R, atol=1e-12)
    spectrum = lab.product_spectrum(np.stack([k1, k2]), np.array([2.0, 2.0]))
    np.testing.assert_allclose(np.sort(np.angle(spectrum))[[0, -1]], [-theta, theta],
                               atol=1e-12)


def test_negative_beta_flips_the_stored_value(rng):
    """beta = 2 with the key of a stored pair: S^T k goes from v to -v (eigenvalue -1)."""
    k = np.array([1.0, 0, 0])
    v = np.array([0.5, -2.0])
    S0 = np.outer(k, v)[None, None]
    o, _ = delta_rule(tensor64(k[None, None, None]), tensor64(k[None, None, None]),
                      tensor64(np.zeros((1, 1, 1, 2))), tensor64(np.full((1, 1, 1), 2.0)),
                      scale=1.0, initial_state=tensor64(S0))
    np.testing.assert_allclose(o.numpy()[0, 0, 0], -v, atol=1e-15)


def test_layers_map_the_gate_to_0_2(rng):
    x = tensor64(rng.standard_normal((1, 5, 4)))
    neg = DeltaNet(4, 1, conv_size=0, allow_neg_eigval=True, seed=0).double()
    pos = DeltaNet(4, 1, conv_size=0, seed=0).double()
    np.testing.assert_allclose(neg._beta(x).numpy(), 2 * pos._beta(x).numpy(), atol=1e-15)
    layer = DeltaProductNet(4, 2, n_householder=3, allow_neg_eigval=True, seed=0).double()
    beta = layer._beta(x).numpy()
    assert beta.shape == (1, 2, 5, 3) and beta.min() > 0 and beta.max() < 2
    assert layer(x).shape == (1, 5, 4)


def test_bad_inputs(rng):
    q, k, v, beta, g, S0 = map(tensor64, _inputs(rng, B=1, T=4, n_h=2))
    with pytest.raises(ValueError, match=r"delta_product: beta must be finite"):
        delta_product(q, k, v, beta * np.nan)
    with pytest.raises(ValueError, match=r"delta_rule: beta must be finite"):
        delta_rule(q, k[:, :, :, 0], v[:, :, :, 0], beta[..., 0] * np.inf)
    with pytest.raises(ValueError, match=r"delta_product: k must have shape \(B, H, T, n_h, "
                                         r"D_k\)"):
        delta_product(q, k[:, :, :, 0], v, beta)
    with pytest.raises(ValueError, match=r"delta_product: beta must have shape \(B, H, T, "
                                         r"n_h\) = \(1, 2, 4, 2\), got \(1, 2, 4\)"):
        delta_product(q, k, v, beta[..., 0])
    with pytest.raises(ValueError, match=r"delta_product: g must have shape"):
        delta_product(q, k, v, beta, g[..., :3])
    with pytest.raises(ValueError, match="DeltaProductNet: n_householder must be an int >= 1"):
        DeltaProductNet(4, 1, n_householder=0)
    with pytest.raises(TypeError, match="DeltaNet: allow_neg_eigval must be True or False"):
        DeltaNet(4, 1, allow_neg_eigval="yes")
