r"""Chunkwise-parallel forms of linear attention and the (gated) delta rule.

Split the sequence into chunks of :math:`C` tokens (the last one zero-padded: a padded token
has :math:`k = v = 0`, :math:`\beta = 0`, :math:`g = 0` and changes nothing). Inside a chunk
with state :math:`S` on entry, cumulative log-decays :math:`\gamma_i = \sum_{j \le i} g_j`,
:math:`\Gamma_{ij} = e^{\gamma_i - \gamma_j}` (:math:`i \ge j`) and scale :math:`s`:

**Delta rule (UT / WY representation).** The state after token :math:`t` is
:math:`S_t = e^{\gamma_t} S + \sum_{j \le t} \Gamma_{tj} k_j u_j^\top` with pseudo-values
:math:`u_t = \beta_t (v_t - e^{\gamma_t} S^\top k_t - \sum_{j<t} \Gamma_{tj} (k_t^\top k_j) u_j)`.
In matrix form :math:`(I + A) U' = \mathrm{diag}(\beta) (V - \mathrm{diag}(e^\gamma) K S)` with

.. math::
    A = \mathrm{tril}(\mathrm{diag}(\beta) K K^\top \odot \Gamma, -1), \quad
    \mathcal{T} = (I + A)^{-1} \mathrm{diag}(\beta), \quad
    W = \mathcal{T}\, \mathrm{diag}(e^{\gamma}) K, \quad U = \mathcal{T} V, \quad U' = U - W S,

.. math::
    O = s\,\mathrm{diag}(e^{\gamma}) Q S + \mathrm{tril}(s\, Q K^\top \odot \Gamma)\, U', \qquad
    S \leftarrow e^{\gamma_C} S + (\mathrm{diag}(e^{\gamma_C - \gamma}) K)^\top U'.

:math:`(I + A)^{-1}` is unit lower triangular and computed by forward substitution
(:class:`UnitLowerInverse`, whose backward is :math:`\bar A = -\mathrm{tril}(X^\top \bar X
X^\top, -1)` for :math:`X = (I + A)^{-1}`).

**Linear attention** is the same with :math:`U' = V` (no correction).

Everything except the forward substitution is ordinary engine ops (matmul, exp, masks), so
autograd differentiates it and it runs on CuPy unchanged; only the loop over chunks
(:math:`T / C` steps, carrying :math:`S`) is sequential.
"""
from __future__ import annotations

import numpy as np

from ..autograd import ops
from ..autograd.function import Function
from ..autograd.tensor import Tensor
from ..backend import get_xp


class UnitLowerInverse(Function):
    """``X = (I + A)^{-1}`` for strictly lower-triangular ``A`` (..., C, C)."""

    @staticmethod
    def forward(ctx, A):
        xp = get_xp(A)
        C = A.shape[-1]
        X = xp.zeros(A.shape, dtype=A.dtype)
        X[..., 0, 0] = 1
        for i in range(1, C):  # row i of X = e_i - sum_{j<i} A_ij X_j  (rows j < i are final)
            X[..., i, :i] = -(A[..., i:i + 1, :i] @ X[..., :i, :i])[..., 0, :]
            X[..., i, i] = 1
        ctx.save_for_backward(X)
        return X

    @staticmethod
    def backward(ctx, gX):
        (X,) = ctx.saved_tensors
        xp = get_xp(X)
        Xt = xp.swapaxes(X, -1, -2)
        return -xp.tril(Xt @ gX @ Xt, -1)


def unit_lower_inverse(A):
    """Differentiable :math:`(I + A)^{-1}` for a strictly lower-triangular Tensor ``A``."""
    return UnitLowerInverse.apply(A)


def ut_transform(k, v, beta, g=None):
    r"""The UT transform of one chunk: ``(W, U)`` with :math:`W = \mathcal{T} \mathrm{diag}
    (e^\gamma) K`, :math:`U = \mathcal{T} V`, :math:`\mathcal{T} = (I + A)^{-1}\mathrm{diag}
    (\beta)` (arrays ``k (C, D_k)``, ``v (C, D_v)``, ``beta (C,)``, optional log-decays ``g``).

    With a zero state on entry, row ``t`` of ``U`` is the delta rule's pseudo-value
    :math:`u_t = \beta_t (v_t - S_{t-1}^\top k_t)` of token ``t``.
    """
    xp = get_xp(k)
    k, v, beta = xp.asarray(k), xp.asarray(v), xp.asarray(beta)
    if k.ndim != 2 or v.ndim != 2 or beta.shape != (k.shape[0],) or v.shape[0] != k.shape[0]:
        raise ValueError(f"ut_transform: expected k (C, D_k), v (C, D_v), beta (C,); got "
                         f"{k.shape}, {v.shape}, {beta.shape}")
    gamma = xp.zeros(k.shape[0], dtype=k.dtype) if g is None else xp.cumsum(xp.asarray(g))
    C = k.shape[0]
    # Exercise 20.3 (3 pt): the UT transform of one chunk by forward substitution: fill the rows
    #   of W (C, D_k) and U (C, D_v) one after another, row i from the rows j < i, using
    #   A_ij = beta_i exp(gamma_i - gamma_j) k_i . k_j and (I + A) [W | U] = diag(beta)
    #   [diag(exp(gamma)) K | V]  (no matrix inverse).
    ### BEGIN SOLUTION
    W = xp.zeros(k.shape, dtype=k.dtype)
    U = xp.zeros(v.shape, dtype=v.dtype)
    for i in range(C):
        a_i = beta[i] * xp.exp(gamma[i] - gamma[:i]) * (k[:i] @ k[i])   # A[i, :i]
        W[i] = beta[i] * xp.exp(gamma[i]) * k[i] - a_i @ W[:i]
        U[i] = beta[i] * v[i] - a_i @ U[:i]
    ### END SOLUTION
    return W, U


