r"""Segment-recurrent memory: the Recurrent Memory Transformer and the Transformer-XL cache.

**Recurrent Memory Transformer** (RMT, Bulatov et al. 2022). The memory is
:math:`M_t \in \mathbb{R}^{m \times d}`, m memory *tokens*. Segment t is processed as one causal
sequence with the memory written on both sides,

.. math:: [\,M_t;\ E(x_t);\ M_t\,] \xrightarrow{\text{causal blocks}} [\,\cdot\,;\ H_t;\ W_t\,],
          \qquad y_t = \mathrm{LN}(H_t)\,W_{out}, \qquad M_{t+1} = W_t,

the first copy is *read* by every token, the last copy sees the whole segment and its final
states are the new memory. With m = 0 it is a plain transformer applied to each segment alone.

**Transformer-XL cache** (Dai et al. 2019). Layer l keeps the inputs :math:`h^{l}` of the last
:math:`L_{mem}` positions of earlier segments as a cache :math:`C^l_t`, and attends over
:math:`[\,C^l_t;\ h^l_t\,]`:

.. math:: h^{l+1}_t &= h^l_t + \mathrm{Attn}\big(Q{=}\mathrm{LN}(h^l_t),\
          K{=}V{=}\mathrm{LN}([\mathrm{sg}(C^l_t); h^l_t])\big) + \dots, \\
          C^l_{t+1} &= \mathrm{last}_{L_{mem}}\big([C^l_t; h^l_t]\big),

where :math:`\mathrm{sg}` stops the gradient: no gradient flows into earlier segments. Positions
enter only through a learned relative bias :math:`\beta_{h, \min(i-j, D-1)}` added to the logits
(in place of XL's sinusoidal relative terms), so a token sees the same thing whatever segment it
sits in. Reference formulation: the whole sequence in one pass with the mask
:math:`A_{ij} = [\,s(i) - L_{mem} \le j \le i\,]`, :math:`s(i)` the start of i's segment
(:func:`xl_attention_mask`) — the recurrent forward equals it exactly.
"""
from __future__ import annotations

import math

import numpy as np

from ... import autograd as ag
from ...autograd import ops
from ...backend import get_default_dtype, get_rng, get_xp
from ...checks import check_heads
from ...nn import (
    MLP,
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    Module,
    ModuleList,
    Parameter,
    TransformerBlock,
    causal_mask,
    merge_heads,
    split_heads,
)
from ...nn.attention import NEG_INF
from .memformer import SegmentRecurrent, _check_int, _embed

class RecurrentMemoryTransformer(SegmentRecurrent):
    """RMT: ``[mem; segment; mem]`` through causal blocks; the last m states are the new memory.

    ``step(x_segment, memory) -> (logits (B, T, vocab), new_memory (B, m, d))``; ``x_segment``
    is int tokens (B, T) or floats (B, T, d). Parameters are named (and, for one seed, drawn) as
    in :class:`minimem.nn.TransformerLM`, plus ``mem_init`` when ``n_mem > 0``.
    """

    def __init__(self, vocab, d_model, n_layers, n_heads, n_mem, max_len, d_ff=None,
                 dropout=0.0, seed=None):
        super().__init__()
        for name, v in (("vocab", vocab), ("d_model", d_model), ("n_layers", n_layers),
                        ("n_heads", n_heads), ("max_len", max_len)):
            _check_int("RecurrentMemoryTransformer", name, v)
        _check_int("RecurrentMemoryTransformer", "n_mem", n_mem, low=0)
        rng = get_rng(seed)
        self.vocab, self.d_model, self.n_mem, self.max_len = vocab, d_model, n_mem, max_len
        self.tok = Embedding(vocab, d_model, seed=rng, std=0.02)
        self.pos = Embedding(max_len, d_model, seed=rng, std=0.02)
        self.blocks = ModuleList([
            TransformerBlock(d_model, n_heads, d_ff, dropout, True, layer=i, seed=rng)
            for i in range(n_layers)
        ])
        self.ln_f = LayerNorm(d_model)
        self.head = Linear(d_model, vocab, bias=False, seed=rng)
        if n_mem:
            init = rng.standard_normal((n_mem, d_model)).astype(get_default_dtype())
            self.mem_init = Parameter(init)

    def init_memory(self, batch):
        """The learned memory tokens broadcast to (B, m, d) (an empty (B, 0, d) when m = 0)."""
        _check_int("RecurrentMemoryTransformer.init_memory", "batch", batch)
        if not self.n_mem:
            return ag.zeros(int(batch), 0, self.d_model, dtype=self.tok.weight.dtype)
        return ops.broadcast_to(self.mem_init, (int(batch), self.n_mem, self.d_model))

    def step(self, x_segment, memory):
        h = _embed("RecurrentMemoryTransformer", self.tok, self.pos, self.max_len, x_segment)
        B, T, d = h.shape
        m = self.n_mem
        if not isinstance(memory, ag.Tensor) or memory.shape != (B, m, d):
            raise ValueError(f"RecurrentMemoryTransformer.step: memory must be a Tensor "
                             f"(B={B}, {m}, {d}), got "
                             f"{getattr(memory, 'shape', type(memory).__name__)}")
        seq = ops.concatenate([memory, h, memory], axis=1) if m else h
        for block in self.blocks:
            seq = block(seq)
        out = seq[:, m:m + T] if m else seq
        new_memory = seq[:, m + T:] if m else memory
        return self.head(self.ln_f(out)), new_memory

    def extra_repr(self):
        return f"vocab={self.vocab}, d_model={self.d_model}, n_mem={self.n_mem}"


