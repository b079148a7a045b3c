"""Every fused formulation of nn (one node each) against its composed reference of engine ops:
values and gradients, float64 and float32, on every device; a whole TransformerLM step too."""
import numpy as np
import pytest

import minimem as mm
from minimem import nn
from minimem.nn import attention, layers


def _leaves(rng, device, *shapes, dtype=np.float64, scale=1.0):
    return [mm.tensor(scale * rng.standard_normal(s), requires_grad=True, dtype=dtype,
                      device=device) for s in shapes]


def _copies(tensors):
    return [mm.tensor(t.data, requires_grad=True) for t in tensors]


def _assert_same(fast_fn, ref_fn, inputs, rng, rtol=1e-12, atol=1e-12, grad_rtol=1e-10):
    """fast_fn(*inputs) == ref_fn(*copies) in value, and in the gradient of a random loss
    through every output."""
    twins = _copies(inputs)
    outs_f, outs_r = fast_fn(*inputs), ref_fn(*twins)
    outs_f = outs_f if isinstance(outs_f, tuple) else (outs_f,)
    outs_r = outs_r if isinstance(outs_r, tuple) else (outs_r,)
    loss_f = loss_r = 0.0
    for a, b in zip(outs_f, outs_r):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol, atol=atol)
        up = rng.standard_normal(a.shape)
        loss_f = loss_f + (a * mm.tensor(up, dtype=a.dtype, device=a.device)).sum()
        loss_r = loss_r + (b * mm.tensor(up, dtype=b.dtype, device=b.device)).sum()
    loss_f.backward()
    loss_r.backward()
    for x, y in zip(inputs, twins):
        assert x.grad.dtype == x.dtype
        np.testing.assert_allclose(x.grad.numpy(), y.grad.numpy(), rtol=grad_rtol,
                                   atol=grad_rtol * 10)


# ------------------------------------------------------------------------ attention ----------
@pytest.mark.parametrize("T,S", [(6, 6), (4, 7), (7, 3), (70, 70)])
@pytest.mark.parametrize("kind", ["none", "causal", "mask", "causal+mask"])
def test_attention_matches_its_reference(T, S, kind, rng, device):
    q, k, v = _leaves(rng, device, (2, 2, T, 4), (2, 2, S, 4), (2, 2, S, 3))
    mask = None
    if "mask" in kind:
        mask = rng.random((2, 1, T, S)) < 0.6
        mask[0, 0, 1] = False                  # a fully masked row
    kw = {"mask": mask, "causal": "causal" in kind, "return_weights": True}
    _assert_same(lambda *a: nn.scaled_dot_product_attention(*a, **kw),
                 lambda *a: nn.scaled_dot_product_attention_reference(*a, **kw), [q, k, v], rng)


def test_attention_float32_with_a_scale_and_2d_inputs(rng):
    q, k, v = _leaves(rng, "cpu", (9, 8), (9, 8), (9, 5), dtype=np.float32)
    kw = {"causal": True, "scale": 0.3}
    _assert_same(lambda *a: nn.scaled_dot_product_attention(*a, **kw),
                 lambda *a: nn.scaled_dot_product_attention_reference(*a, **kw), [q, k, v], rng,
                 rtol=1e-5, atol=1e-6, grad_rtol=1e-4)


def test_attention_runs_one_node_and_falls_back_where_the_kernel_does_not_apply(rng):
    q, k, v = _leaves(rng, "cpu", (2, 3, 4), (2, 5, 4), (2, 5, 3))
    out = nn.scaled_dot_product_attention(q, k, v)
    assert out._ctx.fn is attention.ScaledDotProductAttention
    assert out._ctx.inputs[:3] == (q, k, v)
    # keys shared across the batch (leading dims that broadcast): the reference formulation
    k1, v1 = _leaves(rng, "cpu", (5, 4), (5, 3))
    out = nn.scaled_dot_product_attention(q, k1, v1, causal=True)
    want = nn.scaled_dot_product_attention_reference(q, k1, v1, causal=True)
    assert out._ctx.fn is not attention.ScaledDotProductAttention
    np.testing.assert_allclose(out.numpy(), want.numpy(), rtol=1e-14)


