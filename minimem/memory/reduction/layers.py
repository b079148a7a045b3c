"""The layers of the attention-as-a-reduction chapter.

* :class:`Aaren`: attention as a many-to-one RNN with a learned query per head
  (:func:`.prefix.prefix_attention`, Feng et al. 2024), a ``mixer`` for ``TransformerLM``:
  ``o_t`` attends over ``x_1..t`` only, so it is causal by construction, and it can run one
  token at a time with a constant-size state.
* :class:`LandmarkAttention`: multi-head attention through landmark attention's grouped
  softmax (:func:`.landmark.landmark_attention`), with top-k block retrieval when ``top_k``
  is set; :class:`LandmarkLM`: a language model that inserts the landmark tokens itself.
"""
from __future__ import annotations

import numpy as np

from ...autograd import ops
from ...backend import get_default_dtype, get_rng
from ...checks import (check_choice, check_dtype, check_float_tensor, check_heads,
                      check_int, check_ndim, check_nonempty)
from ...nn.attention import MultiHeadAttention, TransformerBlock, merge_heads, split_heads
from ...nn.layers import Embedding, LayerNorm, Linear
from ...nn.module import Module, ModuleList, Parameter
from .landmark import insert_landmarks, landmark_attention
from .prefix import MODES, prefix_attention


class Aaren(Module):
    """Aaren mixer: per head a learned query ``q`` (H, D), keys and values from ``x``.

    ``Aaren(d_model, n_heads, mode="scan", bias=True, seed=None, layer=0)``;
    ``forward(x)`` maps (B, T, d_model) to (B, T, d_model): head h at step t outputs the
    softmax attention of ``q[h]`` over the keys of ``x_1..t``, then ``W_o`` mixes the heads.
    """

    def __init__(self, d_model, n_heads, mode="scan", bias=True, seed=None, layer=0):
        super().__init__()
        fn = "Aaren"
        check_int(fn, "d_model", d_model, low=1)
        check_int(fn, "n_heads", n_heads, low=1)
        if d_model % n_heads:
            raise ValueError(f"Aaren: d_model ({d_model}) must be divisible by n_heads "
                             f"({n_heads})")
        check_choice(fn, "mode", mode, MODES)
        rng = get_rng(seed)
        self.d_model, self.n_heads, self.mode, self.layer = d_model, n_heads, mode, layer
        self.d_head = d_model // n_heads
        q0 = rng.standard_normal((n_heads, self.d_head)) * self.d_head ** -0.5
        self.q = Parameter(q0.astype(get_default_dtype()))
        self.W_k = Linear(d_model, d_model, bias=bias, seed=rng)
        self.W_v = Linear(d_model, d_model, bias=bias, seed=rng)
        self.W_o = Linear(d_model, d_model, bias=bias, seed=rng)

    def forward(self, x, mask=None):
        if mask is not None:
            raise ValueError("Aaren: a mask is not supported (every step sees its prefix)")
        check_float_tensor("Aaren", "x", x)
        check_ndim("Aaren", "x", x, 3)
        check_nonempty("Aaren", "x", x, axes=(1,))  # T >= 1: a step needs a token
        if x.shape[-1] != self.d_model:
            raise ValueError(f"Aaren: expected x of shape (B, T, {self.d_model}), got "
                             f"{x.shape}")
        k = split_heads(self.W_k(x), self.n_heads)
        v = split_heads(self.W_v(x), self.n_heads)
        q = ops.broadcast_to(ops.astype(self.q, x.dtype),
                             (x.shape[0], self.n_heads, self.d_head))
        return self.W_o(merge_heads(prefix_attention(q, k, v, mode=self.mode)))

    def extra_repr(self):
        return f"d_model={self.d_model}, n_heads={self.n_heads}, mode={self.mode!r}"



