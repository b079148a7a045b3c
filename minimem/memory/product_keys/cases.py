"""Gradcheck cases of the product-key memory chapter (chapter key ``pkm``), in float64.

The top-k selection is piecewise constant, so inputs are drawn until the k-th and (k+1)-th
candidate scores are at least ``MARGIN`` apart: then the central differences (h = 1e-6) never
cross a selection boundary.
"""
from __future__ import annotations

import numpy as np

from ...autograd.registry import register
from ...autograd.tensor import Tensor
from ...nn.module import functional_call
from .product_keys import memory_read, product_key_topk, product_key_topk_reference, weighted_read
from .layers import ProductKeyMemory

MARGIN = 1e-3


def topk_margin(s1, s2, k):
    """Smallest gap, over rows, between the k-th and (k+1)-th of all sums s1[a] + s2[b]
    (rows of s1, s2 are (..., n)); +inf when k = n^2."""
    full = (s1[..., :, None] + s2[..., None, :]).reshape(*s1.shape[:-1], -1)
    if k >= full.shape[-1]:
        return np.inf
    top = -np.sort(-full, axis=-1)
    return float((top[..., k - 1] - top[..., k]).min())


def separated_search_inputs(rng, M=3, H=2, n=4, dh=3, k=5):
    """(q1, q2, C1, C2) float64 leaves whose top-k has a margin of at least MARGIN."""
    while True:
        q1, q2 = rng.standard_normal((2, M, H, dh))
        C1, C2 = rng.standard_normal((2, H, n, dh))
        s1 = np.einsum("mhd,hnd->mhn", q1, C1)
        s2 = np.einsum("mhd,hnd->mhn", q2, C2)
        if topk_margin(s1, s2, k) > MARGIN:
            return tuple(Tensor(a, requires_grad=True) for a in (q1, q2, C1, C2))


def layer_margin(layer, x):
    """The top-k margin of ``layer`` (a ProductKeyMemory) on the input rows ``x``."""
    from ...autograd.function import no_grad

    with no_grad():
        q1, q2 = layer.queries(Tensor(np.asarray(x)).reshape(-1, layer.d_in))
    s1 = np.einsum("mhd,hnd->mhn", q1.data, layer.C1.data)
    s2 = np.einsum("mhd,hnd->mhn", q2.data, layer.C2.data)
    return topk_margin(s1, s2, layer.topk)


def _layer_case(name, **kw):
    held = {}

    def make_inputs(rng):
        while True:
            layer = ProductKeyMemory(4, 3, 3, topk=4, heads=2, d_key=4, seed=rng, **kw).double()
            x = rng.standard_normal((2, 3, 4))
            if layer_margin(layer, x) > MARGIN:
                held["layer"] = layer
                return (Tensor(x, requires_grad=True), *layer.parameters())

    def fn(x, *params):
        return functional_call(held["layer"], params, x)

    register(name, make_inputs, chapter="pkm")(fn)


register("product_key_topk", lambda rng: separated_search_inputs(rng), chapter="pkm")(
    lambda q1, q2, C1, C2: product_key_topk(q1, q2, C1, C2, 5)[0])
register("product_key_topk_reference", lambda rng: separated_search_inputs(rng),
         chapter="pkm")(lambda q1, q2, C1, C2: product_key_topk_reference(q1, q2, C1, C2, 5)[0])

_SLOTS = np.array([[[0, 3, 3], [5, 1, 0]], [[7, 2, 5], [7, 7, 4]]])  # (M=2, H=2, k=3), repeats
register("weighted_read (scatter-add backward)",
         lambda rng: (Tensor(rng.standard_normal((8, 3)), requires_grad=True),
                      Tensor(rng.standard_normal((2, 6)), requires_grad=True)),
         chapter="pkm")(lambda V, w: weighted_read(V, _SLOTS.reshape(2, 6), w))
register("memory_read (softmax + read)",
         lambda rng: (Tensor(rng.standard_normal((8, 3)), requires_grad=True),
                      Tensor(rng.standard_normal((2, 2, 3)), requires_grad=True)),
         chapter="pkm")(lambda V, s: memory_read(V, _SLOTS, s))
register("memory_read (sparse_grad=True: row-sparse V grad)",
         lambda rng: (Tensor(rng.standard_normal((8, 3)), requires_grad=True),
                      Tensor(rng.standard_normal((2, 2, 3)), requires_grad=True)),
         chapter="pkm")(lambda V, s: memory_read(V, _SLOTS, s, sparse_grad=True))
_layer_case("ProductKeyMemory (batch norm)", query_norm="batch")
_layer_case("ProductKeyMemory (no norm)", query_norm=None)
_layer_case("ProductKeyMemory (sparse_grad=True)", query_norm="batch", sparse_grad=True)
