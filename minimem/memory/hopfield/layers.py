r"""Hopfield layers: the continuous Hopfield update with learned projections, as ``Module`` objects.

Per head, the state patterns R (B, T, d_model), the stored patterns Y (B, S, d_model) and the
projection patterns V (B, S, d_model; default Y) are projected,

.. math:: \xi^{(0)} = R W_Q^\top + b_Q, \qquad K = Y W_K^\top + b_K, \qquad
          \tilde V = V W_V^\top + b_V ,

the state is updated in the key space and the last association matrix reads the values:

.. math:: A^{(t)} &= \operatorname{softmax}\big(\beta\, \xi^{(t-1)} K^\top\big), \qquad
          \xi^{(t)} = A^{(t)} K \quad (t < T), \\
          Z &= A^{(T)} \tilde V, \qquad \text{out} = Z W_O^\top + b_O .

**Number of softmaxes.** ``update_steps=T`` computes exactly T softmaxes per head and forward
call when ``tol=0``: T - 1 retrieval updates :math:`\xi \leftarrow A K` followed by the one
softmax whose weights read the values (so T = 1 is one softmax, plain attention). With
``tol > 0`` it stops at the first t >= 2 where
:math:`\max |A^{(t)} - A^{(t-1)}| < \text{tol}` and reads the values with :math:`A^{(t)}`: then
t <= T softmaxes. ``last_n_softmax`` records the count of the last forward call.

With T = 1 and :math:`\beta = 1/\sqrt{d_{head}}` (the default) the layer is
``minimem.nn.MultiHeadAttention(causal=False)``: same parameter names (W_q, W_k, W_v, W_o), same
initialisation for the same seed, same output.

* ``HopfieldLayer``: learned stored patterns (n_stored, d_model); the input is the state.
* ``HopfieldPooling``: learned state patterns (n_queries, d_model) pool an input set
  (B, S, d_model) into (B, n_queries, d_model).
"""
from __future__ import annotations

import math

from ... import autograd as ag
from ...autograd import ops
from ...backend import get_default_dtype, get_rng
from ...checks import check_int, check_real
from ...nn.attention import merge_heads, split_heads
from ...nn.layers import Linear
from ...nn.module import Module, Parameter


def _check_hopfield_args(cls, d_model, n_heads, beta, update_steps, tol):
    """The constructor arguments every Hopfield layer shares; errors name ``cls``."""
    check_int(cls, "d_model", d_model, low=1)
    check_int(cls, "n_heads", n_heads, low=1)
    if d_model % n_heads:
        raise ValueError(f"{cls}: d_model ({d_model}) must be divisible by n_heads ({n_heads})")
    if beta is not None:
        check_real(cls, "beta", beta, low=0, low_open=True)
    check_int(cls, "update_steps", update_steps, low=1)
    check_real(cls, "tol", tol, low=0)


def _check_patterns(cls, name, x, d_model, batch=None):
    if not isinstance(x, ag.Tensor):
        raise TypeError(f"{cls}: {name} must be a Tensor, got {type(x).__name__}")
    if x.ndim != 3 or x.shape[-1] != d_model or (batch is not None and x.shape[0] != batch):
        b = "B" if batch is None else f"B={batch}"
        raise ValueError(f"{cls}: {name} must have shape ({b}, length, {d_model}), got {x.shape}")


