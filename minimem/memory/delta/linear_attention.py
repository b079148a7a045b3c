r"""Linear attention: softmax attention without the softmax is a recurrent associative memory.

Per head, queries scaled by :math:`s` (default :math:`d_k^{-1/2}`), the state
:math:`S_t \in \mathbb{R}^{d_k \times d_v}` sums outer products and the read comes after the
write:

.. math::
    S_t = S_{t-1} + k_t v_t^\top, \qquad o_t = S_t^\top (s\, q_t)
    = \sum_{j \le t} (s\, q_t^\top k_j)\, v_j ,

which is causal attention with weights :math:`s\,q_t^\top k_j` instead of
:math:`\mathrm{softmax}_j(s\, q_t^\top k_j)`. Reading the value stored under :math:`k_i`
returns :math:`v_i \|k_i\|^2 + \sum_{j \ne i} (k_i^\top k_j) v_j`: every other pair leaks in
(crosstalk), so with random unit keys in :math:`d_k` dimensions the signal-to-noise ratio
falls like :math:`d_k / N` with the number :math:`N` of stored pairs.

Three formulations, all differentiable in every input (``q, k, v, initial_state``):

* :func:`linear_attention_reference`: the recurrence above, written with engine ops;
* ``linear_attention(..., mode="recurrent")``: the Numba kernel with its hand-derived
  backward (:mod:`minimem.kernels.delta_recurrent`);
* ``linear_attention(..., mode="chunk")``: the chunkwise matmul form
  (:mod:`minimem.memory.delta.chunkwise`): :math:`O = s Q S + \mathrm{tril}(s Q K^\top) V`,
  :math:`S \leftarrow S + K^\top V` per chunk.
"""
from __future__ import annotations

from ...autograd import ops
from ...autograd.tensor import Tensor
from ...backend import get_xp
from .recurrent import RecurrentDeltaFunction, mode_settings, prepare_inputs
from .chunkwise import chunk_recurrence


def linear_attention(q, k, v, scale=None, initial_state=None, output_final_state=False,
                     mode="recurrent", chunk_size=None, checkpoint=None):
    """Causal linear attention; returns ``(o (B,H,T,D_v), S_T or None)``.

    ``q, k (B, H, T, D_k)``, ``v (B, H, T, D_v)``, ``initial_state (B, H, D_k, D_v)``;
    ``mode`` is ``"recurrent"`` (Numba kernel, the state stored every ``checkpoint`` tokens
    for the backward's replay) or ``"chunk"`` (matmuls on chunks of ``chunk_size`` tokens).
    Both default to 64, and each is an error with the other mode.
    """
    q, k, v, _, _, S0, scale = prepare_inputs("linear_attention", q, k, v, scale=scale,
                                              initial_state=initial_state)
    chunk_size, checkpoint = mode_settings("linear_attention", mode, chunk_size, checkpoint)
    if mode == "chunk":
        o, S = chunk_recurrence(q, k, v, None, None, S0, scale, chunk_size, delta=False)
    else:
        o, S = RecurrentDeltaFunction.apply(q, k, v, None, None, S0, scale=scale, delta=False,
                                            gated=False, checkpoint=checkpoint)
    return o, (S if output_final_state else None)


def linear_attention_reference(q, k, v, scale=None, initial_state=None):
    """The recurrence token by token with engine ops: returns ``(o, S_T)`` (slow, plain)."""
    q, k, v, _, _, S, scale = prepare_inputs("linear_attention_reference", q, k, v,
                                             scale=scale, initial_state=initial_state)
    B, H, T, Dk = q.shape
    if S is None:
        S = Tensor(get_xp(q.data).zeros((B, H, Dk, v.shape[-1]), dtype=q.dtype))
    outs = []
    for t in range(T):
        q_t, k_t, v_t = q[:, :, t], k[:, :, t], v[:, :, t]
        # Exercise 20.1 (2 pt): one step of linear attention for all (batch, head) pairs:
        #   S <- S + k_t v_t^T (S is (B, H, D_k, D_v)), then the read o_t = S^T (scale q_t),
        #   of shape (B, H, D_v). Use engine ops so autograd differentiates it.
        ### BEGIN SOLUTION
        S = S + ops.expand_dims(k_t, -1) * ops.expand_dims(v_t, -2)
        o_t = ops.einsum("bhij,bhi->bhj", S, q_t * scale)
        ### END SOLUTION
        outs.append(o_t)
    if not outs:
        return Tensor(get_xp(q.data).zeros(v.shape, dtype=q.dtype)), S
    return ops.stack(outs, axis=2), S
