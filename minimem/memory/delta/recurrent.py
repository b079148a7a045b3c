r"""Shared plumbing of the linear-attention / delta-rule chapter.

* :class:`RecurrentDeltaFunction`: the token-by-token recurrence (Numba kernel forward, the
  hand-derived reverse-time backward of :mod:`minimem.kernels.delta_recurrent`) as an autograd
  ``Function`` of ``q, k, v, beta, g, S0``.
* :func:`prepare_inputs`: argument checks shared by ``linear_attention``, ``delta_rule`` and
  ``gated_delta_rule`` (shapes ``(B, H, T, D)``, ``beta``/``g`` ``(B, H, T)``, state
  ``(B, H, D_k, D_v)``), so every public function fails with the same clear messages.
* :func:`mode_settings`: ``mode`` and its one tuning argument. ``chunk_size`` is the chunk
  length of ``mode="chunk"``; ``checkpoint`` is the interval (in tokens) at which
  ``mode="recurrent"`` stores the state for the backward's replay. Each belongs to one mode,
  so passing it with the other mode is an error rather than silently ignored.
"""
from __future__ import annotations

import numpy as np

from ...autograd import ops
from ...autograd.function import Function
from ...autograd.tensor import Tensor
from ...backend import get_xp
from ...checks import check_dtype, check_finite, check_real
from ...kernels.delta_recurrent import (DEFAULT_CHECKPOINT, check_tokens, recurrent_backward,
                                        recurrent_forward)

MODES = ("recurrent", "chunk")
DEFAULT_CHUNK_SIZE = 64


class RecurrentDeltaFunction(Function):
    """``(o, S_T) = recurrence(q, k, v, beta, g, S0)``; ``beta``/``g``/``S0`` may be None.

    ``delta=False`` is linear attention (``beta`` unused), ``gated=False`` means ``g = 0``;
    ``checkpoint`` is the interval (tokens) between the states kept for the backward.
    """

    @staticmethod
    def forward(ctx, q, k, v, beta, g, S0, scale=1.0, delta=True, gated=False,
                checkpoint=DEFAULT_CHECKPOINT):
        xp = get_xp(q)
        B, H, T, Dk = q.shape
        Dv = v.shape[-1]
        N, dt = B * H, q.dtype
        q3, k3, v3 = (x.reshape(N, T, -1).astype(dt, copy=False) for x in (q, k, v))
        b2 = xp.ones((N, T), dt) if beta is None else beta.reshape(N, T).astype(dt, copy=False)
        g2 = xp.zeros((N, T), dt) if g is None else g.reshape(N, T).astype(dt, copy=False)
        s0 = xp.zeros((N, Dk, Dv), dt) if S0 is None else S0.reshape(N, Dk, Dv).astype(dt)
        o, S_T, ckpts = recurrent_forward(q3, k3, v3, b2, g2, s0, scale, delta, gated,
                                          checkpoint)
        ctx.save_for_backward(q3, k3, v3, b2, g2, ckpts)
        ctx.meta = (B, H, T, Dk, Dv, scale, delta, gated, checkpoint)
        return o.reshape(B, H, T, Dv), S_T.reshape(B, H, Dk, Dv)

    @staticmethod
    def backward(ctx, do, dS_T):
        q3, k3, v3, b2, g2, ckpts = ctx.saved_tensors
        B, H, T, Dk, Dv, scale, delta, gated, checkpoint = ctx.meta
        N = B * H
        dq, dk, dv, dbeta, dg, dS0 = recurrent_backward(
            q3, k3, v3, b2, g2, ckpts, scale, do.reshape(N, T, Dv), dS_T.reshape(N, Dk, Dv),
            delta, gated, checkpoint)
        need = ctx.needs_input_grad
        return (dq.reshape(B, H, T, Dk), dk.reshape(B, H, T, Dk), dv.reshape(B, H, T, Dv),
                dbeta.reshape(B, H, T) if need[3] else None,
                dg.reshape(B, H, T) if need[4] else None,
                dS0.reshape(B, H, Dk, Dv) if need[5] else None)


# ---------------------------------------------------------------------------------------------
def _as_tensor(fn, name, x):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray) or type(x).__module__.startswith("cupy"):
        return Tensor(x)
    raise TypeError(f"{fn}: {name} must be a Tensor (or an array), got {type(x).__name__}")


