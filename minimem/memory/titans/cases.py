"""Gradient-check cases of the Titans / ATLAS chapter (key ``titans``), in float64.

Every input is checked, the gates and the initial memory included: the neural memory token by
token and in chunks of 2 (the cases' T = 3 crosses a chunk boundary, so the carried momentum and
memory are checked too), the Omega rule with each inner optimizer and a polynomial feature map,
Newton–Schulz, and the layers. Registered when :func:`minimem.chapters.load_cases` imports it.
"""
from __future__ import annotations

from ...autograd.gradcheck import leaf
from ...autograd.registry import register
from ...nn.cases import layer_case
from .layers import NeuralMemory, SlidingWindowAttention, TitansMAC, TitansMAG, TitansMAL
from .neural_memory import neural_memory
from .omega import newton_schulz, omega_memory


def _memory_inputs(rng, memory, d_k=2):
    """q, k, v; the gates theta (step), eta (momentum), alpha (decay); the memory's weights."""
    B, H, T, D, Dh = 1, 1, 3, 2, 3
    qkv = [leaf(rng, B, H, T, D, scale=0.7) for _ in range(3)]
    gates = [leaf(rng, B, H, T, between=lohi) for lohi in ((0.05, 0.3), (0.1, 0.9), (0.0, 0.3))]
    params = [leaf(rng, B, H, d_k, D, scale=0.5)] if memory == "linear" else [
        leaf(rng, B, H, d_k, Dh, scale=0.5), leaf(rng, B, H, Dh, D, scale=0.5)]
    return (*qkv, *gates, *params)


for _C in (1, 2):
    register(f"neural_memory (linear, chunk {_C})", lambda r: _memory_inputs(r, "linear"),
             chapter="titans")(
        lambda q, k, v, th, et, al, M, _C=_C: neural_memory(
            q, k, v, th, et, al, (M,), "linear", chunk_size=_C)[0])
    register(f"neural_memory (mlp, chunk {_C})", lambda r: _memory_inputs(r, "mlp"),
             chapter="titans")(
        lambda q, k, v, th, et, al, W1, W2, _C=_C: neural_memory(
            q, k, v, th, et, al, (W1, W2), "mlp", chunk_size=_C)[0])

register("omega_memory (momentum, window 2, chunk 2)", lambda r: _memory_inputs(r, "linear"),
         chapter="titans")(
    lambda q, k, v, th, et, al, M: omega_memory(q, k, v, th, et, al, (M,), window=2,
                                                chunk_size=2)[0])
# the polynomial map of degree 2 on d = 2: 1 + 2 + 4 = 7 features
register("omega_memory (muon, poly 2, window 2)", lambda r: _memory_inputs(r, "linear", 7),
         chapter="titans")(
    lambda q, k, v, th, et, al, M: omega_memory(
        q, k, v, th, et, al, (M,), window=2, feature_map=("poly", {"degree": 2}),
        optimizer="muon")[0])
register("omega_memory (muon, mlp, chunk 2)", lambda r: _memory_inputs(r, "mlp"),
         chapter="titans")(
    lambda q, k, v, th, et, al, W1, W2: omega_memory(
        q, k, v, th, et, al, (W1, W2), window=2, optimizer="muon", memory="mlp",
        chunk_size=2)[0])
register("newton_schulz (wide)", lambda r: (leaf(r, 2, 3, 4),), chapter="titans")(newton_schulz)
register("newton_schulz (tall, 3 steps)", lambda r: (leaf(r, 4, 2),), chapter="titans")(
    lambda G: newton_schulz(G, steps=3))

layer_case("NeuralMemory (mlp, chunk 2)",
           lambda r: NeuralMemory(2, 1, "mlp", hidden=2, chunk_size=2, seed=r), (1, 3, 2),
           chapter="titans")
layer_case("SlidingWindowAttention (window 2, persistent 2)",
           lambda r: SlidingWindowAttention(4, 2, window=2, n_persistent=2, seed=r),
           (1, 3, 4), chapter="titans")
layer_case("TitansMAC (segment 2)",
           lambda r: TitansMAC(2, 1, segment=2, n_persistent=1, seed=r), (1, 3, 2),
           chapter="titans")
layer_case("TitansMAG (window 2)", lambda r: TitansMAG(2, 1, window=2, n_persistent=1, seed=r),
           (1, 3, 2), chapter="titans")
layer_case("TitansMAL (window 2)", lambda r: TitansMAL(2, 1, window=2, n_persistent=1, seed=r),
           (1, 3, 2), chapter="titans")