def test_attention_weights_only_loss_and_no_grad(rng):
    q, k, v = _leaves(rng, "cpu", (1, 4, 3), (1, 4, 3), (1, 4, 2))
    _, w = nn.scaled_dot_product_attention(q, k, v, causal=True, return_weights=True)
    (w * w).sum().backward()                   # the output O is unused: None reaches backward
    assert v.grad is None or not v.grad.numpy().any()
    q2, k2, v2 = _copies([q, k, v])
    _, w2 = nn.scaled_dot_product_attention_reference(q2, k2, v2, causal=True,
                                                      return_weights=True)
    (w2 * w2).sum().backward()
    np.testing.assert_allclose(q.grad.numpy(), q2.grad.numpy(), rtol=1e-10, atol=1e-14)
    with mm.no_grad():
        out = nn.scaled_dot_product_attention(q, k, v)
    assert not out.requires_grad


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda q, k, v: nn.scaled_dot_product_attention(q, k, v, scale=0.0), ValueError,
     r"scaled_dot_product_attention: scale must be a positive finite number, got 0.0"),
    (lambda q, k, v: nn.scaled_dot_product_attention(q, k, v, mask=np.ones((3, 5), int)),
     TypeError, r"scaled_dot_product_attention: mask must be boolean, got int"),
    (lambda q, k, v: nn.scaled_dot_product_attention(q, k, v, mask=np.ones((2, 5), bool)),
     ValueError, r"mask shape \(2, 5\) does not broadcast to the attention logits \(2, 3, 5\)"),
    (lambda q, k, v: nn.scaled_dot_product_attention(q, k[:, :0], v[:, :0]), ValueError,
     r"scaled_dot_product_attention: expected q \(\.\.\., T, D\).* D, S >= 1"),
    (lambda q, k, v: nn.scaled_dot_product_attention(q, k, v, causal="yes"), TypeError,
     r"causal must be True or False"),
    (lambda q, k, v: nn.scaled_dot_product_attention(q[None].broadcast_to((3, 2, 3, 4)), k, v),
     ValueError, None),
    (lambda q, k, v: nn.scaled_dot_product_attention_reference(q, k, v, scale=-2), ValueError,
     r"scaled_dot_product_attention_reference: scale must be a positive"),
])
def test_attention_errors(call, exc, pattern, rng):
    q, k, v = _leaves(rng, "cpu", (2, 3, 4), (2, 5, 4), (2, 5, 3))
    if pattern is None:  # leading dims (3, 2) vs (2,) broadcast: fine, not an error
        assert call(q, k, v).shape == (3, 2, 3, 3)
        return
    with pytest.raises(exc, match=pattern):
        call(q, k, v)


# ------------------------------------------------------------ linear, norms, gelu ----------
@pytest.mark.parametrize("x_shape", [(4,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_its_reference(x_shape, bias, rng, device):
    x, w, b = _leaves(rng, device, x_shape, (5, 4), (5,))
    args = [x, w, b] if bias else [x, w]
    _assert_same(layers.linear, layers.linear_reference, args, rng)


def test_linear_function_is_one_node_with_contiguous_weight_gradient(rng):
    lin = nn.Linear(4, 3, seed=0)
    x = mm.tensor(rng.standard_normal((2, 5, 4)), dtype=np.float32, requires_grad=True)
    y = lin(x)
    assert y._ctx.fn is layers.LinearFunction and y.shape == (2, 5, 3)
    y.sum().backward()
    assert lin.weight.grad.data.flags.c_contiguous and lin.weight.grad.dtype == np.float32


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 7)])
def test_norms_and_gelu_match_their_references(shape, rng, device):
    x, gamma, beta = _leaves(rng, device, shape, shape[-1:], shape[-1:], scale=2.0)
    _assert_same(lambda *a: layers.layer_norm(*a, eps=1e-5),
                 lambda *a: layers.layer_norm_reference(*a, eps=1e-5), [x, gamma, beta], rng)
    x, gamma = _copies([x, gamma])
    _assert_same(lambda *a: layers.rms_norm(*a, eps=1e-6),
                 lambda *a: layers.rms_norm_reference(*a, eps=1e-6), [x, gamma], rng)
    (x,) = _copies([x])
    _assert_same(layers.gelu, layers.gelu_reference, [x], rng, rtol=1e-13)


