r"""Titans as layers: the neural memory, attention with persistent tokens, MAC, MAG and MAL.

All layers map ``(B, T, d_model)`` to the same shape and are causal: output :math:`t` depends
on inputs :math:`\le t` only.

* :class:`NeuralMemory`: the test-time memory of :mod:`.neural_memory` as a mixer; it also
  offers the two halves the architectures need, ``retrieve`` (read a memory, no write) and
  ``write`` (run the surprise rule over tokens and return its reads and the new memory).
* :class:`SlidingWindowAttention`: causal attention over the last ``window`` tokens, with
  ``n_persistent`` learnable tokens :math:`P` prepended to every context (Sukhbaatar et al.
  2019's persistent memory; Titans' :math:`P`): every query may attend to them.
* :class:`TitansMAC` (memory as context), per segment :math:`x^{(s)}` of ``segment`` tokens:

  .. math::
      h^{(s)} = \mathcal{M}_{s-1}(q(x^{(s)})), \quad
      y^{(s)} = \mathrm{Attn}\big(x^{(s)};\, [P;\, h^{(s)};\, x^{(s)}]\big), \\
      \mathcal{M}_s = \mathrm{write}(\mathcal{M}_{s-1}, y^{(s)}), \quad
      o^{(s)} = y^{(s)} + \mathcal{M}(y^{(s)})

  (read with the memory of the previous segments, attend, then write the attention output;
  :math:`\mathcal{M}(y_t)` is read token by token after :math:`y_t`'s own write). Query
  :math:`t` sees all of :math:`P` and the retrieved and segment tokens :math:`\le t`.
* :class:`TitansMAG` (memory as gate): :math:`o = g \odot \mathrm{SWA}(x) + (1 - g) \odot
  \mathcal{M}(x)`, :math:`g = \sigma(W_g x)`, the two branches side by side.
* :class:`TitansMAL` (memory as layer): :math:`o = \mathrm{SWA}(x + \mathcal{M}(x))`, the
  memory first, then sliding-window attention.
* :class:`TitansLM`: a ``TransformerLM`` whose mixers are one of these (or plain attention),
  trained with :func:`minimem.train.fit` like any other model.
"""
from __future__ import annotations

import math

import numpy as np

from ...autograd import ops
from ...backend import get_default_dtype, get_rng, get_xp
from ...checks import check_choice, check_float_tensor, check_int, check_nonempty, check_real
from ...nn.attention import MultiHeadAttention, TransformerLM, merge_heads, split_heads
from ...nn.layers import Linear
from ...nn.module import Module, Parameter
from .neural_memory import MEMORIES, neural_memory, read_memory


def _check_x(fn, x, d_model):
    check_float_tensor(fn, "x", x, float16=False)
    check_nonempty(fn, "x", x, axes=(1,) if x.ndim > 1 else ())  # T >= 1
    if x.ndim != 3 or x.shape[-1] != d_model:
        raise ValueError(f"{fn}: expected x of shape (B, T, {d_model}), got "
                         f"{getattr(x, 'shape', type(x).__name__)}")


def _check_memory_options(fn, memory, chunk_size, theta_max):
    """The neural-memory arguments a composite layer passes on, checked under its own name."""
    check_choice(fn, "memory", memory, MEMORIES)
    check_int(fn, "chunk_size", chunk_size, low=1)
    check_real(fn, "theta_max", theta_max, low=0)


def _check_heads(fn, d_model, n_heads):
    check_int(fn, "d_model", d_model, low=1)
    check_int(fn, "n_heads", n_heads, low=1)
    if d_model % n_heads:
        raise ValueError(f"{fn}: d_model ({d_model}) must be divisible by n_heads ({n_heads})")


