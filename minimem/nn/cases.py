"""Gradcheck cases for the layers: each checks the layer's output w.r.t. input and parameters."""
from __future__ import annotations

import numpy as np

from ..autograd.gradcheck import leaf
from ..autograd.registry import register
from .attention import MultiHeadAttention, TransformerBlock, scaled_dot_product_attention
from .layers import MLP, BatchNorm1d, Embedding, LayerNorm, Linear, RMSNorm
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


register("scaled_dot_product_attention (mask)",
         lambda r: (leaf(r, 2, 3, 4), leaf(r, 2, 5, 4), leaf(r, 2, 5, 3)), chapter="nn")(
    lambda q, k, v: scaled_dot_product_attention(
        q, k, v, mask=np.array([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1], [1, 0, 0, 0, 0]], bool)))


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
