"""sparse_attention (Numba kernels through autograd) vs dense masked attention; the layer."""
import numpy as np
import pytest
from _helpers import leaf

import minimem as mm
from minimem.autograd.registry import cases
from minimem.memory import (
    SparseAttention,
    block_layout,
    layout_mask,
    sparse_attention,
    sparse_attention_dense,
)
from minimem.nn import TransformerLM, scaled_dot_product_attention


def _dense_masked(q, k, v, layout, b, causal=True):
    """Independent reference: the expanded token mask through nn.scaled_dot_product_attention."""
    T, S = q.shape[2], k.shape[2]
    mask = np.kron(layout, np.ones((b, b), bool))[:T, :S]
    if causal:
        mask &= np.tri(T, S, S - T, dtype=bool)
    return scaled_dot_product_attention(q, k, v, mask=mask)


def _backward_pair(fn_a, fn_b, inputs, rng):
    out_a, out_b = fn_a(*inputs), fn_b(*inputs)
    g = rng.standard_normal(out_a.shape)
    grads = []
    for out in (out_a, out_b):
        for x in inputs:
            x.grad = None
        out.backward(g)
        grads.append([x.grad.numpy().copy() for x in inputs])
    return out_a.numpy(), out_b.numpy(), grads


@pytest.mark.parametrize("T,b,kind,params", [
    (32, 8, "fixed", {"l": 2, "c": 1}),
    (29, 8, "strided", {"l": 2}),       # T not a multiple of the block
    (6, 8, "causal", {}),               # a single (short) block
    (40, 4, "local", {"w": 3}),
])
def test_sparse_equals_dense_masked_forward_and_backward(T, b, kind, params, rng):
    layout = block_layout(kind, -(-T // b), **params)
    inputs = [leaf(rng, 2, 2, T, 5), leaf(rng, 2, 2, T, 5), leaf(rng, 2, 2, T, 3)]
    o_s, o_d, (g_s, g_d) = _backward_pair(lambda *x: sparse_attention(*x, layout, b),
                                          lambda *x: _dense_masked(*x, layout, b),
                                          inputs, rng)
    np.testing.assert_allclose(o_s, o_d, atol=1e-10)
    for a, c in zip(g_s, g_d):
        np.testing.assert_allclose(a, c, atol=1e-10)


def test_fully_masked_rows_give_zero_output_and_zero_gradient(rng):
    layout = np.array([[0, 0], [1, 1]], bool)  # the first query block sees nothing
    inputs = [leaf(rng, 1, 1, 7, 4), leaf(rng, 1, 1, 7, 4), leaf(rng, 1, 1, 7, 2)]
    o_s, o_d, (g_s, g_d) = _backward_pair(
        lambda *x: sparse_attention(*x, layout, 4, causal=False),
        lambda *x: sparse_attention_dense(*x, layout, 4, causal=False), inputs, rng)
    assert (o_s[:, :, :4] == 0).all() and (g_s[0][:, :, :4] == 0).all()
    np.testing.assert_allclose(o_s, o_d, atol=1e-10)
    for a, c in zip(g_s, g_d):
        np.testing.assert_allclose(a, c, atol=1e-10)


def test_layout_mask_and_custom_scale(rng):
    layout = block_layout("local", 3, w=2)
    np.testing.assert_array_equal(layout_mask(layout, 4, 10),
                                  np.kron(layout, np.ones((4, 4), bool))[:10, :10]
                                  & np.tri(10, dtype=bool))
    q, k, v = leaf(rng, 1, 1, 10, 4), leaf(rng, 1, 1, 10, 4), leaf(rng, 1, 1, 10, 4)
    a = sparse_attention(q, k, v, layout, 4, scale=0.3).numpy()
    mask = layout_mask(layout, 4, 10)
    b = scaled_dot_product_attention(q, k, v, mask=mask, scale=0.3).numpy()
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_sparse_attention_gradcheck_case_is_registered():
    assert any(c.name.startswith("sparse_attention") for c in cases("sparse"))


def test_sparse_attention_layer_in_transformer_lm_matches_masked_mha(rng):
    def mixer(**kw):
        return SparseAttention(**kw, pattern="fixed", block_size=4, l=2, c=1, seed=3)

    lm = TransformerLM(11, 8, 2, 2, max_len=16, mixer=mixer, seed=0)
    assert isinstance(lm.blocks[0].mixer, SparseAttention)
    tokens = rng.integers(0, 11, size=(2, 13))
    logits = lm(tokens)
    assert logits.shape == (2, 13, 11)
    layer = lm.blocks[1].mixer
    x = mm.randn(2, 13, 8, seed=5)
    mask = layout_mask(layer.layout(13), 4, 13)
    ref = mm.nn.MultiHeadAttention.forward(layer, x, mask=mask)  # same weights, dense + mask
    np.testing.assert_allclose(layer(x).numpy(), ref.numpy(), atol=1e-5)
    cross_entropy = mm.cross_entropy(logits, tokens)
    cross_entropy.backward()
    assert all(p.grad is not None for p in lm.parameters())


def test_sparse_attention_errors():
    q = mm.zeros(1, 1, 8, 4)
    with pytest.raises(ValueError, match=r"sparse_attention: layout must have shape \(2, 2\)"):
        sparse_attention(q, q, q, np.ones((3, 3), bool), 4)
    with pytest.raises(TypeError, match="sparse_attention: layout must be a boolean"):
        sparse_attention(q, q, q, np.ones((2, 2)), 4)
    with pytest.raises(ValueError, match="sparse_attention: block_size must be an int >= 1, got 0"):
        sparse_attention(q, q, q, np.ones((2, 2), bool), 0)
    with pytest.raises(ValueError, match=r"sparse_attention: q must be \(B, H, T, D\)"):
        sparse_attention(mm.zeros(8, 4), q, q, np.ones((2, 2), bool), 4)
    with pytest.raises(ValueError, match="SparseAttention: block_size"):
        SparseAttention(8, 2, block_size=-1)
    with pytest.raises(ValueError, match="SparseAttention: pattern must be one of"):
        SparseAttention(8, 2, pattern="nope")


def test_fixed_pattern_solves_a_long_range_task_that_a_local_window_cannot():
    from minimem.memory.sparse.lab import long_range_experiment

    res = long_range_experiment(
        patterns={"fixed": ("fixed", {"l": 2, "c": 1}), "local": ("local", {"w": 2})},
        seq_len=32, steps=120, seed=0)
    assert res["fixed"]["accuracy"] >= 0.9     # two hops through the summary blocks
    assert res["local"]["accuracy"] <= 0.35    # the key is outside the reach: about chance
