"""Hopfield layers: one step with projections is multi-head attention; T steps, T softmaxes."""
import numpy as np
import pytest
from _helpers import leaf, tensor64

import minimem as mm
from minimem.memory import Hopfield, HopfieldLayer, HopfieldPooling
from minimem.nn import MultiHeadAttention


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _numpy_hopfield(layer, R, Y, V, steps):
    """The layer's equations in NumPy, head by head (an independent formulation)."""
    lin = lambda m, x: x @ m.weight.numpy().T + m.bias.numpy()
    q, k, v = lin(layer.W_q, R), lin(layer.W_k, Y), lin(layer.W_v, V)
    H, dh = layer.n_heads, layer.d_head
    out = np.zeros_like(q)
    for h in range(H):
        sl = slice(h * dh, (h + 1) * dh)
        xi, K = q[..., sl], k[..., sl]
        for _ in range(steps - 1):
            xi = _softmax(layer.beta * xi @ K.swapaxes(-1, -2)) @ K
        out[..., sl] = _softmax(layer.beta * xi @ K.swapaxes(-1, -2)) @ v[..., sl]
    return lin(layer.W_o, out)


@pytest.mark.parametrize("n_heads", [1, 2])
def test_one_step_equals_multi_head_attention(n_heads):
    rng = np.random.default_rng(0)
    mha = MultiHeadAttention(8, n_heads, causal=False, seed=1).double()
    hop = Hopfield(8, n_heads, seed=2).double()  # another init: the weights are copied below
    hop.load_state_dict(mha.state_dict())
    assert hop.beta == 1 / np.sqrt(8 // n_heads)
    x, ctx = leaf(rng, 2, 5, 8), leaf(rng, 2, 7, 8)
    w = tensor64(rng.standard_normal((2, 5, 8)))
    (mha(x, ctx) * w).sum().backward()
    grads_mha = [x.grad.numpy(), ctx.grad.numpy()] + [p.grad.numpy() for p in mha.parameters()]
    x.grad = ctx.grad = None
    out = hop(x, ctx)
    np.testing.assert_allclose(out.numpy(), mha(x, ctx).numpy(), rtol=0, atol=1e-14)
    (out * w).sum().backward()
    grads_hop = [x.grad.numpy(), ctx.grad.numpy()] + [p.grad.numpy() for p in hop.parameters()]
    for a, b in zip(grads_hop, grads_mha):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)
    assert hop.last_n_softmax == 1
    np.testing.assert_allclose(hop.last_weights.numpy(), mha.last_weights.numpy(), atol=1e-14)


def test_same_seed_same_init_as_multi_head_attention():
    mha, hop = MultiHeadAttention(8, 2, causal=False, seed=7), Hopfield(8, 2, seed=7)
    for (n1, p1), (n2, p2) in zip(mha.named_parameters(), hop.named_parameters()):
        assert n1 == n2 and np.array_equal(p1.numpy(), p2.numpy())


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_update_steps_match_the_equations_and_count_softmaxes(steps):
    rng = np.random.default_rng(3)
    hop = Hopfield(6, 2, beta=0.9, update_steps=steps, seed=4).double()
    R, Y, V = (rng.standard_normal(s) for s in [(2, 3, 6), (2, 5, 6), (2, 5, 6)])
    out = hop(tensor64(R), tensor64(Y), tensor64(V))
    np.testing.assert_allclose(out.numpy(), _numpy_hopfield(hop, R, Y, V, steps), atol=1e-12)
    assert hop.last_n_softmax == steps


def test_tolerance_stops_early():
    rng = np.random.default_rng(5)
    hop = Hopfield(4, 1, beta=3.0, update_steps=50, tol=1e-6, seed=6).double()
    x = tensor64(rng.standard_normal((1, 3, 4)))
    out = hop(x)
    n = hop.last_n_softmax
    assert 2 <= n < 50
    R = x.numpy()
    # the early result equals running exactly n steps without a tolerance
    np.testing.assert_allclose(out.numpy(), _numpy_hopfield(hop, R, R, R, n), atol=1e-12)


def test_hopfield_layer_and_pooling_shapes_and_equations():
    rng = np.random.default_rng(8)
    layer = HopfieldLayer(6, n_stored=5, n_heads=2, update_steps=2, seed=9).double()
    x = tensor64(rng.standard_normal((3, 4, 6)))
    Y = np.broadcast_to(layer.stored.numpy(), (3, 5, 6))
    np.testing.assert_allclose(layer(x).numpy(),
                               _numpy_hopfield(layer.hopfield, x.numpy(), Y, Y, 2), atol=1e-12)
    pool = HopfieldPooling(6, n_queries=2, n_heads=3, seed=10).double()
    Q = np.broadcast_to(pool.queries.numpy(), (3, 2, 6))
    out = pool(x)
    assert out.shape == (3, 2, 6)
    np.testing.assert_allclose(out.numpy(), _numpy_hopfield(pool.hopfield, Q, x.numpy(),
                                                            x.numpy(), 1), atol=1e-12)
    # pooling is permutation invariant in the set
    perm = rng.permutation(4)
    np.testing.assert_allclose(pool(mm.tensor(x.numpy()[:, perm])).numpy(), out.numpy(),
                               atol=1e-12)


def test_errors_are_clear():
    with pytest.raises(ValueError, match=r"Hopfield: d_model \(6\) must be divisible by n_heads"):
        Hopfield(6, 4)
    with pytest.raises(ValueError, match=r"Hopfield: update_steps must be an int >= 1"):
        Hopfield(4, update_steps=0)
    with pytest.raises(ValueError, match=r"Hopfield: tol must be >= 0"):
        Hopfield(4, tol=-1)
    hop = Hopfield(4)
    with pytest.raises(ValueError, match=r"Hopfield: state must have shape \(B, length, 4\)"):
        hop(mm.zeros(2, 3))
    with pytest.raises(ValueError, match=r"Hopfield: stored must have shape \(B=2, length, 4\)"):
        hop(mm.zeros(2, 3, 4), mm.zeros(1, 3, 4))
    with pytest.raises(ValueError, match=r"Hopfield: projection must have as many patterns"):
        hop(mm.zeros(2, 3, 4), mm.zeros(2, 5, 4), mm.zeros(2, 4, 4))
    with pytest.raises(ValueError, match=r"HopfieldLayer: n_stored must be an int >= 1"):
        HopfieldLayer(4, 0)
