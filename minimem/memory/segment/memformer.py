r"""Memformer: a transformer that reads from and writes to K memory slots per sequence.

A long sequence is cut into segments :math:`x_1, x_2, \dots`; the memory
:math:`M_t \in \mathbb{R}^{K \times d}` (slots :math:`m_t^1, \dots, m_t^K`) carries what the
model keeps from the segments before :math:`t` (Wu et al., *Memformer*, 2020).

**Reader** (in every encoder layer): the tokens of the segment attend to the slots,

.. math:: h &\leftarrow h + \mathrm{SelfAttn}(\mathrm{LN}(h)), \\
          h &\leftarrow h + \mathrm{Attn}\big(Q{=}\mathrm{LN}(h),\ K{=}V{=}\mathrm{LN}(M_t)\big),
          \\ h &\leftarrow h + \mathrm{FFN}(\mathrm{LN}(h)).

The final encodings are :math:`H_t = \mathrm{LN}(h)` and the logits :math:`H_t W_{out}`.

**Writer** (slot attention): slot i attends over itself and the segment's encodings, never to
another slot. With :math:`\hat m^i = \mathrm{LN}(m_t^i)` and the context
:math:`C^i = [\hat m^i; H_t]`,

.. math:: \tilde m^i = m_t^i + W_O\, \mathrm{softmax}\!\Big(\frac{(\hat m^i W_Q)(C^i W_K)^\top}
          {\sqrt{d_h}}\Big)\, C^i W_V .

Batched over the slots this is one attention of the queries :math:`\hat M` over
:math:`[\hat M; H_t]` (K + T keys) with the boolean mask
:math:`A_{ij} = [\,j = i\,]` for :math:`j < K` and :math:`A_{ij} = 1` for :math:`j \ge K`
(:func:`slot_write_mask`). :meth:`MemoryWriter.forward_reference` is the per-slot loop.

**Forgetting** — *biased memory normalization* (BMN, the paper's mechanism, used here; no gate):

.. math:: m_{t+1}^i = \frac{\tilde m^i + b^i}{\sqrt{\lVert \tilde m^i + b^i \rVert^2 + \epsilon}},

with a learned bias :math:`b \in \mathbb{R}^{K \times d}`. Every slot lies on the unit sphere, so
repeated writes cannot blow up; the bias is a point the slots drift towards when the writes
carry nothing new, i.e. old content is gradually forgotten.
"""
from __future__ import annotations

import numbers

import numpy as np

from ... import autograd as ag
from ...autograd import ops
from ...backend import get_default_dtype, get_rng, get_xp
from ...checks import (check_float_tensor, check_heads, check_index_bounds, check_int,
                      check_real, describe)
from ...nn import (
    MLP,
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    Module,
    ModuleList,
    MultiHeadAttention,
    Parameter,
)

def _check_int(fn, name, value, low=1):
    check_int(fn, name, value, low=low)


def slot_write_mask(n_slots, seg_len, xp=np):
    """Boolean (K, K + T) mask of the memory writer, True = slot i may attend to position j.

    Positions ``0..K-1`` are the slots, ``K..K+T-1`` the segment's encodings: slot i sees only
    itself among the slots (``j == i``) and every encoding.
    """
    _check_int("slot_write_mask", "n_slots", n_slots)
    _check_int("slot_write_mask", "seg_len", seg_len, low=0)
    K, T = int(n_slots), int(seg_len)
    # Exercise 50.2 (1 pt): the slot-attention mask A of shape (K, K + T): A[i, j] is True when
    # j == i (a slot sees itself) or j >= K (every encoding), False for the other slots.
    # Needs: 50.3
    ### BEGIN SOLUTION
    mask = xp.zeros((K, K + T), dtype=bool)
    mask[:, :K] = xp.eye(K, dtype=bool)
    mask[:, K:] = True
    ### END SOLUTION
    return mask


def biased_memory_normalization(memory, bias, eps=1e-12):
    r"""BMN: :math:`m^i \leftarrow (m^i + b^i) / \sqrt{\lVert m^i + b^i\rVert^2 + \epsilon}`.

    ``memory`` (..., K, d), ``bias`` broadcastable to it (usually (K, d)); every slot of the
    result has unit norm (up to ``eps``).
    """
    fn = "biased_memory_normalization"
    check_float_tensor(fn, "memory", memory)
    check_float_tensor(fn, "bias", bias)
    check_real(fn, "eps", eps, low=0)  # eps = 0: exactly unit norms
    if memory.ndim < 2:
        raise ValueError(
            "biased_memory_normalization: memory must be a Tensor of shape (..., K, d), got "
            f"{getattr(memory, 'shape', type(memory).__name__)}"
        )
    if not isinstance(bias, ag.Tensor):
        raise TypeError(f"biased_memory_normalization: bias must be a Tensor, got {type(bias).__name__}")
    try:
        np.broadcast_shapes(bias.shape, memory.shape)
    except ValueError:
        raise ValueError(
            f"biased_memory_normalization: bias of shape {bias.shape} does not broadcast to the "
            f"memory {memory.shape}"
        ) from None
    # Exercise 50.3 (1 pt): biased memory normalization: add the bias to every slot, then divide
    # each slot (last axis) by sqrt(its squared norm + eps); assign the result to `out`.
    # Needs: 0.1, 0.2, 0.5
    ### BEGIN SOLUTION
    u = memory + bias
    norm = ((u * u).sum(axis=-1, keepdims=True) + eps).sqrt()
    out = u / norm
    ### END SOLUTION
    return out


