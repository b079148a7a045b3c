r"""Gated memories across segments: LM2's memory bank and the Cached Transformer's cache.

**LM2** (Kang et al. 2025). A bank :math:`M_t \in \mathbb{R}^{N \times d}` is read in every
layer by cross-attention from the tokens, through an output gate, into the residual:

.. math:: E^{mem} = \mathrm{softmax}\Big(\frac{(\hat h W_Q)(\hat M_t W_K)^\top}{\sqrt d}\Big)
          \hat M_t W_V, \qquad
          h \leftarrow h + \sigma(E^{mem} W_{out}) \odot E^{mem},

(:math:`\hat h = \mathrm{LN}(h)`, :math:`\hat M = \mathrm{LN}(M)`). After the segment the bank
asks the final encodings :math:`H_t` what is new (slot queries, one cross-attention,
:math:`U = \mathrm{Attn}(Q{=}\hat M_t, K{=}V{=}H_t)`) and is written through an input and a
forget gate,

.. math:: g^{in} = \sigma(U W_{in}), \quad g^{f} = \sigma(U W_{f}), \qquad
          M_{t+1} = g^{in} \odot \tanh(U) + g^{f} \odot M_t,

so every entry obeys :math:`|M_{t+1}| < 1 + |M_t|` and the forget gate alone decides how much
of :math:`M_t` survives (the bank cannot grow faster than one per segment).

**Cached Transformer** (Zhang et al. 2023, the gated recurrent cache, GRC). Layer l keeps a
cache :math:`C^l_t \in \mathbb{R}^{m \times d}` (:math:`C^l_0 = 0`). Its tokens mix
self-attention with attention to the cache by a learned ratio :math:`\sigma(\lambda^l)`,

.. math:: h \leftarrow h + (1 - \sigma(\lambda))\,\mathrm{SelfAttn}(\hat h)
          + \sigma(\lambda)\,\mathrm{Attn}(Q{=}\hat h,\ K{=}V{=}C_t),

and the cache follows the segment through a gate, with :math:`\bar X_t` the segment's
:math:`\hat h` pooled to m rows by m learned queries :math:`P` (our choice of the paper's
"resize"), :math:`\bar X_t = \mathrm{softmax}(P \hat h^\top / \sqrt d)\, \hat h`,

.. math:: g_t = \sigma\big([\bar X_t;\ C_{t-1}] W_g + b_g\big), \qquad
          C_t = (1 - g_t) \odot C_{t-1} + g_t \odot \bar X_t,

an entrywise convex combination: :math:`\min(C_{t-1}, \bar X_t) \le C_t \le
\max(C_{t-1}, \bar X_t)`.
"""
from __future__ import annotations

import numpy as np

from ... import autograd as ag
from ...autograd import ops
from ...backend import get_default_dtype, get_rng
from ...checks import check_float_tensor, check_heads, check_int, check_nonempty
from ...nn import (
    MLP,
    Embedding,
    LayerNorm,
    Linear,
    Module,
    ModuleList,
    MultiHeadAttention,
    Parameter,
)
from ..segment.memformer import SegmentRecurrent, _embed


def check_model_sizes(fn, d_model, n_heads, d_ff=None):
    """The sizes a layer passes on to its attention and FFN, checked under its own name."""
    check_heads(fn, d_model, n_heads)
    if d_ff is not None:  # None: 4 d_model
        check_int(fn, "d_ff", d_ff, low=1)


def _check_tensor_shape(owner, name, t, shape):
    check_float_tensor(owner, name, t)
    if t.shape != shape:
        raise ValueError(f"{owner}: {name} must be a Tensor of shape {shape}, got "
                         f"{getattr(t, 'shape', type(t).__name__)}")


# ---- LM2 -----------------------------------------------------------------------------------
class LM2Layer(Module):
    """Causal self-attention, the gated memory read, FFN (pre-norm)."""

    def __init__(self, d_model, n_heads, d_ff=None, seed=None):
        super().__init__()
        check_model_sizes("LM2Layer", d_model, n_heads, d_ff)
        rng = get_rng(seed)
        self.ln1 = LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, n_heads, causal=True, seed=rng)
        self.ln2 = LayerNorm(d_model)
        self.ln_mem = LayerNorm(d_model)
        self.reader = MultiHeadAttention(d_model, n_heads, causal=False, seed=rng)
        self.W_out = Linear(d_model, d_model, seed=rng)
        self.ln3 = LayerNorm(d_model)
        self.ffn = MLP(d_model, d_ff or 4 * d_model, seed=rng)

    def forward(self, h, bank):
        h = h + self.self_attn(self.ln1(h))
        e_mem = self.reader(self.ln2(h), context=self.ln_mem(bank))
        h = h + ops.sigmoid(self.W_out(e_mem)) * e_mem
        return h + self.ffn(self.ln3(h))


