r"""Scaled dot-product attention, multi-head attention, the pre-norm block and a small LM.

For queries :math:`Q`, keys :math:`K` and values :math:`V` of one head,

.. math:: A = \mathrm{softmax}\!\left(\tfrac{Q K^\top}{\sqrt{d_k}} + M\right), \qquad O = A V,

with :math:`M_{ij} = -\infty` where position i may not attend to j (the causal mask, or any
boolean ``mask`` with True = attend). ``MultiHeadAttention`` projects ``x`` to H heads of size
d_model / H, attends per head, concatenates and projects back with ``W_o``.

Attention has two formulations that the tests hold equal, forward and backward:
:func:`scaled_dot_product_attention_reference` composes the engine's matmul, where and softmax
exactly as the equation reads; :func:`scaled_dot_product_attention` (what the layers run) is
one node, :class:`ScaledDotProductAttention`, whose backward

.. math:: \bar V &= A^\top \bar O,\quad \bar A = \bar O V^\top,\quad
          \bar L = A \odot \big(\bar A - \mathrm{rowsum}(A \odot \bar A)\big), \\
          \bar Q &= \tfrac{1}{\sqrt{d_k}} \bar L K,\quad \bar K = \tfrac{1}{\sqrt{d_k}} \bar L^\top Q

(:math:`L` the logits) runs as BLAS products around one fused pass per row
(:mod:`minimem.kernels.dense_attention`), skipping the masked half of causal products.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import autograd as ag
from ..autograd import ops
from ..autograd.function import Function
from ..backend import get_rng, get_xp
from ..checks import check_heads, check_index_array
from ..kernels.dense_attention import (check_attention_args, dense_attention_backward,
                                       dense_attention_forward)
from .layers import MLP, Dropout, Embedding, LayerNorm, Linear
from .module import Module, ModuleList
from .rope import rope as apply_rope

NEG_INF = -1e30  # a large negative logit: exp underflows to exactly 0, never NaN


def causal_mask(T, S=None, xp=np):
    """Boolean (T, S) mask, True where query i may attend to key j (j <= i + S - T)."""
    S = T if S is None else S
    return xp.tri(T, S, S - T, dtype=bool)


def _mask_array(mask, xp):
    return mask.data if isinstance(mask, ag.Tensor) else xp.asarray(mask)


def _attention_args(fn, q, k, v, mask, causal, scale):
    """Check q (..., T, D), k (..., S, D), v (..., S, Dv), the mask (boolean, broadcastable
    to the logits (..., T, S)), causal and scale; returns (mask as an array or None, scale)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, ag.Tensor) or t.ndim < 2:
            raise ValueError(f"{fn}: {name} must be a Tensor with >= 2 dims")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2] or k.shape[-2] < 1 \
            or q.shape[-1] < 1:
        raise ValueError(
            f"{fn}: expected q (..., T, D), k (..., S, D), v (..., S, Dv) with D, S >= 1; "
            f"got q {q.shape}, k {k.shape}, v {v.shape}"
        )
    try:
        lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(f"{fn}: the leading dims of q {q.shape}, k {k.shape} and v {v.shape} "
                         "do not broadcast") from None
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"{fn}: causal must be True or False, got {causal!r}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, numbers.Real)
                              or not np.isfinite(scale) or scale <= 0):
        raise ValueError(f"{fn}: scale must be a positive finite number, got {scale!r}")
    if mask is None:
        return None, scale
    m = _mask_array(mask, get_xp(q.data))
    if m.dtype != bool:
        raise TypeError(f"{fn}: mask must be boolean, got {m.dtype}")
    logits_shape = lead + (q.shape[-2], k.shape[-2])
    try:
        np.broadcast_shapes(m.shape, logits_shape)
    except ValueError:
        raise ValueError(f"{fn}: mask shape {m.shape} does not broadcast to the attention "
                         f"logits {logits_shape}") from None
    return m, scale


