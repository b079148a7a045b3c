r"""Titans' neural memory: a small network trained at test time by "surprise".

The memory is a function :math:`\mathcal{M}` with parameters :math:`M` (per batch element and
head): **linear**, :math:`\mathcal{M}(k) = M^\top k` with :math:`M \in \mathbb{R}^{d_k \times
d_v}`, or a **2-layer MLP**, :math:`\mathcal{M}(k) = W_2^\top\, \mathrm{SiLU}(W_1^\top k)`.
Each token is one step of gradient descent with momentum and weight decay on the
associative loss :math:`\ell(M; k_t, v_t) = \|\mathcal{M}(k_t) - v_t\|^2`:

.. math::
    \Sigma_t &= \eta_t\, \Sigma_{t-1} - \theta_t\, \nabla_M \ell(M_{t-1}; k_t, v_t), \\
    M_t &= (1 - \alpha_t)\, M_{t-1} + \Sigma_t, \qquad o_t = \mathcal{M}_t(q_t),

with :math:`\Sigma_0 = 0` (:math:`\Sigma` is the paper's "surprise" :math:`S`, renamed so it
is not confused with the delta rule's state). For the linear memory
:math:`\nabla_M \ell = 2 k_t (M^\top k_t - v_t)^\top`; for the MLP, with :math:`z = W_1^\top k`,
:math:`h = \mathrm{SiLU}(z)`, :math:`e = 2(W_2^\top h - v)`: :math:`\nabla_{W_2} = h e^\top`,
:math:`\nabla_{W_1} = k\, [(W_2 e) \odot \mathrm{SiLU}'(z)]^\top`.

**The chunked (parallel) form.** Split the tokens into chunks of :math:`C`. Inside the chunk
that starts at :math:`t_0`, every inner gradient is taken at the memory left by the previous
chunk, :math:`g_t = \nabla_M \ell(M_{t_0-1}; k_t, v_t)` (mini-batch gradient descent: the
gradients of a chunk no longer depend on each other, so they are computed at once). The two
recurrences that remain are linear; with :math:`D^\eta_{ts} = \prod_{r=s+1}^{t} \eta_r` and
:math:`D^{\alpha}_{ts} = \prod_{r=s+1}^{t} (1-\alpha_r)` (lower triangular, :math:`D_{tt} = 1`)

.. math::
    \Sigma_t = D^\eta_{t, t_0-1}\, \Sigma_{t_0-1} - \sum_{s=t_0}^{t} D^\eta_{ts}\, \theta_s g_s,
    \qquad M_t = D^{\alpha}_{t, t_0-1}\, M_{t_0-1} + \sum_{s=t_0}^{t} D^{\alpha}_{ts}\,\Sigma_s,

two matrix products per chunk. :math:`D = (I - L)^{-1}` for the matrix :math:`L` holding the
factors on its first sub-diagonal (the carried-in state is row 0), computed by
:func:`~minimem.memory.delta.unit_lower_inverse`. ``chunk_size=1`` is the token rule above.

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

import numpy as np

from ...autograd import ops
from ...autograd.tensor import Tensor
from ...backend import get_xp
from ...checks import (check_choice, check_finite, check_float_tensor, check_int,
                      check_shape, describe)
from ..delta.chunkwise import unit_lower_inverse
from ..delta.delta_rule import gated_delta_rule
from ..delta.recurrent import mode_settings

MEMORIES = ("linear", "mlp")


def _expand(x):
    """(B, H, ...) -> (B, H, ..., 1, 1): a gate that scales a matrix per head (and token)."""
    return ops.expand_dims(ops.expand_dims(x, -1), -1)


def read_memory(memory, params, x):
    r""":math:`\mathcal{M}(x)` for ``x (..., D_k)`` and weights ``(..., D_k, D_v)`` (the
    leading axes broadcast: one memory for all tokens, or one per token); ``(..., D_v)``."""
    _check_weights("read_memory", memory, params, x=x)
    return _read(memory, params, x)


def _check_weights(fn, memory, params, **vectors):
    """``memory`` a kind, ``params`` its float Tensors chained D_k -> (D_h ->) D_v, and each
    of ``vectors`` (name -> Tensor) float with the size its role needs on its last axis."""
    check_choice(fn, "memory", memory, MEMORIES)
    n = 1 if memory == "linear" else 2
    if not isinstance(params, (tuple, list)) or len(params) != n:
        raise TypeError(f"{fn}: params must be a tuple of {n} Tensor(s) for memory="
                        f"{memory!r}, got {describe(params)}")
    for i, p in enumerate(params):
        check_float_tensor(fn, f"params[{i}]", p, float16=False)
        if p.ndim < 2:
            raise ValueError(f"{fn}: params[{i}] must have shape (..., D_in, D_out), got "
                             f"{tuple(p.shape)}")
    if n == 2 and params[0].shape[-1] != params[1].shape[-2]:
        raise ValueError(f"{fn}: params[1] must have D_h = {params[0].shape[-1]} rows, got "
                         f"shape {tuple(params[1].shape)}")
    sizes = {"x": params[0].shape[-2], "k_t": params[0].shape[-2],
             "v_t": params[-1].shape[-1]}
    lead = [tuple(p.shape[:-2]) for p in params]
    for name, x in vectors.items():
        check_float_tensor(fn, name, x, float16=False)
        if x.ndim < 1 or x.shape[-1] != sizes[name]:
            raise ValueError(f"{fn}: {name} must have shape (..., {sizes[name]}) to match "
                             f"params, got {tuple(x.shape)}")
        lead.append(tuple(x.shape[:-1]))
    try:
        np.broadcast_shapes(*lead)
    except ValueError:
        raise ValueError(f"{fn}: the leading axes of params and of "
                         f"{', '.join(vectors)} must broadcast, got {lead}") from None


def _read(memory, params, x):
    if memory == "linear":
        return ops.einsum("...ij,...i->...j", params[0], x)
    W1, W2 = params
    h = ops.silu(ops.einsum("...ik,...i->...k", W1, x))
    return ops.einsum("...kj,...k->...j", W2, h)


def memory_gradient(memory, params, k_t, v_t):
    r"""Closed-form :math:`\nabla_M \|\mathcal{M}(k_t) - v_t\|^2`, one per leading index
    (``k_t (..., D_k)``, ``v_t (..., D_v)``; the weights broadcast against them)."""
    _check_weights("memory_gradient", memory, params, k_t=k_t, v_t=v_t)
    return _gradient(memory, params, k_t, v_t)


def _gradient(memory, params, k_t, v_t):
    def outer(a, b):
        return ops.expand_dims(a, -1) * ops.expand_dims(b, -2)

    if memory == "linear":
        e = 2 * (_read(memory, params, k_t) - v_t)
        return (outer(k_t, e),)
    W1, W2 = params
    z = ops.einsum("...ik,...i->...k", W1, k_t)
    s = ops.sigmoid(z)
    h = z * s
    e = 2 * (ops.einsum("...kj,...k->...j", W2, h) - v_t)
    dz = ops.einsum("...kj,...j->...k", W2, e) * (s * (1 + z * (1 - s)))   # SiLU'(z)
    return outer(k_t, dz), outer(h, e)


def check_memory_args(fn, q, k, v, gates, params0, memory, chunk_size):
    """The shared contract of the test-time memories; returns ``chunk_size`` as an int."""
    check_tokens_and_gates(fn, q, k, v, gates)
    check_choice(fn, "memory", memory, MEMORIES)
    _check_params0(fn, q, k, v, params0, memory)
    return check_int(fn, "chunk_size", chunk_size, low=1)


def check_tokens_and_gates(fn, q, k, v, gates):
    """q, k, v float (B, H, T, D) Tensors that agree; each gate a finite float (B, H, T)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_float_tensor(fn, name, x, ndim=4, float16=False)
    check_shape(fn, "k", k, q.shape, "B, H, T, D_k")
    check_shape(fn, "v", v, q.shape[:3] + (None,), "B, H, T, D_v")
    for name, x in gates.items():
        check_float_tensor(fn, name, x, float16=False)
        check_shape(fn, name, x, q.shape[:3], "B, H, T")
        check_finite(fn, name, x)  # a NaN gate would spread NaN through every later token


