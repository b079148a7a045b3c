r"""Recurrent (token-by-token) linear attention, delta rule and gated delta rule kernels.

One recurrence covers the three mechanisms, in the chapter's notation (``u`` is the value
written, the *pseudo-value* of :mod:`minimem.memory.delta.chunkwise`). Per head, with state
:math:`S_t \in \mathbb{R}^{d_k \times d_v}`, decay :math:`a_t = e^{g_t}` (:math:`a_t = 1`
when not gated) and the residual :math:`r_t` (what the decayed memory gets wrong under
:math:`k_t`):

.. math::
    \tilde S_t = a_t S_{t-1}, \qquad r_t = v_t - \tilde S_t^\top k_t, \qquad
    u_t = \begin{cases} v_t & \text{(linear attention)} \\
                        \beta_t\, r_t & \text{(delta rule)} \end{cases},
    \qquad S_t = \tilde S_t + k_t u_t^\top, \qquad o_t = S_t^\top (s\, q_t).

### BEGIN WITHHELD 20.4
Backward (reverse time; :math:`\bar S` is the gradient flowing into :math:`S_t` from the
future, :math:`\bar x` the gradient of the loss w.r.t. :math:`x`):

.. math::
    \bar q_t = s\, S_t \bar o_t, \quad \bar S \mathrel{+}= s\, q_t \bar o_t^\top, \quad
    \bar u = \bar S^\top k_t, \quad \bar k_t = \bar S u_t, \\
    \text{delta: } \bar\beta_t = \bar u \cdot r_t,\ \bar r = \beta_t \bar u,\ \bar v_t = \bar r,\
    \bar{\tilde S} = \bar S - k_t \bar r^\top,\ \bar k_t \mathrel{-}= \tilde S_t \bar r, \qquad
    \text{linear: } \bar v_t = \bar u,\ \bar{\tilde S} = \bar S, \\
    \bar g_t = \langle \bar{\tilde S}, \tilde S_t \rangle, \qquad
    \bar S \leftarrow a_t \bar{\tilde S}
    \quad(\text{so } \bar S_0 \text{ after the first step}).
#> The backward (reverse time) is exercise 20.4: ``step_backward_reference``.
### END WITHHELD

In the code ``r``, ``u``, ``du``, ``dr``, ``dS`` are :math:`r_t, u_t, \bar u, \bar r, \bar S`;
``o_t`` is the read of one token before it is stored.

Memory: the forward saves the state only every ``checkpoint`` steps (the checkpoint interval,
in tokens); the backward recomputes the states of one segment at a time (``checkpoint + 1``
matrices per head), so nothing of size :math:`T d_k d_v` is ever stored.

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
from ..checks import check_int
from ._jit import jit

DEFAULT_CHECKPOINT = 64   # tokens between stored states: the backward replays this many


# ---------------------------------------------------------------------------------------------
# Numba kernels
# ---------------------------------------------------------------------------------------------
@jit(parallel=True)
def _forward_kernel(q, k, v, beta, g, S0, scale, delta, gated, checkpoint, o, S_out, ckpts):
    N, T, Dk = k.shape
    Dv = v.shape[2]
    for n in prange(N):
        S = S0[n].copy()
        r = np.empty(Dv, dtype=S.dtype)
        u = np.empty(Dv, dtype=S.dtype)
        o_t = np.empty(Dv, dtype=S.dtype)
        for t in range(T):
            if t % checkpoint == 0:
                ckpts[n, t // checkpoint] = S
            a = math.exp(g[n, t]) if gated else 1.0
            # the pseudo-value u_t = beta_t r_t with r_t = v_t - S~_t^T k_t (linear: u_t = v_t)
            if delta:
                for j in range(Dv):
                    r[j] = v[n, t, j]
                for i in range(Dk):
                    ki = a * k[n, t, i]
                    for j in range(Dv):
                        r[j] -= S[i, j] * ki
                for j in range(Dv):
                    u[j] = beta[n, t] * r[j]
            else:
                for j in range(Dv):
                    u[j] = v[n, t, j]
            # the write S_t = a_t S_{t-1} + k_t u_t^T and the read o_t = S_t^T (s q_t), fused
            for j in range(Dv):
                o_t[j] = 0.0
            for i in range(Dk):
                ki = k[n, t, i]
                qi = scale * q[n, t, i]
                for j in range(Dv):
                    s = a * S[i, j] + ki * u[j]
                    S[i, j] = s
                    o_t[j] += s * qi
            for j in range(Dv):
                o[n, t, j] = o_t[j]
        S_out[n] = S


@jit
def _replay_segment(k, v, beta, g, delta, gated, n, t0, t1, buf):
    """buf[0] holds the state before step t0; fill buf[i + 1] = state after step t0 + i."""
    Dk, Dv = buf.shape[1], buf.shape[2]
    u = np.empty(Dv, dtype=buf.dtype)
    for t in range(t0, t1):
        i = t - t0
        a = math.exp(g[n, t]) if gated else 1.0
        # u_t built in place: v_t, then (delta rule) minus S~_t^T k_t, times beta_t
        for j in range(Dv):
            u[j] = v[n, t, j]
        if delta:
            for ii in range(Dk):
                kk = a * k[n, t, ii]
                for j in range(Dv):
                    u[j] -= buf[i, ii, j] * kk
            for j in range(Dv):
                u[j] *= beta[n, t]
        for ii in range(Dk):
            kk = k[n, t, ii]
            for j in range(Dv):
                buf[i + 1, ii, j] = a * buf[i, ii, j] + kk * u[j]


### BEGIN WITHHELD 20.4
@jit(parallel=True)
def _backward_kernel(q, k, v, beta, g, ckpts, scale, delta, gated, checkpoint, do, dS_T,
                     dq, dk, dv, dbeta, dg, dS0):
    N, T, Dk = k.shape
    Dv = v.shape[2]
    n_seg = ckpts.shape[1]
    for n in prange(N):
        dS = dS_T[n].copy()
        buf = np.empty((checkpoint + 1, Dk, Dv), dtype=dS.dtype)
        r = np.empty(Dv, dtype=dS.dtype)
        du = np.empty(Dv, dtype=dS.dtype)
        dr = np.empty(Dv, dtype=dS.dtype)
        for s in range(n_seg - 1, -1, -1):
            t0 = s * checkpoint
            t1 = min(T, t0 + checkpoint)
            buf[0] = ckpts[n, s]
            _replay_segment(k, v, beta, g, delta, gated, n, t0, t1, buf)
            for t in range(t1 - 1, t0 - 1, -1):
                i = t - t0          # buf[i] = S_{t-1}, buf[i + 1] = S_t
                a = math.exp(g[n, t]) if gated else 1.0
                # the read o_t = S_t^T (scale q_t)
                for ii in range(Dk):
                    acc = 0.0
                    sq = scale * q[n, t, ii]
                    for j in range(Dv):
                        acc += buf[i + 1, ii, j] * do[n, t, j]
                        dS[ii, j] += sq * do[n, t, j]
                    dq[n, t, ii] = scale * acc
                # the write S_t = a S_{t-1} + k_t u_t^T: du = dS^T k_t
                for j in range(Dv):
                    du[j] = 0.0
                for ii in range(Dk):
                    kk = k[n, t, ii]
                    for j in range(Dv):
                        du[j] += dS[ii, j] * kk
                if delta:
                    # u_t = beta_t r_t, r_t = v_t - S~_t^T k_t
                    for j in range(Dv):
                        r[j] = v[n, t, j]
                    for ii in range(Dk):
                        kk = a * k[n, t, ii]
                        for j in range(Dv):
                            r[j] -= buf[i, ii, j] * kk
                    bt = beta[n, t]
                    db = 0.0
                    for j in range(Dv):
                        db += du[j] * r[j]
                    dbeta[n, t] = db
                    for j in range(Dv):
                        dr[j] = du[j] * bt
                        dv[n, t, j] = dr[j]
                    for ii in range(Dk):
                        kk = k[n, t, ii]
                        acc = 0.0
                        for j in range(Dv):   # dk_t = dS u_t - S~_t dr, with u_t = beta_t r_t
                            acc += dS[ii, j] * bt * r[j] - a * buf[i, ii, j] * dr[j]
                            dS[ii, j] -= kk * dr[j]
                        dk[n, t, ii] = acc
                else:
                    for j in range(Dv):
                        dv[n, t, j] = du[j]
                    for ii in range(Dk):   # dk_t = dS u_t, with u_t = v_t
                        acc = 0.0
                        for j in range(Dv):
                            acc += dS[ii, j] * v[n, t, j]
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
### END WITHHELD


# ---------------------------------------------------------------------------------------------
# NumPy twins (vectorized over heads; also the CuPy path)
# ---------------------------------------------------------------------------------------------
def _step_reference(S, k_t, v_t, beta_t, g_t, delta, gated):
    """One write for all heads: returns S_t. Shapes (N, Dk, Dv), (N, D), (N,)."""
    xp = get_xp(S)
    a = xp.exp(g_t)[:, None, None] if gated else 1.0
    S_tilde = a * S
    if delta:
        r = v_t - xp.einsum("nij,ni->nj", S_tilde, k_t)
        u = beta_t[:, None] * r
    else:
        u = v_t
    return S_tilde + k_t[:, :, None] * u[:, None, :]


def recurrent_forward_reference(q, k, v, beta, g, S0, scale, delta=True, gated=False,
                                checkpoint=DEFAULT_CHECKPOINT):
    """The NumPy twin of :func:`recurrent_forward` (same outputs, same checkpoints)."""
    xp = get_xp(q)
    N, T, _ = k.shape
    o = xp.empty(v.shape, dtype=q.dtype)
    ckpts = xp.empty((N, _n_segments(T, checkpoint)) + S0.shape[1:], dtype=q.dtype)
    ckpts[:, 0] = S0       # also the one "segment" of an empty sequence
    S = S0.copy()
    for t in range(T):
        if t % checkpoint == 0:
            ckpts[:, t // checkpoint] = S
        S = _step_reference(S, k[:, t], v[:, t], beta[:, t], g[:, t], delta, gated)
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
    #   (S~ = a S_prev, r = v - S~^T k, u = beta r, S_t = S~ + k u^T, o = S_t^T (scale q)):
    #   from dS (gradient into S_t from later steps) and do_t give dq_t, dk_t, dv_t, dbeta_t,
    #   dg_t and dS_prev (all heads at once; linear attention when delta is False: u = v).
    ### BEGIN SOLUTION
    dq_t = scale * xp.einsum("nij,nj->ni", S_t, do_t)
    dS = dS + scale * q_t[:, :, None] * do_t[:, None, :]
    S_tilde = a[:, None, None] * S_prev
    du = xp.einsum("nij,ni->nj", dS, k_t)
    if delta:
        r = v_t - xp.einsum("nij,ni->nj", S_tilde, k_t)
        u = beta_t[:, None] * r
        dbeta_t = (du * r).sum(axis=-1)
        dr = beta_t[:, None] * du
        dv_t = dr
        dk_t = xp.einsum("nij,nj->ni", dS, u) - xp.einsum("nij,nj->ni", S_tilde, dr)
        dS_tilde = dS - k_t[:, :, None] * dr[:, None, :]
    else:
        dbeta_t = xp.zeros_like(beta_t)
        dv_t = du
        dk_t = xp.einsum("nij,nj->ni", dS, v_t)
        dS_tilde = dS
    dg_t = (dS_tilde * S_tilde).sum(axis=(1, 2)) if gated else xp.zeros_like(beta_t)
    dS_prev = a[:, None, None] * dS_tilde
    ### END SOLUTION
    return dq_t, dk_t, dv_t, dbeta_t, dg_t, dS_prev


def recurrent_backward_reference(q, k, v, beta, g, ckpts, scale, do, dS_T, delta=True,
                                 gated=False, checkpoint=DEFAULT_CHECKPOINT):
    """The NumPy twin of :func:`recurrent_backward`: replay each segment, then step back."""
    xp = get_xp(q)
    T = k.shape[1]
    dq, dk, dv = xp.zeros_like(q), xp.zeros_like(k), xp.zeros_like(v)
    dbeta, dg = xp.zeros_like(beta), xp.zeros_like(g)
    dS = dS_T.copy()
    for s in range(-(-T // checkpoint) - 1, -1, -1):
        t0, t1 = s * checkpoint, min(T, (s + 1) * checkpoint)
        states = [ckpts[:, s]]
        for t in range(t0, t1):
            states.append(_step_reference(states[-1], k[:, t], v[:, t], beta[:, t], g[:, t],
                                          delta, gated))
        for t in range(t1 - 1, t0 - 1, -1):
            i = t - t0
            dq[:, t], dk[:, t], dv[:, t], dbeta[:, t], dg[:, t], dS = step_backward_reference(
                states[i], states[i + 1], q[:, t], k[:, t], v[:, t], beta[:, t], g[:, t], dS,
                do[:, t], scale, delta, gated)
    return dq, dk, dv, dbeta, dg, dS


# ---------------------------------------------------------------------------------------------
# Dispatch: Numba on NumPy arrays, the twin on CuPy arrays
# ---------------------------------------------------------------------------------------------
def _n_segments(T, checkpoint):
    """Stored states for T tokens: one per started segment, and one for an empty sequence."""
    return max(1, -(-T // checkpoint))


def check_tokens(fn, name, value):
    """``value`` (a count of tokens: ``checkpoint``, ``chunk_size``) as an int >= 1, bool
    rejected: the kernels divide and index by it."""
    return check_int(fn, name, value, low=1)


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


def recurrent_forward(q, k, v, beta, g, S0, scale, delta=True, gated=False,
                      checkpoint=DEFAULT_CHECKPOINT):
    """Run the recurrence: returns ``(o (N,T,Dv), S_T (N,Dk,Dv), checkpoints)``.

    ``checkpoints[:, s]`` is the state before step ``s * checkpoint`` (what the backward needs).
    """
    _check("recurrent_forward", q, k, v, beta, g, S0)
    checkpoint = check_tokens("recurrent_forward", "checkpoint", checkpoint)
    if get_xp(q) is not np:
        return recurrent_forward_reference(q, k, v, beta, g, S0, scale, delta, gated, checkpoint)
    N, T, Dk = k.shape
    dt = q.dtype
    args = [np.ascontiguousarray(x, dtype=dt) for x in (q, k, v, beta, g, S0)]
    o = np.empty(v.shape, dtype=dt)
    S_T = np.empty(S0.shape, dtype=dt)
    ckpts = np.empty((N, _n_segments(T, checkpoint), Dk, v.shape[2]), dtype=dt)
    _forward_kernel(*args, dt.type(scale), bool(delta), bool(gated), checkpoint, o, S_T, ckpts)
    if T == 0:
        ckpts[:, 0] = S0
    return o, S_T, ckpts


def recurrent_backward(q, k, v, beta, g, ckpts, scale, do, dS_T, delta=True, gated=False,
                       checkpoint=DEFAULT_CHECKPOINT):
    """Gradients ``(dq, dk, dv, dbeta, dg, dS0)`` of the recurrence, given ``do`` and ``dS_T``.

    ``ckpts`` and ``checkpoint`` are those of the :func:`recurrent_forward` call.
    """
    _check("recurrent_backward", q, k, v, beta, g, dS_T)
    checkpoint = check_tokens("recurrent_backward", "checkpoint", checkpoint)
    N, T, _ = k.shape
    want = (N, _n_segments(T, checkpoint)) + dS_T.shape[1:]
    if ckpts.shape != want:   # the kernel indexes ckpts unchecked: a mismatch would read past it
        raise ValueError(f"recurrent_backward: ckpts must be {want} for checkpoint="
                         f"{checkpoint} (as returned by recurrent_forward), got {ckpts.shape}")
    if do.shape != v.shape:
        raise ValueError(f"recurrent_backward: do must have the shape of v {v.shape}, got "
                         f"{do.shape}")
    if get_xp(q) is not np:
        return recurrent_backward_reference(q, k, v, beta, g, ckpts, scale, do, dS_T, delta,
                                            gated, checkpoint)
    ### BEGIN WITHHELD 20.4
    dt = q.dtype
    q, k, v, beta, g, ckpts, do, dS_T = (np.ascontiguousarray(x, dtype=dt)
                                         for x in (q, k, v, beta, g, ckpts, do, dS_T))
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    dbeta, dg, dS0 = np.zeros_like(beta), np.zeros_like(g), np.empty_like(dS_T)
    if T == 0:
        return dq, dk, dv, dbeta, dg, dS_T.copy()
    _backward_kernel(q, k, v, beta, g, ckpts, dt.type(scale), bool(delta), bool(gated),
                     checkpoint, do, dS_T, dq, dk, dv, dbeta, dg, dS0)
    return dq, dk, dv, dbeta, dg, dS0
    #> return recurrent_backward_reference(q, k, v, beta, g, ckpts, scale, do, dS_T, delta,
    #>                                     gated, checkpoint)
    ### END WITHHELD