class LM2MemoryUpdate(Module):
    """``M' = g_in * tanh(U) + g_f * M`` with ``U`` the slots' attention over the segment."""

    def __init__(self, d_model, n_heads, seed=None):
        super().__init__()
        check_model_sizes("LM2MemoryUpdate", d_model, n_heads)
        rng = get_rng(seed)
        self.ln = LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, causal=False, seed=rng)
        self.W_in = Linear(d_model, d_model, seed=rng)
        self.W_f = Linear(d_model, d_model, seed=rng)

    def gates(self, bank, encodings):
        """``(U, g_in, g_f)``, each (B, N, d)."""
        u = self.attn(self.ln(bank), context=encodings)
        return u, ops.sigmoid(self.W_in(u)), ops.sigmoid(self.W_f(u))

    def forward(self, bank, encodings):
        u, g_in, g_f = self.gates(bank, encodings)
        return g_in * ops.tanh(u) + g_f * bank


class LM2(SegmentRecurrent):
    """A decoder whose every layer reads a gated memory bank of ``n_slots`` (B, N, d) rows,
    written once per segment (module docstring). ``step(x, bank) -> (logits, new_bank)``."""

    def __init__(self, vocab, d_model, n_layers, n_heads, n_slots, max_len, d_ff=None,
                 seed=None):
        super().__init__()
        for name, v in (("vocab", vocab), ("d_model", d_model), ("n_layers", n_layers),
                        ("n_heads", n_heads), ("n_slots", n_slots), ("max_len", max_len)):
            check_int("LM2", name, v, low=1)
        check_model_sizes("LM2", d_model, n_heads, d_ff)
        rng = get_rng(seed)
        self.vocab, self.d_model, self.n_slots, self.max_len = vocab, d_model, n_slots, max_len
        self.tok = Embedding(vocab, d_model, seed=rng, std=0.02)
        self.pos = Embedding(max_len, d_model, seed=rng, std=0.02)
        self.layers = ModuleList([LM2Layer(d_model, n_heads, d_ff, seed=rng)
                                  for _ in range(n_layers)])
        self.ln_f = LayerNorm(d_model)
        self.head = Linear(d_model, vocab, bias=False, seed=rng)
        self.update = LM2MemoryUpdate(d_model, n_heads, seed=rng)
        init = 0.5 * np.tanh(rng.standard_normal((n_slots, d_model)))
        self.bank_init = Parameter(init.astype(get_default_dtype()))

    def init_memory(self, batch):
        batch = check_int("LM2.init_memory", "batch", batch, low=1)
        return ops.broadcast_to(self.bank_init, (batch, self.n_slots, self.d_model))

    def step(self, x_segment, memory):
        h = _embed("LM2", self.tok, self.pos, self.max_len, x_segment)
        _check_tensor_shape("LM2.step", "memory", memory,
                            (h.shape[0], self.n_slots, self.d_model))
        for layer in self.layers:
            h = layer(h, memory)
        encodings = self.ln_f(h)
        return self.head(encodings), self.update(memory, encodings)

    def extra_repr(self):
        return f"vocab={self.vocab}, d_model={self.d_model}, n_slots={self.n_slots}"


# ---- Cached Transformer --------------------------------------------------------------------
class GatedRecurrentCache(Module):
    r"""The GRC update :math:`C_t = (1 - g_t) \odot C_{t-1} + g_t \odot \bar X_t`."""

    def __init__(self, d_model, n_cache, seed=None):
        super().__init__()
        rng = get_rng(seed)
        self.d_model = check_int("GatedRecurrentCache", "d_model", d_model, low=1)
        self.n_cache = check_int("GatedRecurrentCache", "n_cache", n_cache, low=1)
        queries = rng.standard_normal((n_cache, d_model)) / np.sqrt(d_model)
        self.P = Parameter(queries.astype(get_default_dtype()))
        self.W_g = Linear(2 * d_model, d_model, seed=rng)

    def pool(self, x):
        """:math:`\\bar X = \\mathrm{softmax}(P x^\\top / \\sqrt d)\\, x`: (B, T, d) -> (B, m, d)."""
        scores = (self.P @ ops.swapaxes(x, -1, -2)) * (self.d_model ** -0.5)
        return ops.softmax(scores, axis=-1) @ x

    def gate(self, x_bar, cache):
        """:math:`g_t = \\sigma([\\bar X_t; C_{t-1}] W_g + b_g)`, (B, m, d), in (0, 1)."""
        return ops.sigmoid(self.W_g(ops.concatenate([x_bar, cache], axis=-1)))

    def forward(self, cache, x):
        """The cache after the segment ``x`` (B, T, d): (B, m, d)."""
        check_float_tensor("GatedRecurrentCache", "x", x)
        check_nonempty("GatedRecurrentCache", "x", x, axes=(1,) if x.ndim > 1 else ())
        if x.ndim != 3 or x.shape[2] != self.d_model:
            got = getattr(x, "shape", type(x).__name__)
            raise ValueError(f"GatedRecurrentCache: x must be a Tensor (B, T, "
                             f"{self.d_model}), got {got}")
        _check_tensor_shape("GatedRecurrentCache", "cache", cache,
                            (x.shape[0], self.n_cache, self.d_model))
        # Exercise 55.3 (2 pt): pool the segment to m rows (self.pool), compute the
        # gate from the pooled rows and the old cache (self.gate), and mix: the new
        # cache is (1 - g) * cache + g * pooled; assign it to `new`.
        ### BEGIN SOLUTION
        x_bar = self.pool(x)
        g = self.gate(x_bar, cache)
        new = (1.0 - g) * cache + g * x_bar
        ### END SOLUTION
        return new