class Hopfield(Module):
    """The Hopfield association with learned projections (see the module docstring).

    ``forward(state, stored=None, projection=None, return_weights=False)``: state patterns
    (B, T, d_model) are updated against stored patterns (B, S, d_model; default: the state,
    i.e. self-association) and read out through projection patterns (default: stored).
    """

    def __init__(self, d_model, n_heads=1, beta=None, update_steps=1, tol=0.0, bias=True,
                 seed=None):
        super().__init__()
        _check_hopfield_args("Hopfield", d_model, n_heads, beta, update_steps, tol)
        self.d_model, self.n_heads = d_model, n_heads
        self.d_head = d_model // n_heads
        self.beta = 1 / math.sqrt(self.d_head) if beta is None else float(beta)
        if not self.beta > 0:
            raise ValueError(f"Hopfield: beta must be positive, got {beta!r}")
        self.update_steps, self.tol = int(update_steps), float(tol)
        rng = get_rng(seed)  # the same draws, in the same order, as MultiHeadAttention
        self.W_q = Linear(d_model, d_model, bias=bias, seed=rng)
        self.W_k = Linear(d_model, d_model, bias=bias, seed=rng)
        self.W_v = Linear(d_model, d_model, bias=bias, seed=rng)
        self.W_o = Linear(d_model, d_model, bias=bias, seed=rng)
        self.last_n_softmax = 0
        self.last_weights = None

    def associate(self, xi, K):
        """Per-head update loop: the final association matrix A (B, H, T, S)."""
        A = ops.softmax(self.beta * (xi @ ops.swapaxes(K, -1, -2)), axis=-1)
        n = 1
        for _ in range(self.update_steps - 1):
            xi = A @ K  # one Hopfield update of the state, in the key space
            A_new = ops.softmax(self.beta * (xi @ ops.swapaxes(K, -1, -2)), axis=-1)
            n += 1
            done = self.tol > 0 and float(abs(A_new.data - A.data).max()) < self.tol
            A = A_new
            if done:
                break
        self.last_n_softmax = n
        return A

    def forward(self, state, stored=None, projection=None, return_weights=False):
        _check_patterns("Hopfield", "state", state, self.d_model)
        B = state.shape[0]
        stored = state if stored is None else stored
        _check_patterns("Hopfield", "stored", stored, self.d_model, B)
        projection = stored if projection is None else projection
        _check_patterns("Hopfield", "projection", projection, self.d_model, B)
        if projection.shape[1] != stored.shape[1]:
            raise ValueError(f"Hopfield: projection must have as many patterns as stored "
                             f"({stored.shape[1]}), got {projection.shape[1]}")
        xi = split_heads(self.W_q(state), self.n_heads)
        K = split_heads(self.W_k(stored), self.n_heads)
        V = split_heads(self.W_v(projection), self.n_heads)
        A = self.associate(xi, K)
        self.last_weights = A.detach()
        out = self.W_o(merge_heads(A @ V))
        return (out, A) if return_weights else out

    def extra_repr(self):
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, beta={self.beta:.4g}, "
                f"update_steps={self.update_steps}, tol={self.tol:g}")


def _learned_patterns(rng, n, d_model):
    dt = get_default_dtype()
    return Parameter((rng.standard_normal((n, d_model)) / math.sqrt(d_model)).astype(dt))


def _tile(p, B):
    """(n, d) parameter -> (B, n, d); the engine sums the gradient over the batch."""
    return ops.broadcast_to(ops.reshape(p, (1,) + p.shape), (B,) + p.shape)


class HopfieldLayer(Module):
    """Learned stored patterns: ``forward(x)`` maps states (B, T, d_model) to (B, T, d_model).

    A trainable key-value memory of ``n_stored`` slots, read by ``update_steps`` updates.
    """

    def __init__(self, d_model, n_stored, n_heads=1, beta=None, update_steps=1, tol=0.0,
                 seed=None):
        super().__init__()
        check_int("HopfieldLayer", "n_stored", n_stored, low=1)
        _check_hopfield_args("HopfieldLayer", d_model, n_heads, beta, update_steps, tol)
        rng = get_rng(seed)
        self.hopfield = Hopfield(d_model, n_heads, beta, update_steps, tol, seed=rng)
        self.stored = _learned_patterns(rng, n_stored, d_model)

    def forward(self, x, return_weights=False):
        _check_patterns("HopfieldLayer", "x", x, self.hopfield.d_model)
        return self.hopfield(x, _tile(self.stored, x.shape[0]), return_weights=return_weights)

    def extra_repr(self):
        return f"n_stored={self.stored.shape[0]}"


class HopfieldPooling(Module):
    """Learned state patterns pool a set: ``forward(x)`` (B, S, d) -> (B, n_queries, d)."""

    def __init__(self, d_model, n_queries=1, n_heads=1, beta=None, update_steps=1, tol=0.0,
                 seed=None):
        super().__init__()
        check_int("HopfieldPooling", "n_queries", n_queries, low=1)
        _check_hopfield_args("HopfieldPooling", d_model, n_heads, beta, update_steps, tol)
        rng = get_rng(seed)
        self.hopfield = Hopfield(d_model, n_heads, beta, update_steps, tol, seed=rng)
        self.queries = _learned_patterns(rng, n_queries, d_model)

    def forward(self, x, return_weights=False):
        _check_patterns("HopfieldPooling", "x", x, self.hopfield.d_model)
        return self.hopfield(_tile(self.queries, x.shape[0]), x, return_weights=return_weights)

    def extra_repr(self):
        return f"n_queries={self.queries.shape[0]}"
