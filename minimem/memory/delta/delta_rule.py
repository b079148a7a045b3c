r"""The delta rule (DeltaNet) and the gated delta rule (Gated DeltaNet).

Linear attention only adds (:math:`S_t = S_{t-1} + k_t v_t^\top`), so old associations are
never corrected. The delta rule first *reads* what the memory holds under :math:`k_t` and
writes only the error, with a step size :math:`\beta_t \in (0, 1]` (stable in :math:`(0, 2)`
for unit keys):

.. math::
    S_t = S_{t-1} + k_t\, \beta_t \,(v_t - S_{t-1}^\top k_t)^\top
        = (I - \beta_t k_t k_t^\top)\, S_{t-1} + \beta_t k_t v_t^\top ,

one step of gradient descent on :math:`\tfrac12 \|S^\top k_t - v_t\|^2` with learning rate
:math:`\beta_t`. Any :math:`\beta_t \in [0, 2]` is accepted: for a unit key the transition
:math:`I - \beta_t k_t k_t^\top` has the eigenvalue :math:`1 - \beta_t \in [-1, 1]` along
:math:`k_t`, negative for :math:`\beta_t > 1` and a reflection at :math:`\beta_t = 2` (what
parity needs; the layers' ``allow_neg_eigval``). Larger values are computed as given (the
state then grows along :math:`k_t`); NaN or inf is an error. With :math:`\beta_t = 1` and orthonormal keys, each write replaces exactly the
value stored under its key, so :math:`d_k` pairs are retrieved without error (linear attention
is exact only when all keys are orthogonal *and* no key repeats).

The gated delta rule multiplies the memory by a data-dependent decay :math:`a_t = e^{g_t}`
(:math:`g_t \le 0`) before the delta step:

.. math::
    \tilde S_t = e^{g_t} S_{t-1}, \qquad
    S_t = \tilde S_t + k_t\, \beta_t\, (v_t - \tilde S_t^\top k_t)^\top, \qquad
    o_t = S_t^\top (s\, q_t).

Formulations (all differentiable in ``q, k, v, beta, g, initial_state``):
:func:`delta_rule_reference` (engine ops, token by token), ``mode="recurrent"`` (Numba kernel,
hand-derived backward) and ``mode="chunk"`` (the UT/WY chunkwise form of
:mod:`minimem.memory.delta.chunkwise`).
"""
from __future__ import annotations

from ...autograd import ops
from ...autograd.tensor import Tensor
from ...backend import get_xp
from ...checks import check_array, check_float_array, check_real
from .recurrent import RecurrentDeltaFunction, mode_settings, prepare_inputs
from .chunkwise import chunk_recurrence


def _run(fn, q, k, v, beta, g, scale, initial_state, output_final_state, mode, chunk_size,
         checkpoint):
    if beta is None:
        raise TypeError(f"{fn}: beta is required (a Tensor of shape (B, H, T))")
    q, k, v, beta, g, S0, scale = prepare_inputs(fn, q, k, v, beta, g, scale, initial_state)
    chunk_size, checkpoint = mode_settings(fn, mode, chunk_size, checkpoint)
    if mode == "chunk":
        o, S = chunk_recurrence(q, k, v, beta, g, S0, scale, chunk_size, delta=True)
    else:
        o, S = RecurrentDeltaFunction.apply(q, k, v, beta, g, S0, scale=scale, delta=True,
                                            gated=g is not None, checkpoint=checkpoint)
    return o, (S if output_final_state else None)


