r"""Recurrent (token-by-token) linear attention, delta rule and gated delta rule kernels.

One recurrence covers the three mechanisms. Per head, with state :math:`S_t \in
\mathbb{R}^{d_k \times d_v}`, decay :math:`a_t = e^{g_t}` (:math:`a_t = 1` when not gated):

.. math::
    \tilde S_t = a_t S_{t-1}, \qquad
    w_t = \begin{cases} v_t & \text{(linear attention)} \\
                        \beta_t\,(v_t - \tilde S_t^\top k_t) & \text{(delta rule)} \end{cases},
    \qquad S_t = \tilde S_t + k_t w_t^\top, \qquad o_t = S_t^\top (s\, q_t).

Backward (reverse time, :math:`\bar S` is the gradient flowing into :math:`S_t` from the
future; :math:`u_t = v_t - \tilde S_t^\top k_t`):

.. math::
    \bar q_t = s\, S_t \bar o_t, \quad \bar S \mathrel{+}= s\, q_t \bar o_t^\top, \quad
    \bar w = \bar S^\top k_t, \quad \bar k_t = \bar S w_t, \\
    \text{delta: } \bar\beta_t = \bar w \cdot u_t,\ \bar u = \beta_t \bar w,\ \bar v_t = \bar u,\
    \bar{\tilde S} = \bar S - k_t \bar u^\top,\ \bar k_t \mathrel{-}= \tilde S_t \bar u, \qquad
    \text{linear: } \bar v_t = \bar w,\ \bar{\tilde S} = \bar S, \\
    \bar g_t = \langle \bar{\tilde S}, \tilde S_t \rangle, \qquad \bar S \leftarrow a_t \bar{\tilde S}
    \quad(\text{so } \bar S_0 \text{ after the first step}).

Memory: the forward saves the state only every ``checkpoint`` steps; the backward recomputes
the states of one segment at a time (``checkpoint + 1`` matrices per head), so nothing of size
:math:`T d_k d_v` is ever stored.

Arrays are ``(N, T, D)`` with ``N = B * H`` (the wrappers reshape); ``beta`` and ``g`` are
``(N, T)``, states ``(N, D_k, D_v)``. The Numba kernels run one head per thread
(``prange``); the NumPy twins (``*_reference``) vectorize over heads, loop over time, and run
unchanged on CuPy arrays.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..backend import get_xp
from ._jit import jit


# ---------------------------------------------------------------------------------------------
# Numba kernels
# ---------------------------------------------------------------------------------------------
@jit(parallel=True)
def _forward_kernel(q, k, v, beta, g, S0, scale, delta, gated, ckpt, o, S_out, ckpts):
    N, T, Dk = k.shape
    Dv = v.shape[2]
    for n in prange(N):
        S = S0[n].copy()
        u = np.empty(Dv, dtype=S.dtype)
        w = np.empty(Dv, dtype=S.dtype)
        for t in range(T):
            if t % ckpt == 0:
                ckpts[n, t // ckpt] = S
            a = math.exp(g[n, t]) if gated else 1.0
            if delta:
                for j in range(Dv):
                    u[j] = v[n, t, j]
                for i in range(Dk):
                    ki = a * k[n, t, i]
                    for j in range(Dv):
                        u[j] -= S[i, j] * ki
                for j in range(Dv):
                    w[j] = beta[n, t] * u[j]
            else:
                for j in range(Dv):
                    w[j] = v[n, t, j]
            for j in range(Dv):
                u[j] = 0.0  # reused as the output accumulator
            for i in range(Dk):
                ki = k[n, t, i]
                qi = scale * q[n, t, i]
                for j in range(Dv):
                    s = a * S[i, j] + ki * w[j]
                    S[i, j] = s
                    u[j] += s * qi
            for j in range(Dv):
                o[n, t, j] = u[j]
        S_out[n] = S


@jit
def _replay_segment(k, v, beta, g, delta, gated, n, t0, t1, buf):
    """buf[0] holds the state before step t0; fill buf[i + 1] = state after step t0 + i."""
    Dk, Dv = buf.shape[1], buf.shape[2]
    w = np.empty(Dv, dtype=buf.dtype)
    for t in range(t0, t1):
        i = t - t0
        a = math.exp(g[n, t]) if gated else 1.0
        for j in range(Dv):
            w[j] = v[n, t, j]
        if delta:
            for ii in range(Dk):
                kk = a * k[n, t, ii]
                for j in range(Dv):
                    w[j] -= buf[i, ii, j] * kk
            for j in range(Dv):
                w[j] *= beta[n, t]
        for ii in range(Dk):
            kk = k[n, t, ii]
            for j in range(Dv):
                buf[i + 1, ii, j] = a * buf[i, ii, j] + kk * w[j]


@jit(parallel=True)
def _backward_kernel(q, k, v, beta, g, ckpts, scale, delta, gated, ckpt, do, dS_T,
                     dq, dk, dv, dbeta, dg, dS0):
    N, T, Dk = k.shape
    Dv = v.shape[2]
    n_seg = ckpts.shape[1]
    for n in prange(N):
        dS = dS_T[n].copy()
        buf = np.empty((ckpt + 1, Dk, Dv), dtype=dS.dtype)
        u = np.empty(Dv, dtype=dS.dtype)
        dw = np.empty(Dv, dtype=dS.dtype)
        for s in range(n_seg - 1, -1, -1):
            t0 = s * ckpt
            t1 = min(T, t0 + ckpt)
            buf[0] = ckpts[n, s]
            _replay_segment(k, v, beta, g, delta, gated, n, t0, t1, buf)
            for t in range(t1 - 1, t0 - 1, -1):
                i = t - t0
                a = math.exp(g[n, t]) if gated else 1.0
                # the read o_t = S_t^T (scale q_t)
                for ii in range(Dk):
                    acc = 0.0
                    sq = scale * q[n, t, ii]
                    for j in range(Dv):
                        acc += buf[i + 1, ii, j] * do[n, t, j]
                        dS[ii, j] += sq * do[n, t, j]
                    dq[n, t, ii] = scale * acc
                # the write S_t = a S_{t-1} + k_t w_t^T
                for j in range(Dv):
                    dw[j] = 0.0
                    u[j] = v[n, t, j]
                for ii in range(Dk):
                    kk = k[n, t, ii]
                    for j in range(Dv):
                        dw[j] += dS[ii, j] * kk
                if delta:
                    for ii in range(Dk):
                        kk = a * k[n, t, ii]
                        for j in range(Dv):
                            u[j] -= buf[i, ii, j] * kk
                    bt = beta[n, t]
                    db = 0.0
                    for j in range(Dv):
                        db += dw[j] * u[j]
                    dbeta[n, t] = db
                    for j in range(Dv):
                        dw[j] *= bt          # now du = beta * dw
                        dv[n, t, j] = dw[j]
                    for ii in range(Dk):
                        kk = k[n, t, ii]
                        acc = 0.0
                        for j in range(Dv):
                            acc += dS[ii, j] * bt * u[j] - a * buf[i, ii, j] * dw[j]
                            dS[ii, j] -= kk * dw[j]
                        dk[n, t, ii] = acc
                else:
                    for j in range(Dv):
                        dv[n, t, j] = dw[j]
                    for ii in range(Dk):
                        acc = 0.0
                        for j in range(Dv):
                            acc += dS[ii, j] * u[j]
                        dk[n, t, ii] = acc
                # the decay S~ = a S_{t-1}: dg = <dS~, S~>, dS_{t-1} = a dS~
                if gated:
                    acc = 0.0
                    for ii in range(Dk):
                        for j in range(Dv):
                            acc += dS[ii, j] * buf[i, ii, j]
                            dS[ii, j] *= a
                    dg[n, t] = a * acc
        dS0[n] = dS


# ---------------------------------------------------------------------------------------------
# NumPy twins (vectorized over heads; also the CuPy path)
# ---------------------------------------------------------------------------------------------
def _step_reference(S, k_t, v_t, beta_t, g_t, delta, gated):
    """One write for all heads: returns (S_t, S~_t, u_t). Shapes (N, Dk, Dv), (N, D), (N,)."""
    xp = get_xp(S)
    a = xp.exp(g_t)[:, None, None] if gated else 1.0
    S_tilde = a * S
    if delta:
        u = v_t - xp.einsum("nij,ni->nj", S_tilde, k_t)
        w = beta_t[:, None] * u
    else:
        u, w = v_t, v_t
    return S_tilde + k_t[:, :, None] * w[:, None, :], S_tilde, u


def recurrent_forward_reference(q, k, v, beta, g, S0, scale, delta=True, gated=False,
                                checkpoint=64):
    """The NumPy twin of :func:`recurrent_forward` (same outputs, same checkpoints)."""
    xp = get_xp(q)
    N, T, _ = k.shape
    o = xp.empty(v.shape, dtype=q.dtype)
    ckpts = xp.empty((N, -(-T // checkpoint)) + S0.shape[1:], dtype=q.dtype)
    S = S0.copy()
    for t in range(T):
        if t % checkpoint == 0:
            ckpts[:, t // checkpoint] = S
        S, _, _ = _step_reference(S, k[:, t], v[:, t], beta[:, t], g[:, t], delta, gated)
        o[:, t] = xp.einsum("nij,ni->nj", S, scale * q[:, t])
    return o, S, ckpts


def step_backward_reference(S_prev, S_t, q_t, k_t, v_t, beta_t, g_t, dS, do_t, scale,
                            delta=True, gated=False):
    """Backward of one step for all heads (see the module docstring).

    ``dS`` is the gradient w.r.t. ``S_t`` from the future. Returns
    ``(dq_t, dk_t, dv_t, dbeta_t, dg_t, dS_prev)``.
    """
    xp = get_xp(S_t)
    a = xp.exp(g_t) if gated else xp.ones_like(beta_t)
    # Exercise 20.4 (3 pt): the backward of one recurrent step of the gated delta rule
    #   (S~ = a S_prev, u = v - S~^T k, w = beta u, S_t = S~ + k w^T, o = S_t^T (scale q)):
    #   from dS (gradient into S_t from later steps) and do_t give dq_t, dk_t, dv_t, dbeta_t,
    #   dg_t and dS_prev (all heads at once; linear attention when delta is False: w = v).
    ### BEGIN SOLUTION
    dq_t = scale * xp.einsum("nij,nj->ni", S_t, do_t)
    dS = dS + scale * q_t[:, :, None] * do_t[:, None, :]
    S_tilde = a[:, None, None] * S_prev
    dw = xp.einsum("nij,ni->nj", dS, k_t)
    if delta:
        u = v_t - xp.einsum("nij,ni->nj", S_tilde, k_t)
        w = beta_t[:, None] * u
        dbeta_t = (dw * u).sum(axis=-1)
        du = beta_t[:, None] * dw
        dv_t = du
        dk_t = xp.einsum("nij,nj->ni", dS, w) - xp.einsum("nij,nj->ni", S_tilde, du)
        dS_tilde = dS - k_t[:, :, None] * du[:, None, :]
    else:
        dbeta_t = xp.zeros_like(beta_t)
        dv_t = dw
        dk_t = xp.einsum("nij,nj->ni", dS, v_t)
        dS_tilde = dS
    dg_t = (dS_tilde * S_tilde).sum(axis=(1, 2)) if gated else xp.zeros_like(beta_t)
    dS_prev = a[:, None, None] * dS_tilde
    ### END SOLUTION
    return dq_t, dk_t, dv_t, dbeta_t, dg_t, dS_prev


def recurrent_backward_reference(q, k, v, beta, g, ckpts, scale, do, dS_T, delta=True,
                                 gated=False, checkpoint=64):
    """The NumPy twin of :func:`recurrent_backward`: replay each segment, then step back."""
    xp = get_xp(q)
    N, T, _ = k.shape
    dq, dk, dv = xp.zeros_like(q), xp.zeros_like(k), xp.zeros_like(v)
    dbeta, dg = xp.zeros_like(beta), xp.zeros_like(g)
    dS = dS_T.copy()
    for s in range(ckpts.shape[1] - 1, -1, -1):
        t0, t1 = s * checkpoint, min(T, (s + 1) * checkpoint)
        states = [ckpts[:, s]]
        for t in range(t0, t1):
            states.append(_step_reference(states[-1], k[:, t], v[:, t], beta[:, t], g[:, t],
                                          delta, gated)[0])
        for t in range(t1 - 1, t0 - 1, -1):
            i = t - t0
            dq[:, t], dk[:, t], dv[:, t], dbeta[:, t], dg[:, t], dS = step_backward_reference(
                states[i], states[i + 1], q[:, t], k[:, t], v[:, t], beta[:, t], g[:, t], dS,
                do[:, t], scale, delta, gated)
    return dq, dk, dv, dbeta, dg, dS


# ---------------------------------------------------------------------------------------------
# Dispatch: Numba on NumPy arrays, the twin on CuPy arrays
# ---------------------------------------------------------------------------------------------
def _check(fn, q, k, v, beta, g, S):
    if q.ndim != 3 or k.shape != q.shape or v.ndim != 3 or v.shape[:2] != k.shape[:2]:
        raise ValueError(f"{fn}: expected q, k (N, T, Dk) and v (N, T, Dv); got q {q.shape}, "
                         f"k {k.shape}, v {v.shape}")
    N, T, Dk = k.shape
    if beta.shape != (N, T) or g.shape != (N, T):
        raise ValueError(f"{fn}: beta and g must be (N, T) = {(N, T)}; got {beta.shape}, "
                         f"{g.shape}")
    if S.shape != (N, Dk, v.shape[2]):
        raise ValueError(f"{fn}: state must be {(N, Dk, v.shape[2])}, got {S.shape}")


def recurrent_forward(q, k, v, beta, g, S0, scale, delta=True, gated=False, checkpoint=64):
    """Run the recurrence: returns ``(o (N,T,Dv), S_T (N,Dk,Dv), checkpoints)``.

    ``checkpoints[:, s]`` is the state before step ``s * checkpoint`` (what the backward needs).
    """
    _check("recurrent_forward", q, k, v, beta, g, S0)
    if get_xp(q) is not np:
        return recurrent_forward_reference(q, k, v, beta, g, S0, scale, delta, gated, checkpoint)
    N, T, Dk = k.shape
    dt = q.dtype
    args = [np.ascontiguousarray(x, dtype=dt) for x in (q, k, v, beta, g, S0)]
    o = np.empty(v.shape, dtype=dt)
    S_T = np.empty(S0.shape, dtype=dt)
    ckpts = np.empty((N, max(1, -(-T // checkpoint)), Dk, v.shape[2]), dtype=dt)
    _forward_kernel(*args, dt.type(scale), bool(delta), bool(gated), int(checkpoint), o, S_T,
                    ckpts)
    if T == 0:
        ckpts[:, 0] = S0
    return o, S_T, ckpts


def recurrent_backward(q, k, v, beta, g, ckpts, scale, do, dS_T, delta=True, gated=False,
                       checkpoint=64):
    """Gradients ``(dq, dk, dv, dbeta, dg, dS0)`` of the recurrence, given ``do`` and ``dS_T``."""
    _check("recurrent_backward", q, k, v, beta, g, dS_T)
    if get_xp(q) is not np:
        return recurrent_backward_reference(q, k, v, beta, g, ckpts, scale, do, dS_T, delta,
                                            gated, checkpoint)
    dt = q.dtype
    q, k, v, beta, g, ckpts, do, dS_T = (np.ascontiguousarray(x, dtype=dt)
                                         for x in (q, k, v, beta, g, ckpts, do, dS_T))
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    dbeta, dg, dS0 = np.zeros_like(beta), np.zeros_like(g), np.empty_like(dS_T)
    if k.shape[1] == 0:
        return dq, dk, dv, dbeta, dg, dS_T.copy()
    _backward_kernel(q, k, v, beta, g, ckpts, dt.type(scale), bool(delta), bool(gated),
                     int(checkpoint), do, dS_T, dq, dk, dv, dbeta, dg, dS0)
    return dq, dk, dv, dbeta, dg, dS0
