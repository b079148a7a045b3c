r"""DeltaProduct: :math:`n_h` delta-rule steps per token, a product of Householder transitions.

The delta rule's transition :math:`I - \beta_t k_t k_t^\top` (unit :math:`k_t`) has one
eigenvalue :math:`1 - \beta_t` and :math:`d_k - 1` eigenvalues 1: each token moves the state
in one direction only. DeltaProduct (Siems et al. 2025) takes :math:`n_h` keys, values and
step sizes per token, :math:`k_{t,1..n_h}`, :math:`v_{t,1..n_h}`, :math:`\beta_{t,1..n_h}`,
runs :math:`n_h` delta steps, and reads once:

.. math::
    S_{t,0} = e^{g_t} S_{t-1}, \qquad
    S_{t,j} = (I - \beta_{t,j} k_{t,j} k_{t,j}^\top)\, S_{t,j-1}
              + \beta_{t,j} k_{t,j} v_{t,j}^\top \quad (j = 1..n_h), \\
    S_t = S_{t,n_h}, \qquad o_t = S_t^\top (s\, q_t).

Unrolled, the transition of token :math:`t` is the product
:math:`A_t = \prod_{j=n_h}^{1} (I - \beta_{t,j} k_{t,j} k_{t,j}^\top)` (later factors on the
left), a product of :math:`n_h` generalized Householder matrices: it may rotate within the span
of its keys (with :math:`\beta = 2` each factor is a reflection :math:`H = I - 2 k k^\top`, and
two reflections make any rotation of that plane), which a single factor cannot.

**Interleaving.** The same state sequence is the delta rule run on the :math:`T n_h` steps
:math:`(t, j)` in order (token-major), with the gate :math:`g_t` on step :math:`(t, 1)` and
:math:`0` on the others, read only at the steps :math:`(t, n_h)`: the fast forms
(``mode="recurrent"``: the Numba kernel; ``mode="chunk"``: the UT/WY chunkwise form) run
exactly that, with a zero query on the steps that are not read. :func:`delta_product_reference`
is the loop above in engine ops.

Step sizes :math:`\beta \in [0, 2]`: the eigenvalue :math:`1 - \beta \in [-1, 1]` along each
key (negative for :math:`\beta > 1`, the reflection at :math:`\beta = 2`).
"""
from __future__ import annotations

from ...autograd import ops
from ...autograd.tensor import Tensor
from ...backend import get_xp
from .delta_rule import delta_rule, gated_delta_rule
from ...checks import check_array, check_dtype, check_finite, check_float_array
from .recurrent import _as_tensor, check_beta, mode_settings, prepare_inputs


def _check(fn, q, k, v, beta, g, initial_state, scale=None):
    """Check the DeltaProduct shapes; return Tensors and ``n_h``."""
    q, k, v, beta = (_as_tensor(fn, n, x) for n, x in (("q", q), ("k", k), ("v", v),
                                                        ("beta", beta)))
    if q.ndim != 4:
        raise ValueError(f"{fn}: q must have shape (B, H, T, D_k), got {q.shape}")
    B, H, T, Dk = q.shape
    if k.ndim != 5 or k.shape[:3] != (B, H, T) or k.shape[4] != Dk or k.shape[3] < 1:
        raise ValueError(f"{fn}: k must have shape (B, H, T, n_h, D_k) with (B, H, T, D_k) = "
                         f"{(B, H, T, Dk)}, got {k.shape}")
    n_h = k.shape[3]
    if v.ndim != 5 or v.shape[:4] != k.shape[:4]:
        raise ValueError(f"{fn}: v must have shape (B, H, T, n_h, D_v) with (B, H, T, n_h) = "
                         f"{k.shape[:4]}, got {v.shape}")
    if beta.shape != k.shape[:4]:
        raise ValueError(f"{fn}: beta must have shape (B, H, T, n_h) = {k.shape[:4]}, got "
                         f"{beta.shape}")
    check_beta(fn, beta)
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_dtype(fn, name, x)
    # the per-token arguments (g, initial_state, scale) are checked on the token shapes
    prepare_inputs(fn, q, q, v[:, :, :, 0], g=g, scale=scale, initial_state=initial_state)
    return q, k, v, beta, n_h


def _interleave(x, n_h):
    """(B, H, T, n_h, ...) -> (B, H, T n_h, ...): step (t, j) at position t n_h + j."""
    B, H, T = x.shape[:3]
    return ops.reshape(x, (B, H, T * n_h) + tuple(x.shape[4:]))


def _on_step(x, n_h, last):
    """Place the per-token ``x (B, H, T, ...)`` on step ``n_h - 1`` (``last``) or step 0 of each
    token and zeros on the others: (B, H, T n_h, ...)."""
    if n_h == 1:
        return x
    xp = get_xp(x.data)
    zeros = Tensor(xp.zeros(x.shape[:3] + (n_h - 1,) + tuple(x.shape[3:]), dtype=x.dtype))
    one = ops.expand_dims(x, 3)
    parts = [zeros, one] if last else [one, zeros]
    return _interleave(ops.concatenate(parts, axis=3), n_h)


