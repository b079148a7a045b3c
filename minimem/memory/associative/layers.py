r"""The Associative Recurrent Memory Transformer (ARMT) on chapter 50's segment loop.

ARMT (Rodkin et al. 2024) is RMT (:class:`~minimem.memory.RecurrentMemoryTransformer`: the
segment :math:`x_t` read as :math:`[M_t; E(x_t); M_t]`, the last m outputs the new memory
tokens :math:`M_{t+1}`) with an associative matrix :math:`(A^l, z^l)` in every layer l:

.. math:: h^l &\leftarrow h^l + \frac{(A^l_t)^\top \phi(W^l_Q h^l)}
          {(z^l_t)^\top \phi(W^l_Q h^l) + \epsilon} \quad\text{(every position)}, \\
          h^{l+1} &= \mathrm{Block}^l(h^l), \\
          (A^l_{t+1}, z^l_{t+1}) &= \mathrm{write}\big(A^l_t, z^l_t;\
          m_i = h^{l+1}_{\text{last } m \text{ positions}}\big),

with the write of :mod:`minimem.memory.associative.associative` (keys :math:`\phi(W_K m_i)`,
values :math:`W_V m_i`, :math:`\beta_i = \sigma(W_\beta m_i)`), where :math:`\phi` is DPFP
scaled to unit length (``normalize=True``, as in the authors' code: with raw DPFP features a
trained ARMT of chapter 55's size recalls no more pairs than RMT). The memory carried to the next segment is
``(M, ((A^1, z^1), ..., (A^L, z^L)))``: m memory tokens of width d plus, per layer, a
:math:`d_\phi \times d` matrix — a tuple that :func:`~minimem.memory.mrbp` and
:func:`~minimem.memory.bptt` carry as any other memory.
"""
from __future__ import annotations

from ... import autograd as ag
from ...autograd import ops
from ...backend import get_default_dtype, get_rng
from ...checks import check_bool, check_int, check_real
from ...nn import Embedding, LayerNorm, Linear, Module, ModuleList, Parameter, TransformerBlock
from ..delta.feature_maps import feature_map
from ..segment.memformer import SegmentRecurrent, _embed
from .associative import EPS, associative_read, associative_write
from .gated import check_model_sizes


class AssociativeMemory(Module):
    r"""One layer's associative memory: ``read(h, A, z)`` and ``write(m, A, z)``.

    ``d_key``: width of :math:`W_K m` and :math:`W_Q h` before DPFP; the matrix is
    :math:`d_\phi \times d` with :math:`d_\phi = 2\, d_{key}\, \nu`. ``normalize=True``
    (the default) scales every key and query feature vector to unit length,
    :math:`\phi(x) / \lVert \phi(x) \rVert`, as the authors' code does (the paper writes
    :math:`\phi` alone): the size of :math:`W_K m` then changes nothing but the direction of
    the key, and :math:`\gamma = 1 - z^\top k` is exactly the share of a unit key that is new.
    """

    def __init__(self, d_model, d_key, nu=3, eps=EPS, normalize=True, seed=None):
        super().__init__()
        fn = "AssociativeMemory"
        self.d_model = check_int(fn, "d_model", d_model, low=1)
        self.d_key = check_int(fn, "d_key", d_key, low=1)
        self.nu = check_int(fn, "nu", nu, low=1)
        self.eps = check_real(fn, "eps", eps, low=0, low_open=True)
        self.normalize = check_bool(fn, "normalize", normalize)
        self.d_phi = 2 * self.d_key * self.nu
        rng = get_rng(seed)
        self.W_Q = Linear(d_model, d_key, bias=False, seed=rng)
        self.W_K = Linear(d_model, d_key, bias=False, seed=rng)
        self.W_V = Linear(d_model, d_model, bias=False, seed=rng)
        self.W_beta = Linear(d_model, 1, seed=rng)

    def phi(self, x):
        """DPFP features of ``x`` (..., d_key) -> (..., d_phi), of unit length if normalize."""
        f = feature_map(x, "dpfp", nu=self.nu)
        if not self.normalize:
            return f
        # the 1e-12 keeps an all-zero feature vector (a rare DPFP output) at 0, not 0/0
        return f / ops.sqrt((f * f).sum(axis=-1, keepdims=True) + 1e-12)

    def empty(self, batch, dtype):
        """:math:`A_0 = 0` (B, d_phi, d) and :math:`z_0 = 0` (B, d_phi)."""
        return (ag.zeros(batch, self.d_phi, self.d_model, dtype=dtype),
                ag.zeros(batch, self.d_phi, dtype=dtype))

    def read(self, h, A, z):
        """What the memory returns to every position of ``h`` (B, S, d): (B, S, d)."""
        return associative_read(A, z, self.phi(self.W_Q(h)), self.eps)

    def write(self, m, A, z):
        """The memory after the memory tokens ``m`` (B, n, d) wrote: ``(A_new, z_new)``."""
        beta = ops.sigmoid(self.W_beta(m))[..., 0]
        return associative_write(A, z, self.phi(self.W_K(m)), self.W_V(m), beta, self.eps)

    def extra_repr(self):
        return (f"d_model={self.d_model}, d_key={self.d_key}, nu={self.nu}, d_phi={self.d_phi}, "
                f"normalize={self.normalize}")