def scaled_dot_product_attention_reference(q, k, v, mask=None, causal=False, scale=None,
                                           return_weights=False):
    """Attention over the last two axes, composed of engine ops (the equation as it reads).

    q (..., T, D), k (..., S, D), v (..., S, D_v); ``mask``: boolean, broadcastable to
    (..., T, S), True = may attend. A row with no allowed key returns zeros (its weights are
    all zero), not NaN.
    """
    mask, scale = _attention_args("scaled_dot_product_attention_reference", q, k, v, mask,
                                  causal, scale)
    xp = get_xp(q.data)
    T, S = q.shape[-2], k.shape[-2]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = (q @ ops.swapaxes(k, -1, -2)) * scale
    allowed = None
    if causal:
        allowed = causal_mask(T, S, xp)
    if mask is not None:
        allowed = mask if allowed is None else (allowed & mask)
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


class ScaledDotProductAttention(Function):
    """Attention as one node with two outputs, O and the weights A (both differentiable):
    :func:`minimem.kernels.dense_attention.dense_attention_forward` and ``_backward``."""

    materialize_grads = False   # an unused output (most often A) sends None, not zeros

    @staticmethod
    def forward(ctx, q, k, v, mask, causal, scale):
        o, weights = dense_attention_forward(q, k, v, mask, causal, scale)
        ctx.save_for_backward(q, k, v, weights)
        ctx.causal, ctx.scale = causal, scale
        return o, weights

    @staticmethod
    def backward(ctx, grad_o, grad_weights):
        q, k, v, weights = ctx.saved_tensors
        if grad_o is None:
            grad_o = get_xp(q).zeros(q.shape[:-1] + v.shape[-1:], dtype=q.dtype)
        dq, dk, dv = dense_attention_backward(q, k, v, weights, grad_o, grad_weights,
                                              ctx.causal, ctx.scale)
        return dq, dk, dv, None, None, None


def scaled_dot_product_attention(q, k, v, mask=None, causal=False, scale=None,
                                 return_weights=False):
    """Attention over the last two axes: q (..., T, D), k (..., S, D), v (..., S, D_v).

    ``mask``: boolean, broadcastable to (..., T, S), True = may attend; ``causal``: also
    ``j <= i + S - T``; ``scale`` (default 1/sqrt(D)) a positive number. A row with no allowed
    key returns zeros (its weights are all zero), not NaN. One fused node
    (:class:`ScaledDotProductAttention`); inputs it does not take (leading dims that broadcast,
    mixed dtypes) go through :func:`scaled_dot_product_attention_reference`, its equal.
    """
    mask, scale = _attention_args("scaled_dot_product_attention", q, k, v, mask, causal, scale)
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]
            and q.dtype == k.dtype == v.dtype and q.dtype in (np.float32, np.float64)):
        return scaled_dot_product_attention_reference(q, k, v, mask, causal, scale,
                                                      return_weights)
    scale = check_attention_args("scaled_dot_product_attention", q.data, k.data, v.data, mask,
                                 bool(causal), scale)
    out, weights = ScaledDotProductAttention.apply(q, k, v, mask, bool(causal), scale)
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
    ``rope=True`` rotates queries and keys by their positions (:func:`minimem.nn.rope.rope`)
    before the logits.
    """

    def __init__(self, d_model, n_heads, causal=True, bias=True, dropout=0.0, seed=None,
                 rope=False):
        super().__init__()
        if not isinstance(rope, (bool, np.bool_)):
            raise TypeError(f"MultiHeadAttention: rope must be True or False, got {rope!r}")
        check_heads("MultiHeadAttention", d_model, n_heads)
        rng = get_rng(seed)
        self.d_model, self.n_heads, self.causal = d_model, n_heads, causal
        self.d_head = d_model // n_heads
        if rope and self.d_head % 2:
            raise ValueError(f"MultiHeadAttention: rope needs an even head size, got "
                             f"{self.d_head}")
        self.rope = bool(rope)
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
        if self.rope:  # rotary positions: queries and keys, each at 0..T-1 (0..S-1)
            q, k = apply_rope(q), apply_rope(k)
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
        fn = type(self).__name__  # subclasses (TitansLM, ...) are the name the user called
        if ids.ndim != 2:
            raise ValueError(f"{fn}: tokens must be (B, T) integers, got shape {ids.shape}")
        check_index_array(fn, "tokens", ids, self.vocab)
        T = ids.shape[1]
        if T > self.max_len:
            raise ValueError(f"{fn}: sequence length {T} exceeds max_len={self.max_len}")
        x = self.tok(ids) + self.pos(get_xp(self.pos.weight.data).arange(T))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))