# ---- Transformer-XL ------------------------------------------------------------------------
def xl_attention_mask(n_tokens, seg_len, mem_len, xp=np):
    """Boolean (N, N): token i may attend to j when s(i) - mem_len <= j <= i.

    s(i) = (i // seg_len) * seg_len is the first position of i's segment: exactly what a token
    sees in the segment-recurrent run (its cache plus its own segment, causally).
    """
    _check_int("xl_attention_mask", "n_tokens", n_tokens, low=0)
    _check_int("xl_attention_mask", "seg_len", seg_len)
    _check_int("xl_attention_mask", "mem_len", mem_len, low=0)
    i = xp.arange(n_tokens)[:, None]
    j = xp.arange(n_tokens)[None, :]
    start = (i // seg_len) * seg_len
    return (j <= i) & (j >= start - mem_len)


class XLAttention(Module):
    """Multi-head attention with a learned relative-position bias beta[min(i - j, D - 1), h]."""

    def __init__(self, d_model, n_heads, max_distance, seed=None):
        super().__init__()
        check_heads("XLAttention", d_model, n_heads)
        _check_int("XLAttention", "max_distance", max_distance)
        rng = get_rng(seed)
        self.n_heads, self.max_distance = n_heads, max_distance
        self.W_q = Linear(d_model, d_model, seed=rng)
        self.W_k = Linear(d_model, d_model, seed=rng)
        self.W_v = Linear(d_model, d_model, seed=rng)
        self.W_o = Linear(d_model, d_model, seed=rng)
        self.rel_bias = Parameter(np.zeros((max_distance, n_heads), dtype=get_default_dtype()))

    def forward(self, x, context, q_pos, k_pos, allowed):
        """Queries from x (B, T, d) at positions q_pos, keys/values from context (B, S, d)."""
        H = self.n_heads
        q = split_heads(self.W_q(x), H)
        k = split_heads(self.W_k(context), H)
        v = split_heads(self.W_v(context), H)
        dist = np.clip(np.asarray(q_pos)[:, None] - np.asarray(k_pos)[None, :], 0,
                       self.max_distance - 1)
        bias = ops.transpose(self.rel_bias[dist], (2, 0, 1))  # (H, T, S)
        logits = (q @ ops.swapaxes(k, -1, -2)) * (q.shape[-1] ** -0.5) + bias
        xp = get_xp(logits.data)
        allowed = xp.broadcast_to(xp.asarray(allowed), logits.shape)
        logits = ops.where(allowed, logits, ag.Tensor(xp.asarray(NEG_INF, dtype=logits.dtype)))
        return self.W_o(merge_heads(ops.softmax(logits, axis=-1) @ v))


class XLBlock(Module):
    """Pre-norm block whose attention also reads the layer's cache."""

    def __init__(self, d_model, n_heads, max_distance, d_ff=None, dropout=0.0, seed=None):
        super().__init__()
        rng = get_rng(seed)
        self.ln1 = LayerNorm(d_model)
        self.attn = XLAttention(d_model, n_heads, max_distance, seed=rng)
        self.ln2 = LayerNorm(d_model)
        self.ffn = MLP(d_model, d_ff or 4 * d_model, seed=rng)
        self.drop = Dropout(dropout, seed=rng)

    def forward(self, h, cache, q_pos, k_pos, allowed):
        x = self.ln1(h)
        context = x if cache is None else ops.concatenate([self.ln1(cache), x], axis=1)
        h = h + self.drop(self.attn(x, context, q_pos, k_pos, allowed))
        return h + self.drop(self.ffn(self.ln2(h)))


class TransformerXL(Module):
    """A decoder with a Transformer-XL cache of ``mem_len`` positions per layer.

    ``init_memory(batch)``: a tuple of ``n_layers`` empty caches (B, 0, d).
    ``step(x_segment, memory, detach=True) -> (logits, new_memory)``: the new caches are cut
    from the graph (``detach=False`` keeps them attached, for checks against the full pass).
    ``forward(x)``: the reference, the whole sequence in one pass with :func:`xl_attention_mask`.
    """

    def __init__(self, vocab, d_model, n_layers, n_heads, seg_len, mem_len, max_distance=None,
                 d_ff=None, dropout=0.0, seed=None):
        super().__init__()
        for name, v in (("vocab", vocab), ("d_model", d_model), ("n_layers", n_layers),
                        ("n_heads", n_heads), ("seg_len", seg_len)):
            _check_int("TransformerXL", name, v)
        _check_int("TransformerXL", "mem_len", mem_len, low=0)
        rng = get_rng(seed)
        self.vocab, self.d_model, self.seg_len, self.mem_len = vocab, d_model, seg_len, mem_len
        self.max_distance = max_distance or seg_len + mem_len
        self.tok = Embedding(vocab, d_model, seed=rng, std=math.sqrt(1 / d_model))
        self.blocks = ModuleList([XLBlock(d_model, n_heads, self.max_distance, d_ff, dropout,
                                          seed=rng) for _ in range(n_layers)])
        self.ln_f = LayerNorm(d_model)
        self.head = Linear(d_model, vocab, bias=False, seed=rng)

    def init_memory(self, batch):
        _check_int("TransformerXL.init_memory", "batch", batch)
        return tuple(ag.zeros(int(batch), 0, self.d_model, dtype=self.tok.weight.dtype)
                     for _ in self.blocks)

    def embed(self, x):
        d = self.d_model
        if isinstance(x, ag.Tensor) and x.dtype.kind == "f":
            if x.ndim != 3 or x.shape[-1] != d:
                raise ValueError(f"TransformerXL: float input must be (B, T, {d}), got {x.shape}")
            return x
        ids = x.data if isinstance(x, ag.Tensor) else np.asarray(x)
        if ids.dtype.kind not in "iu" or ids.ndim != 2:
            raise ValueError(f"TransformerXL: x must be int tokens (B, T) or floats (B, T, {d}), "
                             f"got dtype {ids.dtype}, shape {ids.shape}")
        return self.tok(ids)

    def _check_memory(self, memory, B):
        ok = isinstance(memory, (tuple, list)) and len(memory) == len(self.blocks) and all(
            isinstance(c, ag.Tensor) and c.ndim == 3 and c.shape[0] == B
            and c.shape[2] == self.d_model and c.shape[1] == memory[0].shape[1] <= self.mem_len
            for c in memory)
        if not ok:
            raise ValueError(
                f"TransformerXL.step: memory must be a tuple of {len(self.blocks)} caches "
                f"(B={B}, C <= {self.mem_len}, {self.d_model}) of one length C, got "
                f"{[getattr(c, 'shape', type(c).__name__) for c in memory] if isinstance(memory, (tuple, list)) else type(memory).__name__}"
            )

    def step(self, x_segment, memory, detach=True):
        h = self.embed(x_segment)
        B, T, _ = h.shape
        if T > self.seg_len:
            raise ValueError(f"TransformerXL.step: segment length {T} exceeds seg_len={self.seg_len}")
        self._check_memory(memory, B)
        C = memory[0].shape[1]
        q_pos, k_pos = np.arange(C, C + T), np.arange(C + T)
        allowed = causal_mask(T, C + T, get_xp(h.data))
        new_memory = []
        for block, cache in zip(self.blocks, memory):
            new_memory.append(self._next_cache(cache, h, detach))
            h = block(h, cache if C else None, q_pos, k_pos, allowed)
        return self.head(self.ln_f(h)), tuple(new_memory)

    def _next_cache(self, cache, h, detach):
        if not self.mem_len:
            return cache
        both = ops.concatenate([cache, h], axis=1) if cache.shape[1] else h
        if both.shape[1] > self.mem_len:
            both = both[:, both.shape[1] - self.mem_len:]
        return both.detach() if detach else both

    def forward(self, x):
        """The reference: all N tokens at once under the XL mask (no cache); logits (B, N, V)."""
        h = self.embed(x)
        N = h.shape[1]
        pos = np.arange(N)
        allowed = xl_attention_mask(N, self.seg_len, self.mem_len, get_xp(h.data))
        for block in self.blocks:
            h = block(h, None, pos, pos, allowed)
        return self.head(self.ln_f(h))

    def extra_repr(self):
        return f"d_model={self.d_model}, seg_len={self.seg_len}, mem_len={self.mem_len}"