def normalized_norm_gradient(u, eps=1e-5):
    """The gradient, with respect to each slot ``u`` (last axis), of the squared norm of its
    normalized slot ``||u / sqrt(||u||^2 + eps)||^2``: how hard the loss can still push a
    slot's size through biased memory normalization (NumPy arrays in and out)."""
    u = np.asarray(u)
    if u.dtype.kind != "f" or u.dtype == np.float16 or u.ndim < 1:
        raise TypeError(f"normalized_norm_gradient: u must be a float32/float64 array with a "
                        f"slot axis, got dtype {u.dtype} and {u.ndim} dims")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not np.isfinite(eps) \
            or eps <= 0:
        raise ValueError(f"normalized_norm_gradient: eps must be a finite number > 0, "
                         f"got {eps!r}")
    # Exercise 50.4 (2 pt): derive the gradient of r(u) = ||u||^2 / (||u||^2 + eps) with
    #   respect to u (each slot on the last axis) and return it as `grad`, u's shape. The
    #   tests check it against finite differences, and that it vanishes for large slots.
    ### BEGIN SOLUTION
    sq = (u * u).sum(axis=-1, keepdims=True)
    grad = 2 * eps * u / (sq + eps) ** 2  # dr/d(sq) = eps / (sq + eps)^2, d(sq)/du = 2u
    ### END SOLUTION
    return grad


def _unit_rows(rng, shape, dtype):
    m = rng.standard_normal(shape)
    return (m / np.linalg.norm(m, axis=-1, keepdims=True)).astype(dtype)


class MemoryWriter(Module):
    """Slot attention over ``[slots; encodings]`` (each slot sees only itself), then BMN."""

    def __init__(self, d_model, n_heads, n_slots, seed=None):
        super().__init__()
        check_heads("MemoryWriter", d_model, n_heads)
        _check_int("MemoryWriter", "n_slots", n_slots)
        rng = get_rng(seed)
        self.d_model, self.n_slots = d_model, n_slots
        self.ln_m = LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, causal=False, seed=rng)
        self.bias = Parameter(np.zeros((n_slots, d_model), dtype=get_default_dtype()))

    def _check(self, memory, encodings):
        K, d = self.n_slots, self.d_model
        if not isinstance(memory, ag.Tensor) or memory.ndim != 3 or memory.shape[1:] != (K, d):
            raise ValueError(f"MemoryWriter: memory must be (B, {K}, {d}), got "
                             f"{getattr(memory, 'shape', type(memory).__name__)}")
        if (not isinstance(encodings, ag.Tensor) or encodings.ndim != 3
                or encodings.shape[0] != memory.shape[0] or encodings.shape[2] != d):
            raise ValueError(f"MemoryWriter: encodings must be (B={memory.shape[0]}, T, {d}), "
                             f"got {getattr(encodings, 'shape', type(encodings).__name__)}")

    def forward(self, memory, encodings):
        """(B, K, d) slots and (B, T, d) encodings -> (B, K, d) new slots (one masked attention)."""
        self._check(memory, encodings)
        m_hat = self.ln_m(memory)
        context = ops.concatenate([m_hat, encodings], axis=1)
        mask = slot_write_mask(self.n_slots, encodings.shape[1], get_xp(memory.data))
        m_tilde = memory + self.attn(m_hat, context=context, mask=mask)
        return biased_memory_normalization(m_tilde, self.bias)

    def forward_reference(self, memory, encodings):
        """The same map as a loop over slots: slot i attends over ``[m^i; H]`` alone."""
        self._check(memory, encodings)
        m_hat = self.ln_m(memory)
        updates = []
        for i in range(self.n_slots):
            q = m_hat[:, i:i + 1]
            updates.append(self.attn(q, context=ops.concatenate([q, encodings], axis=1)))
        m_tilde = memory + ops.concatenate(updates, axis=1)
        return biased_memory_normalization(m_tilde, self.bias)


class MemformerLayer(Module):
    """Encoder layer: causal self-attention, memory reader (cross-attention to slots), FFN."""

    def __init__(self, d_model, n_heads, d_ff=None, dropout=0.0, causal=True, seed=None):
        super().__init__()
        rng = get_rng(seed)
        self.ln1 = LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, n_heads, causal=causal, seed=rng)
        self.ln2 = LayerNorm(d_model)
        self.ln_mem = LayerNorm(d_model)
        self.reader = MultiHeadAttention(d_model, n_heads, causal=False, seed=rng)
        self.ln3 = LayerNorm(d_model)
        self.ffn = MLP(d_model, d_ff or 4 * d_model, seed=rng)
        self.drop = Dropout(dropout, seed=rng)

    def forward(self, h, memory):
        h = h + self.drop(self.self_attn(self.ln1(h)))
        h = h + self.drop(self.reader(self.ln2(h), context=self.ln_mem(memory)))
        return h + self.drop(self.ffn(self.ln3(h)))


