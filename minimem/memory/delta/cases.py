"""Gradient-check cases of the delta-rule chapter (key ``delta``), in float64.

Every input is checked, the initial state included, in both modes (``recurrent``: the Numba
kernel's hand-derived backward; ``chunk``: the chunkwise form). Registered when
:func:`minimem.chapters.load_cases` imports this module.
"""
from __future__ import annotations

from ...autograd.gradcheck import leaf
from ...autograd.registry import register
from ...autograd.tensor import Tensor
from ...nn.cases import layer_case
from .chunkwise import unit_lower_inverse
from .delta_rule import delta_rule, gated_delta_rule
from .feature_maps import feature_map
from .delta_product import delta_product
from .layers import (DeltaNet, DeltaProductNet, GatedDeltaNet, GatedLinearAttention,
                     LinearAttention, Retention, ShortConvolution)
from .linear_attention import gated_linear_attention, linear_attention

MODES = ("recurrent", "chunk")


def _linear_attention_inputs(rng):
    return (leaf(rng, 1, 2, 5, 3), leaf(rng, 1, 2, 5, 3, scale=0.5), leaf(rng, 1, 2, 5, 2),
            leaf(rng, 1, 2, 3, 2))


def _delta_inputs(rng):
    """q, k (norms 1/1.2: the transition stays contractive), v, beta in [0.2, 0.9], S0."""
    k = rng.standard_normal((1, 2, 5, 3))
    k /= 1.2 * ((k ** 2).sum(-1, keepdims=True) ** 0.5)
    return (leaf(rng, 1, 2, 5, 3), Tensor(k, requires_grad=True), leaf(rng, 1, 2, 5, 2),
            leaf(rng, 1, 2, 5, between=(0.2, 0.9)), leaf(rng, 1, 2, 3, 2))


def _gated_inputs(rng):
    q, k, v, beta, s0 = _delta_inputs(rng)
    return q, k, v, beta, leaf(rng, 1, 2, 5, between=(-0.8, -0.05)), s0


def _every_2_tokens(mode):
    """Chunks (chunk mode) or replayed segments (recurrent mode) of 2 tokens: the cases'
    sequences (T = 3 or 5) cross a boundary, so the state carried across it is checked too."""
    return {"mode": mode, "chunk_size": 2} if mode == "chunk" else {"mode": mode,
                                                                     "checkpoint": 2}


for _mode in MODES:
    _kw = _every_2_tokens(_mode)
    register(f"linear_attention ({_mode})", _linear_attention_inputs, chapter="delta")(
        lambda q, k, v, s0, _kw=_kw: linear_attention(
            q, k, v, initial_state=s0, output_final_state=True, **_kw))
    register(f"delta_rule ({_mode})", _delta_inputs, chapter="delta")(
        lambda q, k, v, b, s0, _kw=_kw: delta_rule(
            q, k, v, b, initial_state=s0, output_final_state=True, **_kw))
    register(f"gated_delta_rule ({_mode})", _gated_inputs, chapter="delta")(
        lambda q, k, v, b, g, s0, _kw=_kw: gated_delta_rule(
            q, k, v, b, g, initial_state=s0, output_final_state=True, **_kw))

def _normalized_inputs(rng):
    """q, k (mapped by elu+1), v and a positive entry state [S | z] (the normalizer > 0)."""
    q, k, v, _ = _linear_attention_inputs(rng)
    return q, k, v, leaf(rng, 1, 2, 3, 3, low=0.1)


def _gla_inputs(rng):
    q, k, v, s0 = _linear_attention_inputs(rng)
    return q, k, v, leaf(rng, 1, 2, 5, between=(-0.8, -0.05)), s0


def _product_inputs(rng, gated=False):
    """q; n_h = 2 unit keys per token (norm 1/1.2), values; beta in [0.2, 1.8] (negative
    eigenvalues included); g; S0."""
    k = rng.standard_normal((1, 2, 3, 2, 3))
    k /= 1.2 * ((k ** 2).sum(-1, keepdims=True) ** 0.5)
    ins = [leaf(rng, 1, 2, 3, 3), Tensor(k, requires_grad=True), leaf(rng, 1, 2, 3, 2, 2),
           leaf(rng, 1, 2, 3, 2, between=(0.2, 1.8))]
    if gated:
        ins.append(leaf(rng, 1, 2, 3, between=(-0.8, -0.05)))
    return (*ins, leaf(rng, 1, 2, 3, 2))