class CachedLayer(Module):
    """Self-attention and cache attention mixed by ``sigmoid(lam)``, then FFN; updates C."""

    def __init__(self, d_model, n_heads, n_cache, d_ff=None, seed=None):
        super().__init__()
        check_model_sizes("CachedLayer", d_model, n_heads, d_ff)
        check_int("CachedLayer", "n_cache", n_cache, low=1)
        rng = get_rng(seed)
        self.ln1 = LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, n_heads, causal=True, seed=rng)
        self.cache_attn = MultiHeadAttention(d_model, n_heads, causal=False, seed=rng)
        self.lam = Parameter(np.zeros((1,), dtype=get_default_dtype()))
        self.grc = GatedRecurrentCache(d_model, n_cache, seed=rng)
        self.ln2 = LayerNorm(d_model)
        self.ffn = MLP(d_model, d_ff or 4 * d_model, seed=rng)

    def ratio(self):
        """The learned share :math:`\\sigma(\\lambda)` of the cache attention, in (0, 1)."""
        return ops.sigmoid(self.lam)

    def forward(self, h, cache):
        x = self.ln1(h)
        r = self.ratio()
        h = h + (1.0 - r) * self.self_attn(x) + r * self.cache_attn(x, context=cache)
        return h + self.ffn(self.ln2(h)), self.grc(cache, x)


class CachedTransformer(SegmentRecurrent):
    """A decoder with a gated recurrent cache of ``n_cache`` rows per layer (module docstring).

    ``init_memory(batch)``: one zero cache (B, m, d) per layer;
    ``step(x, caches) -> (logits, new_caches)``."""

    def __init__(self, vocab, d_model, n_layers, n_heads, n_cache, max_len, d_ff=None,
                 seed=None):
        super().__init__()
        for name, v in (("vocab", vocab), ("d_model", d_model), ("n_layers", n_layers),
                        ("n_heads", n_heads), ("n_cache", n_cache), ("max_len", max_len)):
            check_int("CachedTransformer", name, v, low=1)
        check_model_sizes("CachedTransformer", d_model, n_heads, d_ff)
        rng = get_rng(seed)
        self.vocab, self.d_model, self.n_cache, self.max_len = vocab, d_model, n_cache, max_len
        self.tok = Embedding(vocab, d_model, seed=rng, std=0.02)
        self.pos = Embedding(max_len, d_model, seed=rng, std=0.02)
        self.layers = ModuleList([CachedLayer(d_model, n_heads, n_cache, d_ff, seed=rng)
                                  for _ in range(n_layers)])
        self.ln_f = LayerNorm(d_model)
        self.head = Linear(d_model, vocab, bias=False, seed=rng)

    def init_memory(self, batch):
        batch = check_int("CachedTransformer.init_memory", "batch", batch, low=1)
        return tuple(ag.zeros(batch, self.n_cache, self.d_model, dtype=self.head.weight.dtype)
                     for _ in self.layers)

    def step(self, x_segment, memory):
        h = _embed("CachedTransformer", self.tok, self.pos, self.max_len, x_segment)
        shape = (h.shape[0], self.n_cache, self.d_model)
        if not isinstance(memory, tuple) or len(memory) != len(self.layers):
            raise ValueError(f"CachedTransformer.step: memory must be a tuple of "
                             f"{len(self.layers)} caches {shape}, got {type(memory).__name__}")
        new = []
        for layer, cache in zip(self.layers, memory):
            _check_tensor_shape("CachedTransformer.step", "each cache", cache, shape)
            h, c = layer(h, cache)
            new.append(c)
        return self.head(self.ln_f(h)), tuple(new)

    def extra_repr(self):
        return f"vocab={self.vocab}, d_model={self.d_model}, n_cache={self.n_cache}"