class NeuralMemory(Module):
    r"""A mixer layer whose memory learns at test time (``(B, T, d_model) -> same``).

    Per head: :math:`q, k` L2-normalized projections, :math:`v` a projection,
    :math:`\theta_t = \theta_{\max}\sigma(w_\theta^\top x_t)`, :math:`\eta_t =
    \sigma(w_\eta^\top x_t)`, :math:`\alpha_t = \sigma(w_\alpha^\top x_t)`; the initial memory
    parameters are learned (shared by the batch). ``memory="linear"`` or ``"mlp"`` (hidden
    width ``hidden``, default ``2 * d_head``); ``chunk_size`` as in :func:`neural_memory`.
    """

    def __init__(self, d_model, n_heads=1, memory="mlp", hidden=None, theta_max=1.0,
                 chunk_size=1, seed=None):
        super().__init__()
        check_choice("NeuralMemory", "memory", memory, MEMORIES)
        _check_heads("NeuralMemory", d_model, n_heads)
        self.chunk_size = check_int("NeuralMemory", "chunk_size", chunk_size, low=1)
        rng, dt = get_rng(seed), get_default_dtype()
        self.d_model, self.n_heads, self.memory = d_model, n_heads, memory
        self.d_head = dh = d_model // n_heads
        self.theta_max = check_real("NeuralMemory", "theta_max", theta_max, low=0)
        for name in ("W_q", "W_k", "W_v", "W_o"):
            setattr(self, name, Linear(d_model, d_model, bias=False, seed=rng))
        self.W_gates = Linear(d_model, 3 * n_heads, bias=True, seed=rng)   # theta, eta, alpha
        if memory == "linear":
            self.M0 = Parameter(np.zeros((1, n_heads, dh, dh), dtype=dt))
        else:
            self.hidden = 2 * dh if hidden is None else check_int("NeuralMemory", "hidden",
                                                                  hidden, low=1)
            self.W1_0 = Parameter((rng.standard_normal((1, n_heads, dh, self.hidden))
                                   / math.sqrt(dh)).astype(dt))
            self.W2_0 = Parameter((rng.standard_normal((1, n_heads, self.hidden, dh))
                                   / math.sqrt(self.hidden)).astype(dt))

    def initial_params(self):
        """The learned memory before any token (batch axis 1, broadcast)."""
        return (self.M0,) if self.memory == "linear" else (self.W1_0, self.W2_0)

    def _query(self, x):
        return ops.l2_normalize(split_heads(self.W_q(x), self.n_heads), axis=-1)

    def retrieve(self, x, params):
        r""":math:`W_o\, \mathcal{M}(q(x_t))` for every token with the memory ``params``
        (read only: nothing is written)."""
        _check_x("NeuralMemory.retrieve", x, self.d_model)
        return self.W_o(merge_heads(read_memory(self.memory, _per_token(params),
                                                self._query(x))))

    def write(self, x, params):
        """Run the surprise rule over ``x`` from the memory ``params``; returns
        ``(W_o M_t(q_t) per token, the memory after the last token)``."""
        _check_x("NeuralMemory.write", x, self.d_model)
        H = self.n_heads
        k = ops.l2_normalize(split_heads(self.W_k(x), H), axis=-1)
        v = split_heads(self.W_v(x), H)
        gates = ops.sigmoid(ops.transpose(self.W_gates(x), (0, 2, 1)))     # (B, 3H, T)
        theta, eta, alpha = (gates[:, i * H:(i + 1) * H] for i in range(3))
        o, params = neural_memory(self._query(x), k, v, theta * self.theta_max, eta, alpha,
                                  tuple(params), self.memory, chunk_size=self.chunk_size)
        return self.W_o(merge_heads(o)), params

    def forward(self, x, mask=None):
        if mask is not None:
            raise ValueError("NeuralMemory: the memory is causal by construction; no mask")
        _check_x("NeuralMemory", x, self.d_model)
        return self.write(x, self.initial_params())[0]

    def extra_repr(self):
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, memory={self.memory!r}, "
                f"chunk_size={self.chunk_size}")


def _per_token(params):
    """Weights (B, H, ...) -> (B, H, 1, ...): one memory read by every token."""
    return tuple(ops.expand_dims(p, 2) for p in params)


def window_mask(T, window, n_prefix=0):
    """Boolean (T, n_prefix + T): True where query ``t`` may attend; the ``n_prefix`` leading
    columns (persistent tokens) always, token ``j`` when ``t - window < j <= t`` (``window``
    None: every ``j <= t``)."""
    T = check_int("window_mask", "T", T, low=0)
    if window is not None:
        check_int("window_mask", "window", window, low=1)
    n_prefix = check_int("window_mask", "n_prefix", n_prefix, low=0)
    t, j = np.arange(T)[:, None], np.arange(T)[None, :]
    keep = j <= t
    if window is not None:
        keep &= j > t - window
    return np.concatenate([np.ones((T, n_prefix), dtype=bool), keep], axis=1)


class _Persistent(Module):
    """``n`` learnable tokens prepended to a context (B, S, d) -> (B, n + S, d)."""

    def __init__(self, n, d_model, rng):
        super().__init__()
        self.n = n
        if n:
            self.P = Parameter((0.02 * rng.standard_normal((1, n, d_model)))
                               .astype(get_default_dtype()))

    def forward(self, context):
        if not self.n:
            return context
        B, _, d = context.shape
        return ops.concatenate([ops.broadcast_to(self.P, (B, self.n, d)), context], axis=1)


