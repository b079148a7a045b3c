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
    A &= \mathrm{tril}(\mathrm{diag}(\beta) K K^\top \odot \Gamma, -1), \quad
    \mathcal{T} = (I + A)^{-1} \mathrm{diag}(\beta), \\
    W &= \mathcal{T}\, \mathrm{diag}(e^{\gamma}) K, \quad U = \mathcal{T} V, \quad U' = U - W S,

.. math::
    O &= s\,\mathrm{diag}(e^{\gamma}) Q S + \mathrm{tril}(s\, Q K^\top \odot \Gamma)\, U', \\
    S &\leftarrow e^{\gamma_C} S + (\mathrm{diag}(e^{\gamma_C - \gamma}) K)^\top U'.

:math:`(I + A)^{-1}` is unit lower triangular and computed by forward substitution
(:class:`UnitLowerInverse`, whose backward is :math:`\bar A = -\mathrm{tril}(X^\top \bar X
X^\top, -1)` for :math:`X = (I + A)^{-1}`).

**Linear attention** is the same with :math:`U' = V` (no correction).

Everything before the loop over chunks is ordinary engine ops (matmul, exp, masks), which
autograd differentiates, except :class:`UnitLowerInverse` with its hand-written backward above.
The loop itself (:math:`T / C` steps, carrying :math:`S`) is one :class:`ChunkScan` node with a
hand-written reverse scan. All of it runs on CuPy unchanged.
"""
from __future__ import annotations


from ...autograd import ops
from ...autograd.function import Function
from ...autograd.tensor import Tensor
from ...backend import get_xp
from ...checks import check_finite, check_float_array, check_float_tensor, check_int
from ...kernels.unit_lower_inverse import unit_lower_inverse as unit_lower_inverse_kernel
from .recurrent import prepare_inputs


class UnitLowerInverse(Function):
    """``X = (I + A)^{-1}`` for ``A (..., C, C)``, of which only the strict lower triangle is read
    (so ``A`` need not be masked; the other entries get zero gradient)."""

    @staticmethod
    def forward(ctx, A):
        X = unit_lower_inverse_kernel(A)   # Numba forward substitution (the NumPy twin on CuPy)
        ctx.save_for_backward(X)
        return X

    @staticmethod
    def backward(ctx, gX):
        (X,) = ctx.saved_tensors
        xp = get_xp(X)
        Xt = xp.swapaxes(X, -1, -2)
        return -xp.tril(Xt @ gX @ Xt, -1)


def unit_lower_inverse(A):
    """Differentiable :math:`(I + A)^{-1}` for a Tensor ``A``; only its strict lower triangle is
    read (:mod:`minimem.kernels.unit_lower_inverse`: a Numba kernel on CPU, row by row on CuPy)."""
    fn = "unit_lower_inverse"
    check_float_tensor(fn, "A", A, float16=False)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"{fn}: A must have shape (..., C, C), got {A.shape}")
    return UnitLowerInverse.apply(A)


def ut_transform(k, v, beta, g=None):
    r"""The UT transform of one chunk: ``(W, U)`` with :math:`W = \mathcal{T} \mathrm{diag}
    (e^\gamma) K`, :math:`U = \mathcal{T} V`, :math:`\mathcal{T} = (I + A)^{-1}\mathrm{diag}
    (\beta)` (arrays ``k (C, D_k)``, ``v (C, D_v)``, ``beta (C,)``, optional log-decays ``g``).

    With a zero state on entry, row ``t`` of ``U`` is the delta rule's pseudo-value
    :math:`u_t = \beta_t (v_t - S_{t-1}^\top k_t)` of token ``t``.
    """
    fn = "ut_transform"
    xp = get_xp(k)
    k, v, beta = (xp.asarray(check_float_array(fn, n, x)) for n, x in
                  (("k", k), ("v", v), ("beta", beta)))
    if k.ndim != 2 or v.ndim != 2 or beta.shape != (k.shape[0],) or v.shape[0] != k.shape[0]:
        raise ValueError(f"ut_transform: expected k (C, D_k), v (C, D_v), beta (C,); got "
                         f"{k.shape}, {v.shape}, {beta.shape}")
    check_finite(fn, "beta", beta)
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
def _pad_time(x, T_pad, axis=2):
    """Zero-pad the time axis of a Tensor to length T_pad."""
    T = x.shape[axis]
    if T_pad == T:
        return x
    shape = list(x.shape)
    shape[axis] = T_pad - T
    xp = get_xp(x.data)
    return ops.concatenate([x, Tensor(xp.zeros(shape, dtype=x.dtype))], axis=axis)


def _decayed(S, decay, n):
    """``d_n S`` for chunk ``n`` (``decay`` (B, H, N), ``None``: no decay)."""
    return S if decay is None else decay[:, :, n, None, None] * S


class ChunkScan(Function):
    r"""The sequential part of the chunkwise form: carry the state :math:`S` across chunks.

    Inputs per chunk :math:`n` (axis 2 of ``(B, H, N, C, .)`` arrays): pseudo-values ``U``,
    ``W`` (``None`` for linear attention: :math:`U' = U`), decayed queries ``Q``, the intra-chunk
    matrix ``P``, end-decayed keys ``K_end``, chunk decays ``decay (B, H, N)`` (``None``: 1) and
    the entry state ``S0`` (``None``: zero). With :math:`S_n` the state entering chunk n:

    .. math::
        U'_n = U_n - W_n S_n, \qquad O_n = Q_n S_n + P_n U'_n, \qquad
        S_{n+1} = d_n S_n + K_{\mathrm{end},n}^\top U'_n.

    The forward is one loop over chunks (small temporaries only: fresh large arrays cost page
    faults that rival the matmuls at this size). The backward runs the same scan in reverse:
    :math:`\bar U'_n = P_n^\top \bar O_n + K_{\mathrm{end},n} \bar S_{n+1}`, :math:`\bar S_n =
    Q_n^\top \bar O_n - W_n^\top \bar U'_n + d_n \bar S_{n+1}`; the rest are batched products
    of the saved :math:`S_n`, :math:`U'_n` and :math:`\bar S_{n+1}`. One graph node instead of
    ~7 per chunk keeps the engine's per-op cost out of long sequences.
    Returns ``(O (B, H, N, C, D_v), S_N (B, H, D_k, D_v))``.
    """

    @staticmethod
    def forward(ctx, U, W, Q, P, K_end, decay, S0):
        xp = get_xp(U)
        B, H, N, C, Dv = U.shape
        Dk = Q.shape[-1]
        S = xp.zeros((B, H, Dk, Dv), dtype=U.dtype) if S0 is None else S0
        taped = any(ctx.needs_input_grad)       # keep S_n and U'_n only for a backward
        states = xp.empty((B, H, N, Dk, Dv), dtype=U.dtype) if taped else None
        Up = xp.empty_like(U) if taped and W is not None else U
        O = xp.empty(Q.shape[:-1] + (Dv,), dtype=U.dtype)
        Kt = xp.swapaxes(K_end, -1, -2)
        for n in range(N):
            if taped:
                states[:, :, n] = S
            U_n = U[:, :, n] if W is None else U[:, :, n] - W[:, :, n] @ S   # U'_n
            if Up is not U:
                Up[:, :, n] = U_n
            O[:, :, n] = Q[:, :, n] @ S + P[:, :, n] @ U_n
            S = Kt[:, :, n] @ U_n + _decayed(S, decay, n)
        ctx.save_for_backward(W, Q, P, K_end, decay, states, Up)
        return O, S

    @staticmethod
    def backward(ctx, dO, dS):
        W, Q, P, K_end, decay, states, Up = ctx.saved_tensors
        xp = get_xp(dO)
        T_ = lambda x: xp.swapaxes(x, -1, -2)  # noqa: E731
        N = Up.shape[2]
        dUp = T_(P) @ dO                    # the dS-independent parts, batched over chunks
        dS_prev_base = T_(Q) @ dO
        dS_after = xp.empty_like(states)    # gradient reaching S_{n+1}
        for n in reversed(range(N)):
            dS_after[:, :, n] = dS
            dUp[:, :, n] += K_end[:, :, n] @ dS
            dS_n = dS_prev_base[:, :, n] + _decayed(dS, decay, n)
            if W is not None:
                dS_n -= T_(W[:, :, n]) @ dUp[:, :, n]
            dS = dS_n
        dW = None if W is None else -(dUp @ T_(states))
        dQ = dO @ T_(states)
        dP = dO @ T_(Up)
        dK_end = Up @ T_(dS_after)
        ddecay = None if decay is None else (states * dS_after).sum(axis=(-1, -2))
        return dUp, dW, dQ, dP, dK_end, ddecay, dS


def chunk_recurrence(q, k, v, beta, g, S0, scale, chunk_size, delta=True):
    """Chunkwise form of the recurrence (Tensors, checked by the caller).

    ``delta=False``: linear attention (``beta`` ignored); ``g=None``: no decay; ``S0=None``:
    zero state. Returns ``(o (B,H,T,D_v), S_T (B,H,D_k,D_v))``, both differentiable.
    """
    fn = "chunk_recurrence"
    q, k, v, beta, g, S0, scale = prepare_inputs(fn, q, k, v, beta if delta else None, g,
                                                 scale, S0)
    chunk_size = check_int(fn, "chunk_size", chunk_size, low=1)
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
    W = decay = None          # no correction (linear attention) / no decay (ungated)
    if g is not None:
        gc = ops.reshape(_pad_time(g, N * C), (B, H, N, C))
        gamma = gc @ Tensor(xp.triu(xp.ones((C, C), dtype=dt)))      # cumulative sum
        diff = ops.expand_dims(gamma, -1) - ops.expand_dims(gamma, -2)
        Gamma = ops.exp(diff * Tensor(incl.astype(dt))) * Tensor(incl.astype(dt))
        e_gamma = ops.exp(gamma)
        gamma_C = gamma[..., C - 1:]
        Q = Q * ops.expand_dims(e_gamma, -1)
        K_end = K * ops.expand_dims(ops.exp(gamma_C - gamma), -1)
        decay = ops.exp(gamma_C[..., 0])                             # (B, H, N)
    else:
        Gamma = Tensor(incl.astype(dt))
        K_end = K
    P = P_base * Gamma                                               # tril(s Q K^T o Gamma)
    if delta:
        bc = ops.reshape(_pad_time(beta, N * C), (B, H, N, C))
        # diag(beta) K K^T o Gamma; unit_lower_inverse reads only its strict lower triangle
        A = (K * ops.expand_dims(bc, -1)) @ KT
        if g is not None:
            A = A * Gamma
        Tm = unit_lower_inverse(A) * ops.expand_dims(bc, -2)          # (I + A)^{-1} diag(beta)
        W = Tm @ (K * ops.expand_dims(e_gamma, -1) if g is not None else K)
        U = Tm @ V
    else:
        U = V
    O, S = ChunkScan.apply(U, W, Q, P, K_end, decay, S0)
    o = ops.reshape(O, (B, H, N * C, Dv))
    if N * C != T:
        o = o[:, :, :T]
    return o, S