def test_norms_and_gelu_in_float32_and_with_mixed_dtypes(rng):
    x, gamma, beta = _leaves(rng, "cpu", (64, 48), (48,), (48,), dtype=np.float32, scale=3.0)
    _assert_same(layers.layer_norm, layers.layer_norm_reference, [x, gamma, beta], rng,
                 rtol=1e-5, atol=1e-5, grad_rtol=1e-3)
    x, gamma = _copies([x, gamma])
    _assert_same(layers.rms_norm, layers.rms_norm_reference, [x, gamma], rng, rtol=1e-5,
                 atol=1e-5, grad_rtol=1e-3)
    (x,) = _copies([x])
    _assert_same(layers.gelu, layers.gelu_reference, [x], rng, rtol=1e-5, atol=1e-6,
                 grad_rtol=1e-4)
    # float64 input through float32 parameters: the composed reference (NumPy promotes)
    x64 = mm.tensor(rng.standard_normal((3, 48)), requires_grad=True)
    y = layers.layer_norm(x64, gamma, beta)
    assert y.dtype == np.float64 and y._ctx.fn is not layers.RowNormFunction


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda x, w: layers.linear(x, w[:, :3]), ValueError,
     r"linear: expected x with last dim 3 \(weight \(5, 3\)\), got shape \(2, 4\)"),
    (lambda x, w: layers.linear(x.numpy(), w), TypeError, r"linear: argument 'x' must be a Tensor"),
    (lambda x, w: layers.linear(x, w, w[0]), ValueError, r"linear: bias must have shape \(5,\)"),
    (lambda x, w: layers.linear(x, w[0]), ValueError, r"linear: weight must be \(out, in\)"),
    (lambda x, w: layers.layer_norm(x, w[0], w[0, :3]), ValueError,
     r"layer_norm: bias must have shape \(4,\), got \(3,\)"),
    (lambda x, w: layers.layer_norm(x, w[0], w[0], eps=-1), ValueError,
     r"layer_norm: eps must be > 0"),
    (lambda x, w: layers.rms_norm(mm.tensor([1, 2]), w[0]), TypeError,
     r"rms_norm: argument 'x' must be floating, got dtype int"),
    (lambda x, w: layers.gelu(np.ones(3)), TypeError, r"gelu: argument 'x' must be a Tensor"),
    (lambda x, w: nn.LayerNorm(4, eps=0), ValueError, r"LayerNorm: eps must be > 0"),
])
def test_layer_function_errors(call, exc, pattern, rng):
    x, w = _leaves(rng, "cpu", (2, 4), (5, 4))
    with pytest.raises(exc, match=pattern):
        call(x, w)


# ------------------------------------------------------------------ a whole model ----------
def _reference_everywhere(monkeypatch):
    """Route every layer through the composed references (the formulations the book shows)."""
    monkeypatch.setattr(layers, "linear", layers.linear_reference)
    monkeypatch.setattr(layers, "layer_norm", layers.layer_norm_reference)
    monkeypatch.setattr(layers, "rms_norm", layers.rms_norm_reference)
    monkeypatch.setitem(layers._ACTIVATIONS, "gelu", layers.gelu_reference)
    monkeypatch.setattr(attention, "scaled_dot_product_attention",
                        attention.scaled_dot_product_attention_reference)


def _lm_loss_and_grads(dtype):
    model = nn.TransformerLM(11, 8, 2, 2, 9, seed=0)
    if dtype == np.float64:
        model.double()
    tokens = np.random.default_rng(0).integers(0, 11, (3, 9))
    loss = mm.cross_entropy(model(tokens), np.roll(tokens, -1, axis=1))
    loss.backward()
    return loss.item(), [p.grad.numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-3)])
def test_transformer_lm_step_is_the_same_through_fused_and_reference_layers(dtype, rtol,
                                                                           monkeypatch):
    loss, grads = _lm_loss_and_grads(dtype)
    with monkeypatch.context() as m:
        _reference_everywhere(m)
        loss_ref, grads_ref = _lm_loss_and_grads(dtype)
    assert loss == pytest.approx(loss_ref, rel=rtol / 100)
    for g, r in zip(grads, grads_ref):
        np.testing.assert_allclose(g, r, rtol=rtol, atol=rtol * 1e-2)


def test_multi_head_attention_with_dropout_trains_through_the_weights(rng):
    mha = nn.MultiHeadAttention(8, 2, dropout=0.5, seed=0).double()
    x = mm.tensor(rng.standard_normal((2, 5, 8)), requires_grad=True)
    out = mha(x)
    out.sum().backward()
    assert np.isfinite(x.grad.numpy()).all() and x.grad.numpy().any()
    w = mha.last_weights.numpy()
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-12)
    assert (np.triu(w[0, 0], 1) == 0).all()