class SegmentRecurrent(Module):
    """A model read segment by segment: subclasses define ``init_memory`` and ``step``."""

    def forward(self, segments, memory=None):
        """Run every segment in turn; returns (list of logits, final memory)."""
        fn = type(self).__name__
        if not isinstance(segments, (list, tuple)):
            raise TypeError(f"{fn}: segments must be a list of segments, got "
                            f"{describe(segments)}")
        if not segments:
            raise ValueError(f"{fn}: segments must be a non-empty list, got an empty one")
        memory = self.init_memory(_batch_of(segments[0])) if memory is None else memory
        outputs = []
        for x in segments:
            y, memory = self.step(x, memory)
            outputs.append(y)
        return outputs, memory


class Memformer(SegmentRecurrent):
    """Segment-recurrent transformer with K memory slots.

    ``init_memory(batch)`` gives the learned initial slots (B, K, d_model);
    ``step(x_segment, memory) -> (logits, new_memory)`` processes one segment: ``x_segment`` is
    integer tokens (B, T) or float embeddings (B, T, d_model), T <= ``max_len``; logits are
    (B, T, vocab). Train it through time with :func:`minimem.memory.segment.mrbp` or ``bptt``.
    """

    def __init__(self, vocab, d_model, n_layers, n_heads, n_slots, max_len, d_ff=None,
                 dropout=0.0, causal=True, seed=None):
        super().__init__()
        for name, v in (("vocab", vocab), ("d_model", d_model), ("n_layers", n_layers),
                        ("n_heads", n_heads), ("n_slots", n_slots), ("max_len", max_len)):
            _check_int("Memformer", name, v)
        rng = get_rng(seed)
        self.vocab, self.d_model, self.n_slots, self.max_len = vocab, d_model, n_slots, max_len
        self.tok = Embedding(vocab, d_model, seed=rng, std=0.02)
        self.pos = Embedding(max_len, d_model, seed=rng, std=0.02)
        self.layers = ModuleList([MemformerLayer(d_model, n_heads, d_ff, dropout, causal, seed=rng)
                                  for _ in range(n_layers)])
        self.ln_f = LayerNorm(d_model)
        self.head = Linear(d_model, vocab, bias=False, seed=rng)
        self.writer = MemoryWriter(d_model, n_heads, n_slots, seed=rng)
        self.memory_init = Parameter(_unit_rows(rng, (n_slots, d_model), get_default_dtype()))

    def init_memory(self, batch):
        """The initial memory (B, K, d): the learned slots, shared by every sequence."""
        _check_int("Memformer.init_memory", "batch", batch)
        return ops.broadcast_to(self.memory_init, (int(batch), self.n_slots, self.d_model))

    def embed(self, x):
        """Token ids (B, T) or embeddings (B, T, d) -> (B, T, d) with positions added."""
        return _embed("Memformer", self.tok, self.pos, self.max_len, x)

    def step(self, x_segment, memory):
        h = self.embed(x_segment)
        K, d = self.n_slots, self.d_model
        if (not isinstance(memory, ag.Tensor) or memory.shape != (h.shape[0], K, d)):
            raise ValueError(f"Memformer.step: memory must be a Tensor (B={h.shape[0]}, {K}, {d}), "
                             f"got {getattr(memory, 'shape', type(memory).__name__)}")
        for layer in self.layers:
            h = layer(h, memory)
        encodings = self.ln_f(h)
        return self.head(encodings), self.writer(memory, encodings)

    def extra_repr(self):
        return f"vocab={self.vocab}, d_model={self.d_model}, n_slots={self.n_slots}"


def _batch_of(x):
    return (x.shape if hasattr(x, "shape") else np.asarray(x).shape)[0]


def _embed(owner, tok, pos, max_len, x):
    """Shared by the segment models: ids -> token + position embeddings; floats -> + positions."""
    d = tok.embedding_dim
    if isinstance(x, ag.Tensor) and x.dtype.kind == "f":
        if x.ndim != 3 or x.shape[-1] != d:
            raise ValueError(f"{owner}: float input must be (B, T, {d}), got {x.shape}")
        h, T = x, x.shape[1]
    else:
        ids = x.data if isinstance(x, ag.Tensor) else get_xp(tok.weight.data).asarray(x)
        if ids.dtype.kind not in "iu" or ids.ndim != 2:
            raise ValueError(f"{owner}: x_segment must be int tokens (B, T) or floats (B, T, {d}), "
                             f"got dtype {ids.dtype}, shape {ids.shape}")
        check_index_bounds(owner, "x_segment", ids, tok.weight.shape[0])  # the vocabulary
        h, T = tok(ids), ids.shape[1]
    if T > max_len:
        raise ValueError(f"{owner}: segment length {T} exceeds max_len={max_len}")
    return h + pos(get_xp(tok.weight.data).arange(T))