def delta_product(q, k, v, beta, g=None, scale=None, initial_state=None,
                  output_final_state=False, mode="recurrent", chunk_size=None,
                  checkpoint=None):
    """DeltaProduct; returns ``(o (B, H, T, D_v), S_T or None)``.

    ``q (B, H, T, D_k)``, ``k (B, H, T, n_h, D_k)`` (keys usually L2-normalized),
    ``v (B, H, T, n_h, D_v)``, ``beta (B, H, T, n_h)`` in ``[0, 2]``, optional log-decays
    ``g (B, H, T)`` (``g <= 0``, the gated DeltaProduct), ``initial_state (B, H, D_k, D_v)``.
    ``mode``, ``chunk_size`` and ``checkpoint`` as in :func:`~.delta_rule.delta_rule`, counted
    in the interleaved steps (``n_h`` per token).
    """
    fn = "delta_product"
    q, k, v, beta, n_h = _check(fn, q, k, v, beta, g, initial_state, scale)
    mode_settings(fn, mode, chunk_size, checkpoint)  # errors name delta_product
    if scale is None:
        scale = q.shape[-1] ** -0.5
    args = (_on_step(q, n_h, last=True), _interleave(k, n_h), _interleave(v, n_h),
            _interleave(beta, n_h))
    kw = {"scale": scale, "initial_state": initial_state, "output_final_state": True,
          "mode": mode, "chunk_size": chunk_size, "checkpoint": checkpoint}
    if g is None:
        o, S = delta_rule(*args, **kw)
    else:
        o, S = gated_delta_rule(*args, _on_step(_as_tensor(fn, "g", g), n_h, last=False), **kw)
    B, H, T = q.shape[:3]
    o = ops.reshape(o, (B, H, T, n_h, v.shape[-1]))[:, :, :, n_h - 1]
    return o, (S if output_final_state else None)


def delta_product_reference(q, k, v, beta, g=None, scale=None, initial_state=None):
    """DeltaProduct token by token, :math:`n_h` Householder steps each, with engine ops:
    returns ``(o, S_T)``."""
    fn = "delta_product_reference"
    q, k, v, beta, n_h = _check(fn, q, k, v, beta, g, initial_state, scale)
    *_, g, S, scale = prepare_inputs(fn, q, q, v[:, :, :, 0], g=g, scale=scale,
                                     initial_state=initial_state)
    B, H, T, Dk = q.shape
    if S is None:
        S = Tensor(get_xp(q.data).zeros((B, H, Dk, v.shape[-1]), dtype=q.dtype))
    outs = []
    for t in range(T):
        if g is not None:   # S_{t,0} = exp(g_t) S_{t-1}
            S = S * ops.expand_dims(ops.expand_dims(ops.exp(g[:, :, t]), -1), -1)
        # Exercise 20.5 (2 pt): the n_h delta-rule steps of token t, for all (batch, head)
        #   pairs: for j = 0..n_h-1, with k_j = k[:, :, t, j], v_j = v[:, :, t, j],
        #   b_j = beta[:, :, t, j], S <- S + k_j (b_j (v_j - S^T k_j))^T. Engine ops only.
        # Needs: 0.1, 0.2, 0.5
        ### BEGIN SOLUTION
        for j in range(n_h):
            k_j, v_j, b_j = k[:, :, t, j], v[:, :, t, j], beta[:, :, t, j]
            error = v_j - ops.einsum("bhij,bhi->bhj", S, k_j)        # v - S^T k
            S = S + ops.expand_dims(k_j, -1) * ops.expand_dims(
                error * ops.expand_dims(b_j, -1), -2)
        ### END SOLUTION
        outs.append(ops.einsum("bhij,bhi->bhj", S, q[:, :, t] * scale))
    if not outs:
        return Tensor(get_xp(q.data).zeros(q.shape[:3] + v.shape[-1:], dtype=q.dtype)), S
    return ops.stack(outs, axis=2), S


def householder_product(k, beta):
    r"""The transition :math:`A = \prod_{j=n_h}^{1} (I - \beta_j k_j k_j^\top)` of one token
    (arrays ``k (n_h, D)``, ``beta (n_h,)``): :math:`S_t = A S_{t-1} + \dots`."""
    fn = "householder_product"
    xp = get_xp(k)
    k, beta = xp.asarray(check_array(fn, "k", k)), xp.asarray(check_array(fn, "beta", beta))
    check_float_array(fn, "k", k)
    check_float_array(fn, "beta", beta)
    if k.ndim != 2 or beta.shape != (k.shape[0],):
        raise ValueError(f"householder_product: expected k (n_h, D) and beta (n_h,), got "
                         f"{k.shape} and {beta.shape}")
    check_finite(fn, "beta", beta)
    A = xp.eye(k.shape[1], dtype=k.dtype)
    for k_j, b_j in zip(k, beta):
        A = (xp.eye(k.shape[1], dtype=k.dtype) - b_j * xp.outer(k_j, k_j)) @ A
    return A