# ---------------------------------------------------------------------------------------------
class _Unbind(Function):
    """Split ``x`` along ``axis`` into its slices (one graph node; backward stacks)."""

    @staticmethod
    def forward(ctx, x, axis=0):
        ctx.axis = axis
        lead = (slice(None),) * axis  # basic indexing: views, no copies
        return tuple(x[lead + (i,)] for i in range(x.shape[axis]))

    @staticmethod
    def backward(ctx, *grads):
        return (get_xp(grads[0]).stack(grads, axis=ctx.axis),)


def _unbind(x, axis):
    out = _Unbind.apply(x, axis=axis)
    return out if isinstance(out, tuple) else (out,)


def _pad_time(x, T_pad, axis=2):
    """Zero-pad the time axis of a Tensor to length T_pad."""
    T = x.shape[axis]
    if T_pad == T:
        return x
    shape = list(x.shape)
    shape[axis] = T_pad - T
    xp = get_xp(x.data)
    return ops.concatenate([x, Tensor(xp.zeros(shape, dtype=x.dtype))], axis=axis)


def chunk_recurrence(q, k, v, beta, g, S0, scale, chunk_size, delta=True):
    """Chunkwise form of the recurrence (Tensors, checked by the caller).

    ``delta=False``: linear attention (``beta`` ignored); ``g=None``: no decay; ``S0=None``:
    zero state. Returns ``(o (B,H,T,D_v), S_T (B,H,D_k,D_v))``, both differentiable.
    """
    xp = get_xp(q.data)
    B, H, T, Dk = q.shape
    Dv = v.shape[-1]
    C = chunk_size
    N = max(1, -(-T // C))
    dt = q.dtype

    def chunks(x, d):  # (B, H, T, d) -> (B, H, N, C, d), zero padded
        return ops.reshape(_pad_time(x, N * C), (B, H, N, C, d))

    Q, K, V = chunks(q, Dk) * scale, chunks(k, Dk), chunks(v, Dv)
    KT = ops.swapaxes(K, -1, -2)
    P_base = Q @ KT                                                  # s Q K^T
    incl = xp.tril(xp.ones((C, C), dtype=bool))
    strict = xp.tril(xp.ones((C, C), dtype=bool), -1)
    if g is not None:
        gc = ops.reshape(_pad_time(g, N * C), (B, H, N, C))
        gamma = gc @ Tensor(xp.triu(xp.ones((C, C), dtype=dt)))      # cumulative sum
        diff = ops.expand_dims(gamma, -1) - ops.expand_dims(gamma, -2)
        Gamma = ops.exp(diff * Tensor(incl.astype(dt))) * Tensor(incl.astype(dt))
        e_gamma = ops.exp(gamma)
        gamma_C = gamma[..., C - 1:]
        Q = Q * ops.expand_dims(e_gamma, -1)
        K_end = K * ops.expand_dims(ops.exp(gamma_C - gamma), -1)
        decay = _unbind(ops.exp(gamma_C), axis=2)                    # (B, H, 1) per chunk
    else:
        Gamma = Tensor(incl.astype(dt))
        K_end = K
    P = P_base * Gamma                                               # tril(s Q K^T o Gamma)
    if delta:
        bc = ops.reshape(_pad_time(beta, N * C), (B, H, N, C))
        A = K @ KT * ops.expand_dims(bc, -1) * Gamma * Tensor(strict.astype(dt))
        Tm = unit_lower_inverse(A) * ops.expand_dims(bc, -2)          # (I + A)^{-1} diag(beta)
        W = Tm @ (K * ops.expand_dims(e_gamma, -1) if g is not None else K)
        U = Tm @ V
        Ws = _unbind(W, axis=2)
    else:
        U = V
    Us, Qs, Ps = _unbind(U, 2), _unbind(Q, 2), _unbind(P, 2)
    KendT = _unbind(ops.swapaxes(K_end, -1, -2), 2)
    S = S0 if S0 is not None else Tensor(xp.zeros((B, H, Dk, Dv), dtype=dt))
    outs = []
    for n in range(N):
        Un = Us[n] - Ws[n] @ S if delta else Us[n]                   # U' = U - W S
        outs.append(Qs[n] @ S + Ps[n] @ Un)
        if g is not None:
            S = S * ops.expand_dims(decay[n], -1)
        S = S + KendT[n] @ Un
    o = ops.reshape(ops.stack(outs, axis=2), (B, H, N * C, Dv))
    if N * C != T:
        o = o[:, :, :T]
    return o, S