class SlidingWindowAttention(Module):
    """Causal multi-head attention over the last ``window`` tokens (None: all) and
    ``n_persistent`` learnable persistent tokens (0: none; then it is ``MultiHeadAttention``
    with a band mask)."""

    def __init__(self, d_model, n_heads, window=None, n_persistent=0, seed=None):
        super().__init__()
        fn = "SlidingWindowAttention"
        _check_heads(fn, d_model, n_heads)
        self.window = None if window is None else check_int(fn, "window", window, low=1)
        self.n_persistent = check_int(fn, "n_persistent", n_persistent, low=0)
        rng = get_rng(seed)
        self.d_model = d_model
        self.attn = MultiHeadAttention(d_model, n_heads, causal=False, seed=rng)
        self.persistent = _Persistent(self.n_persistent, d_model, rng)

    def forward(self, x, mask=None):
        if mask is not None:
            raise ValueError("SlidingWindowAttention: the window is the mask; pass no mask")
        _check_x("SlidingWindowAttention", x, self.d_model)
        keep = window_mask(x.shape[1], self.window, self.n_persistent)
        return self.attn(x, context=self.persistent(x), mask=get_xp(x.data).asarray(keep))

    def extra_repr(self):
        return f"window={self.window}, n_persistent={self.n_persistent}"


def mac_mask(c, n_persistent):
    """Boolean (c, n_persistent + 2c) of a MAC segment: query ``t`` sees every persistent
    token, the retrieved tokens ``<= t`` and the segment's tokens ``<= t``."""
    c = check_int("mac_mask", "c", c, low=1)
    n_persistent = check_int("mac_mask", "n_persistent", n_persistent, low=0)
    causal = np.tril(np.ones((c, c), dtype=bool))
    return np.concatenate([np.ones((c, n_persistent), dtype=bool), causal, causal], axis=1)


class TitansMAC(Module):
    """Memory as context (see the module docstring): segments of ``segment`` tokens, each
    read from the memory, attended over ``[P; retrieved; segment]`` and written."""

    def __init__(self, d_model, n_heads, segment, n_persistent=4, memory="linear",
                 chunk_size=1, theta_max=1.0, seed=None):
        super().__init__()
        fn = "TitansMAC"
        _check_heads(fn, d_model, n_heads)
        _check_memory_options(fn, memory, chunk_size, theta_max)
        self.segment = check_int(fn, "segment", segment, low=1)
        rng = get_rng(seed)
        self.d_model, self.n_persistent = d_model, check_int(fn, "n_persistent",
                                                             n_persistent, low=0)
        self.memory = NeuralMemory(d_model, n_heads, memory, theta_max=theta_max,
                                   chunk_size=chunk_size, seed=rng)
        self.attn = MultiHeadAttention(d_model, n_heads, causal=False, seed=rng)
        self.persistent = _Persistent(self.n_persistent, d_model, rng)

    def segment_step(self, x_seg, params):
        """One segment: ``(output, attention output y, retrieved h, memory after)``."""
        h = self.memory.retrieve(x_seg, params)                        # 1 read M_{s-1}
        context = self.persistent(ops.concatenate([h, x_seg], axis=1))
        keep = mac_mask(x_seg.shape[1], self.n_persistent)
        y = self.attn(x_seg, context=context, mask=get_xp(x_seg.data).asarray(keep))  # 2
        read, params = self.memory.write(y, params)                    # 3 write y
        return y + read, y, h, params

    def forward(self, x, mask=None):
        if mask is not None:
            raise ValueError("TitansMAC: causal by construction; pass no mask")
        _check_x("TitansMAC", x, self.d_model)
        params, outs = self.memory.initial_params(), []
        for s0 in range(0, x.shape[1], self.segment):
            out, _, _, params = self.segment_step(x[:, s0:s0 + self.segment], params)
            outs.append(out)
        return outs[0] if len(outs) == 1 else ops.concatenate(outs, axis=1)

    def extra_repr(self):
        return f"segment={self.segment}, n_persistent={self.n_persistent}"


def _check_windowed(fn, d_model, n_heads, window, n_persistent, memory, chunk_size, theta_max):
    """The arguments MAG and MAL share: heads, the memory's options, the attention window."""
    _check_heads(fn, d_model, n_heads)
    _check_memory_options(fn, memory, chunk_size, theta_max)
    check_int(fn, "window", window, low=1)
    check_int(fn, "n_persistent", n_persistent, low=0)


