r"""Scaled dot-product attention, multi-head attention, the pre-norm block and a small LM.

For queries :math:`Q`, keys :math:`K` and values :math:`V` of one head,

.. math:: A = \mathrm{softmax}\!\left(\tfrac{Q K^\top}{\sqrt{d_k}} + M\right), \qquad O = A V,

with :math:`M_{ij} = -\infty` where position i may not attend to j (the causal mask, or any
boolean ``mask`` with True = attend). ``MultiHeadAttention`` projects ``x`` to H heads of size
d_model / H, attends per head, concatenates and projects back with ``W_o``.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import autograd as ag
from ..autograd import ops
from ..backend import get_rng, get_xp
from .layers import MLP, Dropout, Embedding, LayerNorm, Linear
from .module import Module, ModuleList

NEG_INF = -1e30  # a large negative logit: exp underflows to exactly 0, never NaN


def causal_mask(T, S=None, xp=np):
    """Boolean (T, S) mask, True where query i may attend to key j (j <= i + S - T)."""
    S = T if S is None else S
    return xp.tri(T, S, S - T, dtype=bool)


def _mask_array(mask, xp):
    return mask.data if isinstance(mask, ag.Tensor) else xp.asarray(mask)


def scaled_dot_product_attention(q, k, v, mask=None, causal=False, scale=None,
                                 return_weights=False):
    """Attention over the last two axes: q (..., T, D), k (..., S, D), v (..., S, D_v).

    ``mask``: boolean, broadcastable to (..., T, S), True = may attend. A row with no allowed
    key returns zeros (its weights are all zero), not NaN.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, ag.Tensor) or t.ndim < 2:
            raise ValueError(f"scaled_dot_product_attention: {name} must be a Tensor with >= 2 dims")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"scaled_dot_product_attention: expected q (..., T, D), k (..., S, D), v (..., S, Dv); "
            f"got q {q.shape}, k {k.shape}, v {v.shape}"
        )
    xp = get_xp(q.data)
    T, S = q.shape[-2], k.shape[-2]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = (q @ ops.swapaxes(k, -1, -2)) * scale
    allowed = None
    if causal:
        allowed = causal_mask(T, S, xp)
    if mask is not None:
        m = _mask_array(mask, xp)
        if m.dtype != bool:
            raise TypeError(f"scaled_dot_product_attention: mask must be boolean, got {m.dtype}")
        try:
            np.broadcast_shapes(m.shape, logits.shape)
        except ValueError:
            raise ValueError(
                f"scaled_dot_product_attention: mask shape {m.shape} does not broadcast to the "
                f"attention logits {logits.shape}"
            ) from None
        allowed = m if allowed is None else (allowed & m)
    if allowed is not None:
        allowed = xp.broadcast_to(allowed, logits.shape)
        logits = ops.where(allowed, logits, ag.Tensor(xp.asarray(NEG_INF, dtype=logits.dtype)))
        weights = ops.softmax(logits, axis=-1)
        any_allowed = allowed.any(axis=-1, keepdims=True)
        if not bool(any_allowed.all()):
            weights = weights * any_allowed  # fully masked rows attend to nothing
    else:
        weights = ops.softmax(logits, axis=-1)
    out = weights @ v
    return (out, weights) if return_weights else out