class LandmarkAttention(MultiHeadAttention):
    """Multi-head self-attention with landmark attention's grouped softmax.

    ``LandmarkAttention(d_model, n_heads, block, top_k=None, bias=True, seed=None, layer=0)``:
    the input is laid out with a landmark after every ``block`` tokens
    (:func:`.landmark.landmark_layout`); ``top_k`` (settable) retrieves only the ``top_k``
    best earlier blocks per query, None attends through every landmark.
    """

    def __init__(self, d_model, n_heads, block, top_k=None, bias=True, seed=None, layer=0):
        fn = "LandmarkAttention"  # checked here, so that errors name the class the user built
        check_heads(fn, d_model, n_heads)
        block = check_int(fn, "block", block, low=1)
        if top_k is not None:
            check_int(fn, "top_k", top_k, low=1)
        super().__init__(d_model, n_heads, causal=True, bias=bias, seed=seed)
        self.block = block
        self.top_k, self.layer = top_k, layer

    def forward(self, x, mask=None):
        if mask is not None:
            raise ValueError("LandmarkAttention: a mask is not supported (the layout is the "
                             "mask)")
        check_float_tensor("LandmarkAttention", "x", x)
        check_ndim("LandmarkAttention", "x", x, 3)
        check_nonempty("LandmarkAttention", "x", x, axes=(1,))  # T >= 1: a step needs a token
        if x.shape[-1] != self.d_model:
            raise ValueError(f"LandmarkAttention: expected x of shape (B, T, {self.d_model}), "
                             f"got {x.shape}")
        q, k, v = (split_heads(W(x), self.n_heads) for W in (self.W_q, self.W_k, self.W_v))
        return self.W_o(merge_heads(landmark_attention(q, k, v, self.block, self.top_k)))

    def extra_repr(self):
        return f"d_model={self.d_model}, n_heads={self.n_heads}, block={self.block}, " \
               f"top_k={self.top_k}"


class LandmarkLM(Module):
    """A decoder-only LM with landmark attention and no position embedding.

    ``forward(tokens)`` maps ids (B, T) in [0, vocab) to logits (B, T, vocab): it inserts the
    landmark token (id ``vocab``) after every ``block`` tokens, runs the blocks, and reads the
    logits back at the original tokens. Without position embeddings nothing in the model is
    tied to a length: it runs on any T. ``top_k`` (settable) switches every layer to top-k
    block retrieval.
    """

    def __init__(self, vocab, d_model, n_layers, n_heads, block, top_k=None, seed=None):
        super().__init__()
        fn = "LandmarkLM"
        self.vocab = check_int(fn, "vocab", vocab, low=2)
        check_int(fn, "n_layers", n_layers, low=1)
        self.block = check_int(fn, "block", block, low=1)
        check_heads(fn, d_model, n_heads)
        if top_k is not None:
            check_int(fn, "top_k", top_k, low=1)
        rng = get_rng(seed)
        self.tok = Embedding(vocab + 1, d_model, seed=rng)
        self.blocks = ModuleList([TransformerBlock(
            d_model, n_heads, layer=i, seed=rng,
            mixer=lambda **kw: LandmarkAttention(**kw, block=block, top_k=top_k, seed=rng))
            for i in range(n_layers)])
        self.ln_f = LayerNorm(d_model)
        self.head = Linear(d_model, vocab, bias=False, seed=rng)

    @property
    def top_k(self):
        return self.blocks[0].mixer.top_k

    @top_k.setter
    def top_k(self, value):
        if value is not None:
            check_int("LandmarkLM", "top_k", value, low=1)
        for blk in self.blocks:
            blk.mixer.top_k = value

    def forward(self, tokens):
        ids = np.asarray(tokens.data if hasattr(tokens, "data") else tokens)
        check_dtype("LandmarkLM", "tokens", ids, "iu")
        if ids.ndim != 2 or (ids.size and (
                ids.min() < 0 or ids.max() >= self.vocab)):
            raise ValueError(f"LandmarkLM: tokens must be integer ids (B, T) in [0, "
                             f"{self.vocab}), got {ids.dtype} {ids.shape}")
        with_landmarks, keep = insert_landmarks(ids, self.block, self.vocab)
        x = self.tok(with_landmarks)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x[:, keep]))