def _check_params0(fn, q, k, v, params0, memory):
    n = 1 if memory == "linear" else 2
    if not isinstance(params0, (tuple, list)):
        raise TypeError(f"{fn}: params0 must be a tuple of {n} Tensor(s) for memory="
                        f"{memory!r}, got {type(params0).__name__}")
    if len(params0) != n:
        raise ValueError(f"{fn}: params0 must be a tuple of {n} Tensor(s) for memory="
                         f"{memory!r}, got {len(params0)}")
    B, H = q.shape[:2]
    for i, p in enumerate(params0):
        check_float_tensor(fn, f"params0[{i}]", p, ndim=4, float16=False)
        if p.shape[0] not in (1, B) or p.shape[1] != H:
            raise ValueError(f"{fn}: params0[{i}] must have batch and head axes (1 or B, H) = "
                             f"(1 or {B}, {H}), got {tuple(p.shape)}")
    shapes = [tuple(p.shape) for p in params0]
    d_in, d_out = k.shape[-1], v.shape[-1]
    chain = [d_in] + [s[-1] for s in shapes]
    if any(s[-2] != c for s, c in zip(shapes, chain)) or chain[-1] != d_out:
        raise ValueError(f"{fn}: params0 must map D_k = {d_in} to D_v = {d_out} (shapes "
                         f"(B, H, D_k, D_v) or (B, H, D_k, D_h), (B, H, D_h, D_v)), got "
                         f"{shapes}")