def split_heads(x, n_heads):
    """(B, T, H*D) -> (B, H, T, D)."""
    B, T, C = x.shape
    return ops.transpose(ops.reshape(x, (B, T, n_heads, C // n_heads)), (0, 2, 1, 3))


def merge_heads(x):
    """(B, H, T, D) -> (B, T, H*D)."""
    B, H, T, D = x.shape
    return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (B, T, H * D))


class MultiHeadAttention(Module):
    """Multi-head (self- or cross-) attention with projections W_q, W_k, W_v, W_o.

    ``forward(x, context=None, mask=None, return_weights=False)``: queries from ``x``
    (B, T, d_model), keys/values from ``context`` (B, S, d_model; default ``x``). ``mask`` is
    boolean, broadcastable to (B, H, T, S), True = attend; ``causal`` applies on top.
    """

    def __init__(self, d_model, n_heads, causal=True, bias=True, dropout=0.0, seed=None):
        super().__init__()
        if not isinstance(n_heads, numbers.Integral) or n_heads < 1 or d_model % n_heads:
            raise ValueError(
                f"MultiHeadAttention: d_model ({d_model}) must be divisible by n_heads ({n_heads})"
            )
        rng = get_rng(seed)
        self.d_model, self.n_heads, self.causal = d_model, n_heads, causal
        self.d_head = d_model // n_heads
        self.W_q = Linear(d_model, d_model, bias=bias, seed=rng)
        self.W_k = Linear(d_model, d_model, bias=bias, seed=rng)
        self.W_v = Linear(d_model, d_model, bias=bias, seed=rng)
        self.W_o = Linear(d_model, d_model, bias=bias, seed=rng)
        self.attn_drop = Dropout(dropout, seed=rng)
        self.last_weights = None

    def forward(self, x, context=None, mask=None, return_weights=False):
        if not isinstance(x, ag.Tensor) or x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"MultiHeadAttention: expected x of shape (B, T, {self.d_model}), "
                f"got {getattr(x, 'shape', type(x).__name__)}"
            )
        ctx = x if context is None else context
        if ctx.ndim != 3 or ctx.shape[0] != x.shape[0] or ctx.shape[-1] != self.d_model:
            raise ValueError(
                f"MultiHeadAttention: context must be (B={x.shape[0]}, S, {self.d_model}), "
                f"got {ctx.shape}"
            )
        q = split_heads(self.W_q(x), self.n_heads)
        k = split_heads(self.W_k(ctx), self.n_heads)
        v = split_heads(self.W_v(ctx), self.n_heads)
        o, w = scaled_dot_product_attention(q, k, v, mask=mask, causal=self.causal,
                                            return_weights=True)
        if self.attn_drop.p and self.training:
            o = self.attn_drop(w) @ v
        self.last_weights = w.detach()
        out = self.W_o(merge_heads(o))
        return (out, w) if return_weights else out

    def extra_repr(self):
        return f"d_model={self.d_model}, n_heads={self.n_heads}, causal={self.causal}"


def _build(factory, default, d_model, n_heads, layer):
    """A sub-layer from ``factory(d_model, n_heads, layer)``, a Module class, or the default."""
    if factory is None:
        return default()
    m = factory(d_model=d_model, n_heads=n_heads, layer=layer)
    if not isinstance(m, Module):
        raise TypeError(f"TransformerBlock: the factory must return a Module, got {type(m).__name__}")
    return m


class TransformerBlock(Module):
    """Pre-norm block: x = x + mixer(LN(x)); x = x + ffn(LN(x)).

    ``mixer`` replaces attention and ``ffn`` replaces the MLP: each a callable
    ``(d_model=, n_heads=, layer=) -> Module`` mapping (B, T, d_model) to the same shape.
    """

    def __init__(self, d_model, n_heads, d_ff=None, dropout=0.0, causal=True, mixer=None,
                 ffn=None, layer=0, seed=None):
        super().__init__()
        rng = get_rng(seed)
        self.ln1 = LayerNorm(d_model)
        self.mixer = _build(mixer, lambda: MultiHeadAttention(d_model, n_heads, causal=causal,
                                                              seed=rng), d_model, n_heads, layer)
        self.ln2 = LayerNorm(d_model)
        self.ffn = _build(ffn, lambda: MLP(d_model, d_ff or 4 * d_model, seed=rng),
                          d_model, n_heads, layer)
        self.drop = Dropout(dropout, seed=rng)

    def forward(self, x, mask=None):
        h = self.ln1(x)
        h = self.mixer(h, mask=mask) if mask is not None else self.mixer(h)
        x = x + self.drop(h)
        return x + self.drop(self.ffn(self.ln2(x)))


class TransformerLM(Module):
    """A decoder-only language model: token + learned position embeddings, blocks, LN, head.

    ``forward(tokens)`` maps integer ids (B, T) to logits (B, T, vocab). ``emb_std``: the
    standard deviation of the token and position embeddings at init. With the default 0.02
    (GPT-2's) the sub-layer outputs (Linear init U(+-1/sqrt(d))) dominate the residual stream
    at first; ``emb_std=1.0`` (PyTorch's ``nn.Embedding``) keeps the token identity visible and
    shortens the plateau of in-context recall (MQAR) several times.
    """

    def __init__(self, vocab, d_model, n_layers, n_heads, max_len, d_ff=None, dropout=0.0,
                 mixer=None, ffn=None, seed=None, emb_std=0.02):
        super().__init__()
        rng = get_rng(seed)
        self.vocab, self.max_len = vocab, max_len
        self.tok = Embedding(vocab, d_model, seed=rng, std=emb_std)
        self.pos = Embedding(max_len, d_model, seed=rng, std=emb_std)
        self.blocks = ModuleList([
            TransformerBlock(d_model, n_heads, d_ff, dropout, True, mixer, ffn, layer=i, seed=rng)
            for i in range(n_layers)
        ])
        self.ln_f = LayerNorm(d_model)
        self.head = Linear(d_model, vocab, bias=False, seed=rng)

    def forward(self, tokens):
        ids = tokens.data if isinstance(tokens, ag.Tensor) else tokens
        ids = ids if hasattr(ids, "ndim") else np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"TransformerLM: tokens must be (B, T) integers, got shape {ids.shape}")
        T = ids.shape[1]
        if T > self.max_len:
            raise ValueError(f"TransformerLM: sequence length {T} exceeds max_len={self.max_len}")
        x = self.tok(ids) + self.pos(get_xp(self.pos.weight.data).arange(T))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))