class TitansMAG(Module):
    """Memory as gate: sliding-window attention (with persistent tokens) and the neural
    memory side by side, mixed per channel by :math:`g = \\sigma(W_g x)`."""

    def __init__(self, d_model, n_heads, window, n_persistent=4, memory="linear",
                 chunk_size=1, theta_max=1.0, seed=None):
        super().__init__()
        _check_windowed("TitansMAG", d_model, n_heads, window, n_persistent, memory, chunk_size,
                        theta_max)
        rng = get_rng(seed)
        self.d_model = d_model
        self.attn = SlidingWindowAttention(d_model, n_heads, window, n_persistent, seed=rng)
        self.memory = NeuralMemory(d_model, n_heads, memory, theta_max=theta_max,
                                   chunk_size=chunk_size, seed=rng)
        self.W_g = Linear(d_model, d_model, seed=rng)

    def forward(self, x, mask=None):
        if mask is not None:
            raise ValueError("TitansMAG: causal by construction; pass no mask")
        _check_x("TitansMAG", x, self.d_model)
        g = ops.sigmoid(self.W_g(x))
        return g * self.attn(x) + (1 - g) * self.memory(x)


class TitansMAL(Module):
    """Memory as layer: the neural memory (residual) then sliding-window attention."""

    def __init__(self, d_model, n_heads, window, n_persistent=4, memory="linear",
                 chunk_size=1, theta_max=1.0, seed=None):
        super().__init__()
        _check_windowed("TitansMAL", d_model, n_heads, window, n_persistent, memory, chunk_size,
                        theta_max)
        rng = get_rng(seed)
        self.d_model = d_model
        self.memory = NeuralMemory(d_model, n_heads, memory, theta_max=theta_max,
                                   chunk_size=chunk_size, seed=rng)
        self.attn = SlidingWindowAttention(d_model, n_heads, window, n_persistent, seed=rng)

    def forward(self, x, mask=None):
        if mask is not None:
            raise ValueError("TitansMAL: causal by construction; pass no mask")
        _check_x("TitansMAL", x, self.d_model)
        return self.attn(x + self.memory(x))


VARIANTS = ("mac", "mag", "mal", "window", "transformer")


class TitansLM(TransformerLM):
    """A ``TransformerLM`` whose mixers are ``variant``: ``"mac"`` (segments of ``window``
    tokens), ``"mag"``, ``"mal"``, ``"window"`` (sliding-window attention alone) or
    ``"transformer"`` (full causal attention); ``forward(tokens (B, T)) -> logits``.

    Every variant's attention has the same ``n_persistent`` tokens, so the comparison is of
    the memory alone; ``emb_std=1.0`` (see ``TransformerLM``) keeps token identities visible,
    which recall tasks need. ``memory``, ``chunk_size`` and ``theta_max`` configure the
    neural memory of MAC, MAG and MAL."""

    def __init__(self, vocab, d_model, n_layers, n_heads, max_len, variant="mac", window=8,
                 n_persistent=4, memory="linear", chunk_size=1, theta_max=1.0, seed=None,
                 emb_std=1.0):
        fn = "TitansLM"
        check_choice(fn, "variant", variant, VARIANTS)
        for name, value in (("vocab", vocab), ("n_layers", n_layers), ("max_len", max_len),
                            ("window", window)):
            check_int(fn, name, value, low=1)
        _check_heads(fn, d_model, n_heads)
        check_int(fn, "n_persistent", n_persistent, low=0)
        _check_memory_options(fn, memory, chunk_size, theta_max)
        layer_kw = {"n_persistent": n_persistent, "memory": memory, "chunk_size": chunk_size,
                    "theta_max": theta_max}
        rng = get_rng(seed)

        def mixer(d_model, n_heads, layer):
            if variant == "mac":
                return TitansMAC(d_model, n_heads, window, seed=rng, **layer_kw)
            if variant == "mag":
                return TitansMAG(d_model, n_heads, window, seed=rng, **layer_kw)
            if variant == "mal":
                return TitansMAL(d_model, n_heads, window, seed=rng, **layer_kw)
            return SlidingWindowAttention(d_model, n_heads,
                                          window if variant == "window" else None,
                                          n_persistent, seed=rng)

        super().__init__(vocab, d_model, n_layers, n_heads, max_len, mixer=mixer, seed=rng,
                         emb_std=emb_std)
        self.variant = variant