def neural_memory_reference(q, k, v, theta, eta, alpha, params0, memory="linear",
                            chunk_size=1):
    """The plain token loop; with ``chunk_size > 1`` each gradient is taken at the memory
    left by the previous chunk (the definition the chunked form computes). Returns
    ``(o, final params)``."""
    C = check_memory_args("neural_memory_reference", q, k, v,
                          {"theta": theta, "eta": eta, "alpha": alpha}, params0, memory,
                          chunk_size)
    params = tuple(params0)
    surprise = None
    outs = []
    for t in range(q.shape[2]):
        if t % C == 0:
            base = params   # the memory the chunk's gradients are taken at
        grads = _gradient(memory, base, k[:, :, t], v[:, :, t])
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


def _subdiagonal(x):
    r""":math:`(I - L)^{-1}` for :math:`L` with ``x (B, H, c)`` on its first sub-diagonal:
    entry ``(i, j)`` is :math:`\prod_{r=j}^{i-1} x_r` (``(B, H, c+1, c+1)``, row 0 = carry)."""
    B, H, c = x.shape
    xp = get_xp(x.data)
    shift = xp.eye(c + 1, k=-1, dtype=x.dtype)                  # ones at (i, i - 1)
    padded = ops.concatenate([Tensor(xp.zeros((B, H, 1), dtype=x.dtype)), x], axis=-1)
    return unit_lower_inverse(-(ops.expand_dims(padded, -1) * shift))


def _scan(D, first, rest):
    """Rows ``D @ [first; rest]`` for a state ``first (B, H, ...)`` and per-token terms
    ``rest (B, H, c, ...)``: the whole linear recurrence of a chunk in one product."""
    stacked = ops.concatenate([ops.expand_dims(first, 2), rest], axis=2)
    return ops.einsum("bhij,bhj...->bhi...", D, stacked)


