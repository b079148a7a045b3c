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
from .layers import DeltaNet, GatedDeltaNet, LinearAttention, ShortConvolution
from .linear_attention import linear_attention
from .titans import NeuralMemory, neural_memory

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

# Only the strictly lower triangle of A is read, so the other entries get zero gradient.
register("unit_lower_inverse", lambda r: (leaf(r, 2, 4, 4, scale=0.5),),
         chapter="delta")(unit_lower_inverse)


def _neural_memory_inputs(rng, memory):
    """q, k, v; the gates theta (step), eta (momentum), alpha (decay); the memory's weights."""
    B, H, T, D, Dh = 1, 1, 3, 2, 3
    qkv = [leaf(rng, B, H, T, D, scale=0.7) for _ in range(3)]
    gates = [leaf(rng, B, H, T, between=lohi) for lohi in ((0.05, 0.3), (0.1, 0.9), (0.0, 0.3))]
    params = [leaf(rng, B, H, D, D, scale=0.5)] if memory == "linear" else [
        leaf(rng, B, H, D, Dh, scale=0.5), leaf(rng, B, H, Dh, D, scale=0.5)]
    return (*qkv, *gates, *params)


register("neural_memory (linear)", lambda r: _neural_memory_inputs(r, "linear"),
         chapter="delta")(
    lambda q, k, v, th, et, al, M: neural_memory(q, k, v, th, et, al, (M,), "linear")[0])
register("neural_memory (mlp)", lambda r: _neural_memory_inputs(r, "mlp"), chapter="delta")(
    lambda q, k, v, th, et, al, W1, W2: neural_memory(q, k, v, th, et, al, (W1, W2), "mlp")[0])

layer_case("NeuralMemory (mlp)", lambda r: NeuralMemory(2, 1, "mlp", hidden=2, seed=r),
           (1, 3, 2), chapter="delta")
layer_case("ShortConvolution", lambda r: ShortConvolution(3, 3, seed=r), (2, 4, 3),
           chapter="delta")

for _cls in (LinearAttention, DeltaNet, GatedDeltaNet):
    for _mode in MODES:
        _kw = _every_2_tokens(_mode)
        layer_case(f"{_cls.__name__} ({_mode})",
                   lambda r, c=_cls, kw=_kw: c(2, 1, conv_size=2, seed=r, **kw),
                   (1, 3, 2), chapter="delta")
