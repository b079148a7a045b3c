"""Gradcheck cases for the layers: each checks the layer's output w.r.t. input and parameters."""
from __future__ import annotations

import numpy as np

from ..autograd.gradcheck import leaf
from ..autograd.registry import register
from .attention import (MultiHeadAttention, TransformerBlock, scaled_dot_product_attention,
                        scaled_dot_product_attention_reference)
from .layers import (MLP, BatchNorm1d, Embedding, LayerNorm, Linear, RMSNorm, gelu, layer_norm,
                     linear, rms_norm)
from .module import functional_call


def perturbed(module, rng, scale=0.1):
    """``module`` in float64 with every parameter moved off its init by ``scale`` noise.

    A gradient check at a symmetric init (LayerNorm's ones and zeros, zero biases) can pass
    by accident; the noise breaks the symmetry.
    """
    module = module.double()
    for p in module.parameters():
        p.data = p.data + scale * rng.standard_normal(p.shape)
    return module


def layer_case(name, make_layer, x_shape, chapter="nn"):
    """Register ``layer(x)`` as a function of x and of every parameter (float64)."""
    layer_of = {}

    def make_inputs(rng):
        layer = perturbed(make_layer(rng), rng)
        layer_of["layer"] = layer
        return (leaf(rng, *x_shape), *layer.parameters())

    def fn(x, *params):
        return functional_call(layer_of["layer"], params, x)

    register(name, make_inputs, chapter=chapter)(fn)


layer_case("Linear", lambda r: Linear(4, 3, seed=r), (2, 4))
layer_case("LayerNorm", lambda r: LayerNorm(5), (3, 5))
layer_case("RMSNorm", lambda r: RMSNorm(5), (3, 5))
layer_case("BatchNorm1d (train)", lambda r: BatchNorm1d(3), (5, 3))
layer_case("MLP (gelu)", lambda r: MLP(4, 6, seed=r), (2, 4))
layer_case("MultiHeadAttention (causal)", lambda r: MultiHeadAttention(4, 2, seed=r), (1, 3, 4))
layer_case("TransformerBlock", lambda r: TransformerBlock(4, 2, d_ff=6, seed=r), (1, 3, 4))


_MASK = np.array([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1], [1, 0, 0, 0, 0]], bool)


def _qkv(T, S):
    return lambda r: (leaf(r, 2, T, 4), leaf(r, 2, S, 4), leaf(r, 2, S, 3))


# The fused attention (one node) and its composed reference; the fused one also with its
# weights as a second, differentiable output, and with the causal blocks of long rows.
register("scaled_dot_product_attention (mask)", _qkv(3, 5), chapter="nn")(
    lambda q, k, v: scaled_dot_product_attention(q, k, v, mask=_MASK))
register("scaled_dot_product_attention_reference (mask)", _qkv(3, 5), chapter="nn")(
    lambda q, k, v: scaled_dot_product_attention_reference(q, k, v, mask=_MASK))
register("scaled_dot_product_attention (causal, T < S, out and weights)", _qkv(3, 5),
         chapter="nn")(
    lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=True, scale=0.8,
                                                 return_weights=True))
register("scaled_dot_product_attention (causal, 70 rows: blocked)",
         lambda r: (leaf(r, 1, 70, 2), leaf(r, 1, 70, 2), leaf(r, 1, 70, 1)), chapter="nn",
         fast=True)(lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=True))
register("linear (fused, 3-D input)", lambda r: (leaf(r, 2, 3, 4), leaf(r, 5, 4), leaf(r, 5)),
         chapter="nn")(linear)
register("layer_norm (fused)", lambda r: (leaf(r, 2, 3, 5), leaf(r, 5), leaf(r, 5)),
         chapter="nn")(layer_norm)
register("rms_norm (fused)", lambda r: (leaf(r, 3, 5, scale=2.0), leaf(r, 5)), chapter="nn")(
    rms_norm)
register("gelu (fused)", lambda r: (leaf(r, 3, 4, scale=2.0),), chapter="nn")(gelu)


def _embedding_case(name, sparse):
    """``Embedding(ids)`` as a function of its table; ids repeat, so rows must accumulate."""
    held = {}

    def make_inputs(rng):
        held["layer"] = Embedding(5, 3, seed=rng, sparse=sparse).double()
        return tuple(held["layer"].parameters())

    def fn(weight):
        return functional_call(held["layer"], (weight,), np.array([[1, 3, 1], [0, 4, 1]]))

    register(name, make_inputs, chapter="nn")(fn)


_embedding_case("Embedding", sparse=False)
_embedding_case("Embedding (sparse=True: row-sparse grad)", sparse=True)