def run_chunks(q, v, theta, eta, alpha, params0, memory, chunk_size, chunk_gradients,
               optimizer="momentum", orthogonalize=None):
    r"""The chunked engine shared by :func:`neural_memory` and ATLAS's ``omega_memory``.

    ``chunk_gradients(base, t0, t1)`` returns the gradients of tokens ``t0 .. t1-1`` taken at
    the weights ``base`` (each ``(B, H, c, ...)``). ``optimizer="momentum"``:
    :math:`\Sigma_t = \eta_t \Sigma_{t-1} - \theta_t g_t`, :math:`M_t = (1-\alpha_t) M_{t-1} +
    \Sigma_t`; ``"muon"``: :math:`\Sigma_t = \eta_t \Sigma_{t-1} + g_t`, :math:`M_t =
    (1-\alpha_t) M_{t-1} - \theta_t\, \mathrm{orthogonalize}(\Sigma_t)`. Reads ``q`` (the
    features already applied); returns ``(o, final params)``.
    """
    T = q.shape[2]
    xp = get_xp(q.data)
    params = tuple(params0)
    shape = v.shape[:2]
    params = tuple(ops.broadcast_to(p, shape + p.shape[2:]) for p in params)  # (B, H, ...)
    surprise = tuple(Tensor(xp.zeros(p.shape, dtype=q.dtype)) for p in params)   # Sigma_0 = 0
    outs = []
    for t0 in range(0, T, chunk_size):
        t1 = min(t0 + chunk_size, T)
        th, et, al = (x[:, :, t0:t1] for x in (theta, eta, alpha))
        grads = chunk_gradients(params, t0, t1)
        D_eta, D_keep = _subdiagonal(et), _subdiagonal(1 - al)
        scale = ops.expand_dims(ops.expand_dims(th, -1), -1)       # (B, H, c, 1, 1)
        sign = -scale if optimizer == "momentum" else 1.0
        sigmas = [_scan(D_eta, s, sign * g)[:, :, 1:] for s, g in zip(surprise, grads)]
        if optimizer == "momentum":
            steps = sigmas
        else:
            steps = [-scale * orthogonalize(s) for s in sigmas]
        traj = [_scan(D_keep, p, st)[:, :, 1:] for p, st in zip(params, steps)]
        outs.append(_read(memory, traj, q[:, :, t0:t1]))
        surprise = tuple(s[:, :, -1] for s in sigmas)
        params = tuple(m[:, :, -1] for m in traj)
    if not outs:
        return Tensor(xp.zeros(v.shape, dtype=q.dtype)), params
    return (outs[0] if len(outs) == 1 else ops.concatenate(outs, axis=2)), params


def neural_memory(q, k, v, theta, eta, alpha, params0, memory="linear", chunk_size=1):
    r"""Run the surprise rule in chunks of ``chunk_size`` tokens (the parallel form; ``1`` is
    the token-by-token rule); returns ``(o (B,H,T,D_v), final params tuple)``.

    ``params0``: ``(M,)`` with ``M (B, H, D_k, D_v)`` for the linear memory, or ``(W1, W2)``
    with ``W1 (B, H, D_k, D_h)``, ``W2 (B, H, D_h, D_v)`` for the MLP (the batch axis may be 1,
    shared). ``theta`` (step), ``eta`` (momentum), ``alpha`` (forgetting) are ``(B, H, T)``.
    """
    C = check_memory_args("neural_memory", q, k, v, {"theta": theta, "eta": eta,
                                                     "alpha": alpha}, params0, memory,
                          chunk_size)

    def chunk_gradients(base, t0, t1):
        at_base = tuple(ops.expand_dims(p, 2) for p in base)      # one memory for the chunk
        return _gradient(memory, at_base, k[:, :, t0:t1], v[:, :, t0:t1])

    return run_chunks(q, v, theta, eta, alpha, params0, memory, C, chunk_gradients)


def titans_as_gated_delta(q, k, v, theta, alpha, initial_state=None, mode="recurrent",
                          chunk_size=None, checkpoint=None):
    """The linear memory with ``eta = 0`` computed by :func:`gated_delta_rule` (see above);
    ``mode``, ``chunk_size`` and ``checkpoint`` are passed to it unchanged."""
    fn = "titans_as_gated_delta"
    check_tokens_and_gates(fn, q, k, v, {"theta": theta, "alpha": alpha})
    check_shape(fn, "v", v, q.shape, "B, H, T, D")  # the linear memory maps D to D
    if initial_state is not None:
        check_float_tensor(fn, "initial_state", initial_state, float16=False)
    mode_settings(fn, mode, chunk_size, checkpoint)
    keep = 1 - alpha
    return gated_delta_rule(q, k, v * ops.expand_dims(keep, -1), 2 * theta / keep,
                            ops.log(keep), scale=1.0, initial_state=initial_state,
                            output_final_state=True, mode=mode, chunk_size=chunk_size,
                            checkpoint=checkpoint)