def delta_rule(q, k, v, beta, scale=None, initial_state=None, output_final_state=False,
               mode="recurrent", chunk_size=None, checkpoint=None):
    """DeltaNet's recurrence; returns ``(o (B,H,T,D_v), S_T or None)``.

    ``q, k (B, H, T, D_k)`` (keys are usually L2-normalized), ``v (B, H, T, D_v)``,
    ``beta (B, H, T)``, ``initial_state (B, H, D_k, D_v)``. ``mode="recurrent"`` (Numba
    kernel) stores the state every ``checkpoint`` tokens for its backward's replay;
    ``mode="chunk"`` works on chunks of ``chunk_size`` tokens (both default to 64; each is an
    error with the other mode). Neither changes the result, only speed and memory.
    """
    return _run("delta_rule", q, k, v, beta, None, scale, initial_state, output_final_state,
                mode, chunk_size, checkpoint)


def gated_delta_rule(q, k, v, beta, g, scale=None, initial_state=None,
                     output_final_state=False, mode="recurrent", chunk_size=None,
                     checkpoint=None):
    """Gated DeltaNet's recurrence with log-decays ``g (B, H, T)`` (``g <= 0``); the other
    arguments as in :func:`delta_rule`."""
    if g is None:
        raise TypeError("gated_delta_rule: g is required (log-decays of shape (B, H, T))")
    return _run("gated_delta_rule", q, k, v, beta, g, scale, initial_state,
                output_final_state, mode, chunk_size, checkpoint)


def delta_rule_reference(q, k, v, beta, g=None, scale=None, initial_state=None):
    """The (gated) delta rule token by token with engine ops: returns ``(o, S_T)``."""
    q, k, v, beta, g, S, scale = prepare_inputs("delta_rule_reference", q, k, v, beta, g,
                                                scale, initial_state)
    if beta is None:
        raise TypeError("delta_rule_reference: beta is required")
    B, H, T, Dk = q.shape
    if S is None:
        S = Tensor(get_xp(q.data).zeros((B, H, Dk, v.shape[-1]), dtype=q.dtype))
    outs = []
    for t in range(T):
        q_t, k_t, v_t, beta_t = q[:, :, t], k[:, :, t], v[:, :, t], beta[:, :, t]
        if g is not None:  # S~ = exp(g_t) S_{t-1}
            S = S * ops.expand_dims(ops.expand_dims(ops.exp(g[:, :, t]), -1), -1)
        # Exercise 20.2 (2 pt): one delta-rule step for all (batch, head) pairs: read the
        #   memory under k_t, write beta_t times the error, S <- S + k_t (beta_t (v_t -
        #   S^T k_t))^T, then o_t = S^T (scale q_t) of shape (B, H, D_v). Engine ops only.
        # Needs: 0.1, 0.2, 0.5
        ### BEGIN SOLUTION
        error = v_t - ops.einsum("bhij,bhi->bhj", S, k_t)
        S = S + ops.expand_dims(k_t, -1) * ops.expand_dims(error * ops.expand_dims(beta_t, -1),
                                                           -2)
        o_t = ops.einsum("bhij,bhi->bhj", S, q_t * scale)
        ### END SOLUTION
        outs.append(o_t)
    if not outs:
        return Tensor(get_xp(q.data).zeros(v.shape, dtype=q.dtype)), S
    return ops.stack(outs, axis=2), S


def transition_matrix(k, beta):
    r"""The delta rule's state transition :math:`I - \beta k k^\top` (array ``k (D,)``).

    Its eigenvalues are 1 (multiplicity :math:`D-1`, directions orthogonal to :math:`k`) and
    :math:`1 - \beta\|k\|^2` along :math:`k`: a contraction of the stored value there for
    :math:`0 < \beta\|k\|^2 < 2`, which is why :math:`\beta \in (0, 2)` is stable for unit keys.
    """
    fn = "transition_matrix"
    xp = get_xp(k)
    k = check_float_array(fn, "k", xp.asarray(check_array(fn, "k", k)))
    if k.ndim != 1:
        raise ValueError(f"transition_matrix: k must be a vector (D,), got shape {k.shape}")
    beta = check_real(fn, "beta", beta)
    return xp.eye(k.shape[0], dtype=k.dtype) - beta * xp.outer(k, k)