def _negative_eigenvalue_inputs(rng):
    """The delta rule's inputs with beta in [1.1, 1.9]: eigenvalues 1 - beta |k|^2 < 0."""
    q, k, v, _, s0 = _delta_inputs(rng)
    return q, k, v, leaf(rng, 1, 2, 5, between=(1.1, 1.9)), s0


for _mode in MODES:
    _kw = _every_2_tokens(_mode)
    register(f"linear_attention (elu1, normalized, {_mode})", _normalized_inputs,
             chapter="delta")(
        lambda q, k, v, s0, _kw=_kw: linear_attention(
            q, k, v, initial_state=s0, output_final_state=True, feature_map="elu1",
            normalize=True, **_kw))
    register(f"gated_linear_attention ({_mode})", _gla_inputs, chapter="delta")(
        lambda q, k, v, g, s0, _kw=_kw: gated_linear_attention(
            q, k, v, g, initial_state=s0, output_final_state=True, **_kw))
    register(f"delta_rule (beta in (1, 2), {_mode})", _negative_eigenvalue_inputs,
             chapter="delta")(
        lambda q, k, v, b, s0, _kw=_kw: delta_rule(
            q, k, v, b, initial_state=s0, output_final_state=True, **_kw))
    register(f"delta_product ({_mode})", _product_inputs, chapter="delta")(
        lambda q, k, v, b, s0, _kw=_kw: delta_product(
            q, k, v, b, initial_state=s0, output_final_state=True, **_kw))
    register(f"delta_product (gated, {_mode})", lambda r: _product_inputs(r, gated=True),
             chapter="delta")(
        lambda q, k, v, b, g, s0, _kw=_kw: delta_product(
            q, k, v, b, g, initial_state=s0, output_final_state=True, **_kw))

# Every feature map; margin keeps inputs off relu's kink (elu1, relu, dpfp).
for _kind, _params in (("elu1", {}), ("relu", {}), ("dpfp", {"nu": 2}), ("taylor2", {}),
                       ("poly", {"degree": 3}), ("performer", {"n_features": 5, "seed": 1})):
    register(f"feature_map ({_kind})", lambda r: (leaf(r, 2, 3, 3, scale=0.5, margin=0.05),),
             chapter="delta")(lambda x, _k=_kind, _p=_params: feature_map(x, _k, **_p))

# Only the strictly lower triangle of A is read, so the other entries get zero gradient.
register("unit_lower_inverse", lambda r: (leaf(r, 2, 4, 4, scale=0.5),),
         chapter="delta")(unit_lower_inverse)


layer_case("ShortConvolution", lambda r: ShortConvolution(3, 3, seed=r), (2, 4, 3),
           chapter="delta")

for _cls in (LinearAttention, DeltaNet, GatedDeltaNet, GatedLinearAttention, Retention):
    for _mode in MODES:
        _kw = _every_2_tokens(_mode)
        layer_case(f"{_cls.__name__} ({_mode})",
                   lambda r, c=_cls, kw=_kw: c(2, 1, conv_size=2, seed=r, **kw),
                   (1, 3, 2), chapter="delta")

layer_case("DeltaNet (allow_neg_eigval)",
           lambda r: DeltaNet(2, 1, conv_size=2, allow_neg_eigval=True, seed=r, chunk_size=2),
           (1, 3, 2), chapter="delta")
layer_case("LinearAttention (elu1, normalized)",
           lambda r: LinearAttention(2, 1, conv_size=0, feature_map="elu1", normalize=True,
                                     seed=r, chunk_size=2), (1, 3, 2), chapter="delta")
for _mode in MODES:
    _kw = _every_2_tokens(_mode)
    layer_case(f"DeltaProductNet ({_mode})",
               lambda r, kw=_kw: DeltaProductNet(2, 1, conv_size=2, n_householder=2,
                                                 allow_neg_eigval=True, seed=r, **kw),
               (1, 3, 2), chapter="delta")