def prepare_inputs(fn, q, k, v, beta=None, g=None, scale=None, initial_state=None):
    """Check every argument; return ``(q, k, v, beta, g, S0, scale)`` as Tensors / a float."""
    q, k, v = (_as_tensor(fn, n, x) for n, x in (("q", q), ("k", k), ("v", v)))
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim != 4:
            raise ValueError(f"{fn}: {name} must have shape (B, H, T, D), got {x.shape}")
        check_dtype(fn, name, x)  # float32/float64: the kernels have no float16 path
    if k.shape != q.shape:
        raise ValueError(f"{fn}: k must have the shape of q {q.shape}, got {k.shape}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"{fn}: v must be (B, H, T, D_v) with (B, H, T) = {q.shape[:3]}, "
                         f"got {v.shape}")
    B, H, T, Dk = q.shape
    if beta is not None:
        beta = _as_tensor(fn, "beta", beta)
        if beta.shape != (B, H, T):
            raise ValueError(f"{fn}: beta must have shape (B, H, T) = {(B, H, T)}, "
                             f"got {beta.shape}")
        check_beta(fn, beta)
    if g is not None:
        g = _as_tensor(fn, "g", g)
        if g.shape != (B, H, T):
            raise ValueError(f"{fn}: g must have shape (B, H, T) = {(B, H, T)}, got {g.shape}")
        check_dtype(fn, "g", g)
        check_finite(fn, "g", g)  # NaN would pass the "<= 0" test below
        if g.data.size and float(g.data.max()) > 0:
            raise ValueError(f"{fn}: g is a log-decay and must be <= 0, got max "
                             f"{float(g.data.max())}")
    if initial_state is not None:
        initial_state = _as_tensor(fn, "initial_state", initial_state)
        if initial_state.shape != (B, H, Dk, v.shape[-1]):
            raise ValueError(f"{fn}: initial_state must have shape (B, H, D_k, D_v) = "
                             f"{(B, H, Dk, v.shape[-1])}, got {initial_state.shape}")
        check_dtype(fn, "initial_state", initial_state)
    scale = Dk ** -0.5 if scale is None else check_real(fn, "scale", scale)
    # mixed float32/float64 inputs compute in the promoted dtype on every path (the kernel
    # would otherwise take q's), as the references do; gradients come back in each dtype
    given = [x for x in (q, k, v, beta, g, initial_state) if x is not None]
    dt = np.result_type(*(x.dtype for x in given))
    q, k, v, beta, g, initial_state = (None if x is None else ops.astype(x, dt)
                                       for x in (q, k, v, beta, g, initial_state))
    return q, k, v, beta, g, initial_state, float(scale)


def check_beta(fn, beta):
    """``beta`` floating and finite. Its stable range for unit keys is [0, 2]: the transition
    ``I - beta k k^T`` has eigenvalue ``1 - beta`` in [-1, 1] along ``k`` (beta > 1: negative;
    beta = 2: a reflection). Values outside are computed as given (the state then grows along
    ``k``, which the chapter demonstrates), so they are not rejected."""
    check_dtype(fn, "beta", beta)
    if beta.data.size and not bool(get_xp(beta.data).isfinite(beta.data).all()):
        raise ValueError(f"{fn}: beta must be finite (its stable range is [0, 2]), got NaN "
                         f"or inf")


def mode_settings(fn, mode, chunk_size=None, checkpoint=None):
    """Check ``mode`` and its tuning argument; return ``(chunk_size, checkpoint)``.

    The one that ``mode`` uses comes back validated (``None``: its default, 64 tokens), the
    other as ``None``. Giving the other mode's argument raises a ValueError naming the conflict.
    """
    if mode not in MODES:
        raise ValueError(f"{fn}: mode must be one of {MODES}, got {mode!r}")
    if mode == "chunk":
        if checkpoint is not None:
            raise ValueError(f"{fn}: checkpoint= is the state-saving interval of "
                             f"mode='recurrent'; got checkpoint={checkpoint!r} with "
                             f"mode='chunk' (its chunk length is chunk_size=)")
        size = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
        return check_tokens(fn, "chunk_size", size), None
    if chunk_size is not None:
        raise ValueError(f"{fn}: chunk_size= is the chunk length of mode='chunk'; got "
                         f"chunk_size={chunk_size!r} with mode='recurrent' (its state-saving "
                         f"interval is checkpoint=)")
    interval = DEFAULT_CHECKPOINT if checkpoint is None else checkpoint
    return None, check_tokens(fn, "checkpoint", interval)
