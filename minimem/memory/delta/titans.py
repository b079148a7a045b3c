r"""Titans-style neural memory: a small network trained at test time by "surprise".

The memory is a function :math:`\mathcal{M}` with parameters :math:`M` (per batch element and
head): **linear**, :math:`\mathcal{M}(k) = M^\top k` with :math:`M \in \mathbb{R}^{d_k \times
d_v}`, or a **2-layer MLP**, :math:`\mathcal{M}(k) = W_2^\top\, \mathrm{SiLU}(W_1^\top k)`.
Each token is one step of gradient descent with momentum and weight decay on the
associative loss :math:`\ell(M; k_t, v_t) = \|\mathcal{M}(k_t) - v_t\|^2`:

.. math::
    \Sigma_t &= \eta_t\, \Sigma_{t-1} - \theta_t\, \nabla_M \ell(M_{t-1}; k_t, v_t), \\
    M_t &= (1 - \alpha_t)\, M_{t-1} + \Sigma_t, \qquad o_t = \mathcal{M}_t(q_t),

(:math:`\Sigma` is the paper's "surprise" :math:`S`, renamed so it is not confused with the
delta rule's state). For the linear memory :math:`\nabla_M \ell = 2 k_t (M^\top k_t - v_t)^\top`;
for the MLP, with :math:`z = W_1^\top k`, :math:`h = \mathrm{SiLU}(z)`,
:math:`e = 2(W_2^\top h - v)`: :math:`\nabla_{W_2} = h e^\top`,
:math:`\nabla_{W_1} = k\, [(W_2 e) \odot \mathrm{SiLU}'(z)]^\top`.

**Linear memory without momentum is the gated delta rule.** With :math:`\eta = 0`,
:math:`M_t = (1-\alpha_t) M_{t-1} + 2\theta_t k_t (v_t - M_{t-1}^\top k_t)^\top`; the gated
delta rule :math:`S_t = a_t S_{t-1} + \beta_t k_t (v'_t - a_t S_{t-1}^\top k_t)^\top` gives the
same recurrence for

.. math:: a_t = e^{g_t} = 1 - \alpha_t, \qquad \beta_t = \frac{2\theta_t}{1 - \alpha_t},
          \qquad v'_t = (1 - \alpha_t)\, v_t

(and read scale 1). :func:`titans_as_gated_delta` runs exactly this mapping.

Everything is written with engine ops (the inner gradient in closed form), so the outer
training differentiates through the test-time updates (second order) to learn the
projections, :math:`\theta, \eta, \alpha` and the initial memory.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ...autograd import ops
from ...autograd.tensor import Tensor
from ...backend import get_default_dtype, get_rng, get_xp
from ...nn.attention import merge_heads, split_heads
from ...nn.layers import Linear
from ...nn.module import Module, Parameter
from .delta_rule import gated_delta_rule

MEMORIES = ("linear", "mlp")


def _expand(x):
    """(B, H) -> (B, H, 1, 1) to scale a per-head matrix."""
    return ops.expand_dims(ops.expand_dims(x, -1), -1)


def _read(memory, params, x):
    """M(x) for x (B, H, D_k); returns (B, H, D_v)."""
    if memory == "linear":
        return ops.einsum("bhij,bhi->bhj", params[0], x)
    W1, W2 = params
    h = ops.silu(ops.einsum("bhik,bhi->bhk", W1, x))
    return ops.einsum("bhkj,bhk->bhj", W2, h)


def memory_gradient(memory, params, k_t, v_t):
    r"""Closed-form :math:`\nabla_M \|\mathcal{M}(k_t) - v_t\|^2` for every batch and head."""
    if memory == "linear":
        (M,) = params
        e = 2 * (ops.einsum("bhij,bhi->bhj", M, k_t) - v_t)
        return (ops.expand_dims(k_t, -1) * ops.expand_dims(e, -2),)
    W1, W2 = params
    z = ops.einsum("bhik,bhi->bhk", W1, k_t)
    s = ops.sigmoid(z)
    h = z * s
    e = 2 * (ops.einsum("bhkj,bhk->bhj", W2, h) - v_t)
    dz = ops.einsum("bhkj,bhj->bhk", W2, e) * (s * (1 + z * (1 - s)))   # SiLU'(z)
    return ops.expand_dims(k_t, -1) * ops.expand_dims(dz, -2), \
        ops.expand_dims(h, -1) * ops.expand_dims(e, -2)


def _check(fn, q, k, v, theta, eta, alpha, params0, memory):
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, Tensor) or x.ndim != 4:
            raise ValueError(f"{fn}: {name} must be a Tensor (B, H, T, D), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
    if k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"{fn}: expected q, k (B, H, T, D_k) and v (B, H, T, D_v); got "
                         f"{q.shape}, {k.shape}, {v.shape}")
    for name, x in (("theta", theta), ("eta", eta), ("alpha", alpha)):
        if not isinstance(x, Tensor) or x.shape != q.shape[:3]:
            raise ValueError(f"{fn}: {name} must be a Tensor of shape (B, H, T) = "
                             f"{q.shape[:3]}, got {getattr(x, 'shape', type(x).__name__)}")
    if memory not in MEMORIES:
        raise ValueError(f"{fn}: memory must be one of {MEMORIES}, got {memory!r}")
    n = 1 if memory == "linear" else 2
    if not isinstance(params0, (tuple, list)) or len(params0) != n:
        raise ValueError(f"{fn}: params0 must be a tuple of {n} Tensor(s) for memory="
                         f"{memory!r}, got {type(params0).__name__}")


def neural_memory(q, k, v, theta, eta, alpha, params0, memory="linear"):
    r"""Run the surprise recurrence; returns ``(o (B,H,T,D_v), final params tuple)``.

    ``params0``: ``(M,)`` with ``M (B, H, D_k, D_v)`` for the linear memory, or ``(W1, W2)``
    with ``W1 (B, H, D_k, D_h)``, ``W2 (B, H, D_h, D_v)`` for the MLP (any shape that
    broadcasts, e.g. ``(1, H, ...)``). ``theta`` (step), ``eta`` (momentum), ``alpha``
    (forgetting) are ``(B, H, T)``.
    """
    _check("neural_memory", q, k, v, theta, eta, alpha, params0, memory)
    params = tuple(params0)
    surprise = None
    outs = []
    for t in range(q.shape[2]):
        grads = memory_gradient(memory, params, k[:, :, t], v[:, :, t])
        th, et, al = (_expand(x[:, :, t]) for x in (theta, eta, alpha))
        if surprise is None:  # Sigma_0 = 0
            surprise = tuple(-th * gr for gr in grads)
        else:
            surprise = tuple(et * s - th * gr for s, gr in zip(surprise, grads))
        params = tuple((1 - al) * p + s for p, s in zip(params, surprise))
        outs.append(_read(memory, params, q[:, :, t]))
    if not outs:
        return Tensor(get_xp(q.data).zeros(v.shape, dtype=q.dtype)), params
    return ops.stack(outs, axis=2), params


def titans_as_gated_delta(q, k, v, theta, alpha, initial_state=None, mode="recurrent",
                          chunk_size=None, checkpoint=None):
    """The linear memory with ``eta = 0`` computed by :func:`gated_delta_rule` (see above);
    ``mode``, ``chunk_size`` and ``checkpoint`` are passed to it unchanged."""
    keep = 1 - alpha
    return gated_delta_rule(q, k, v * ops.expand_dims(keep, -1), 2 * theta / keep,
                            ops.log(keep), scale=1.0, initial_state=initial_state,
                            output_final_state=True, mode=mode, chunk_size=chunk_size,
                            checkpoint=checkpoint)


class NeuralMemory(Module):
    r"""A mixer layer whose memory learns at test time (``(B, T, d_model) -> same``).

    Per head: :math:`q, k` L2-normalized projections, :math:`v` a projection,
    :math:`\theta_t = \theta_{\max}\sigma(w_\theta^\top x_t)`, :math:`\eta_t =
    \sigma(w_\eta^\top x_t)`, :math:`\alpha_t = \sigma(w_\alpha^\top x_t)`; the initial memory
    parameters are learned (shared by the batch). ``memory="linear"`` or ``"mlp"`` (hidden
    width ``hidden``, default ``2 * d_head``).
    """

    def __init__(self, d_model, n_heads=1, memory="mlp", hidden=None, theta_max=1.0,
                 seed=None):
        super().__init__()
        if memory not in MEMORIES:
            raise ValueError(f"NeuralMemory: memory must be one of {MEMORIES}, got {memory!r}")
        if not isinstance(n_heads, numbers.Integral) or n_heads < 1 or d_model % n_heads:
            raise ValueError(f"NeuralMemory: d_model ({d_model}) must be divisible by n_heads "
                             f"({n_heads})")
        rng, dt = get_rng(seed), get_default_dtype()
        self.d_model, self.n_heads, self.memory = d_model, n_heads, memory
        self.d_head = dh = d_model // n_heads
        self.theta_max = float(theta_max)
        for name in ("W_q", "W_k", "W_v", "W_o"):
            setattr(self, name, Linear(d_model, d_model, bias=False, seed=rng))
        self.W_gates = Linear(d_model, 3 * n_heads, bias=True, seed=rng)   # theta, eta, alpha
        if memory == "linear":
            self.M0 = Parameter(np.zeros((1, n_heads, dh, dh), dtype=dt))
        else:
            self.hidden = hidden or 2 * dh
            self.W1_0 = Parameter((rng.standard_normal((1, n_heads, dh, self.hidden))
                                   / math.sqrt(dh)).astype(dt))
            self.W2_0 = Parameter((rng.standard_normal((1, n_heads, self.hidden, dh))
                                   / math.sqrt(self.hidden)).astype(dt))

    def forward(self, x, mask=None):
        if mask is not None:
            raise ValueError("NeuralMemory: the memory is causal by construction; no mask")
        if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"NeuralMemory: expected x of shape (B, T, {self.d_model}), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        H = self.n_heads
        q = ops.l2_normalize(split_heads(self.W_q(x), H), axis=-1)
        k = ops.l2_normalize(split_heads(self.W_k(x), H), axis=-1)
        v = split_heads(self.W_v(x), H)
        gates = ops.sigmoid(ops.transpose(self.W_gates(x), (0, 2, 1)))     # (B, 3H, T)
        theta, eta, alpha = (gates[:, i * H:(i + 1) * H] for i in range(3))
        params0 = (self.M0,) if self.memory == "linear" else (self.W1_0, self.W2_0)
        o, _ = neural_memory(q, k, v, theta * self.theta_max, eta, alpha, params0, self.memory)
        return self.W_o(merge_heads(o))

    def extra_repr(self):
        return f"d_model={self.d_model}, n_heads={self.n_heads}, memory={self.memory!r}"