class ARMT(SegmentRecurrent):
    """RMT's memory tokens plus an associative matrix per layer (module docstring).

    ``init_memory(batch) -> (M0 (B, m, d), ((A, z),) * n_layers)`` with learned tokens and
    empty matrices; ``step(x_segment, memory) -> (logits (B, T, vocab), new_memory)``. Train it
    through time with :func:`~minimem.memory.mrbp` or :func:`~minimem.memory.bptt`.
    """

    def __init__(self, vocab, d_model, n_layers, n_heads, n_mem, max_len, d_key=None, nu=3,
                 d_ff=None, dropout=0.0, normalize=True, seed=None):
        super().__init__()
        fn = "ARMT"
        for name, v in (("vocab", vocab), ("d_model", d_model), ("n_layers", n_layers),
                        ("n_heads", n_heads), ("n_mem", n_mem), ("max_len", max_len)):
            check_int(fn, name, v, low=1)
        check_model_sizes(fn, d_model, n_heads, d_ff)
        check_bool(fn, "normalize", normalize)
        rng = get_rng(seed)
        self.vocab, self.d_model, self.n_mem, self.max_len = vocab, d_model, n_mem, max_len
        self.tok = Embedding(vocab, d_model, seed=rng, std=0.02)
        self.pos = Embedding(max_len, d_model, seed=rng, std=0.02)
        self.blocks = ModuleList([
            TransformerBlock(d_model, n_heads, d_ff, dropout, True, layer=i, seed=rng)
            for i in range(n_layers)
        ])
        self.assoc = ModuleList([AssociativeMemory(d_model, d_key or d_model // 2, nu,
                                                   normalize=normalize, seed=rng)
                                 for _ in range(n_layers)])
        self.ln_f = LayerNorm(d_model)
        self.head = Linear(d_model, vocab, bias=False, seed=rng)
        init = rng.standard_normal((n_mem, d_model)).astype(get_default_dtype())
        self.mem_init = Parameter(init)

    def init_memory(self, batch):
        batch = check_int("ARMT.init_memory", "batch", batch, low=1)
        tokens = ops.broadcast_to(self.mem_init, (batch, self.n_mem, self.d_model))
        dtype = self.mem_init.dtype
        return tokens, tuple(a.empty(batch, dtype) for a in self.assoc)

    def _check_memory(self, memory, B):
        m, d = self.n_mem, self.d_model
        ok = (isinstance(memory, tuple) and len(memory) == 2
              and isinstance(memory[0], ag.Tensor) and memory[0].shape == (B, m, d)
              and isinstance(memory[1], tuple) and len(memory[1]) == len(self.assoc))
        if ok:
            for a, layer in zip(memory[1], self.assoc):
                ok = ok and isinstance(a, tuple) and len(a) == 2 and all(
                    isinstance(t, ag.Tensor) for t in a) and a[0].shape == (
                    B, layer.d_phi, d) and a[1].shape == (B, layer.d_phi)
        if not ok:
            raise ValueError(f"ARMT.step: memory must be (tokens (B={B}, {m}, {d}), one "
                             f"(A (B, d_phi, {d}), z (B, d_phi)) per layer ({len(self.assoc)})) "
                             f"as init_memory gives, got {_describe(memory)}")

    def step(self, x_segment, memory):
        h = _embed("ARMT", self.tok, self.pos, self.max_len, x_segment)
        B, T, _ = h.shape
        self._check_memory(memory, B)
        tokens, matrices = memory
        m = self.n_mem
        seq = ops.concatenate([tokens, h, tokens], axis=1)
        new_matrices = []
        for block, assoc, (A, z) in zip(self.blocks, self.assoc, matrices):
            seq = block(seq + assoc.read(seq, A, z))
            new_matrices.append(assoc.write(seq[:, m + T:], A, z))
        logits = self.head(self.ln_f(seq[:, m:m + T]))
        return logits, (seq[:, m + T:], tuple(new_matrices))

    def extra_repr(self):
        return f"vocab={self.vocab}, d_model={self.d_model}, n_mem={self.n_mem}"


def _describe(memory):
    if isinstance(memory, ag.Tensor):
        return str(memory.shape)
    if isinstance(memory, (tuple, list)):
        return "(" + ", ".join(_describe(m) for m in memory) + ")"
    return type(memory).__name__

