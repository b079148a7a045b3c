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

**Feature map and normalizer.** With a feature map :math:`\phi` (:mod:`.feature_maps`) queries
and keys are mapped first, :math:`q_t \to \phi(q_t)`, :math:`k_t \to \phi(k_t)` (then
:math:`d_k` is the feature dimension), so the weight of :math:`v_j` is the kernel
:math:`\kappa(q_t, k_j) = \phi(q_t)^\top \phi(k_j)`. ``normalize=True`` divides by the sum of
the weights, read from a second state :math:`z_t = \sum_{j \le t} \phi(k_j)`:

.. math::
    o_t = \frac{S_t^\top \phi(q_t)}{z_t^\top \phi(q_t) + \varepsilon}
        = \frac{\sum_{j \le t} \kappa(q_t, k_j)\, v_j}{\sum_{j \le t} \kappa(q_t, k_j)
          + \varepsilon},

a convex combination of the values when :math:`\kappa \ge 0` (softmax attention is the case
:math:`\kappa = e^{q^\top k}`); a scale :math:`s` would cancel, so none is applied. The
fast forms carry :math:`z_t` as one more value column: :math:`[S_t \mid z_t]` is linear
attention on values :math:`[v_t \mid 1]`.

**Gated linear attention** decays the state by a scalar :math:`e^{g_t}` per head and token
(:math:`g_t \le 0`) before each write:

.. math::
    S_t = e^{g_t} S_{t-1} + k_t v_t^\top, \qquad
    o_t = S_t^\top (s\, q_t) = \sum_{j \le t} e^{\gamma_t - \gamma_j} (s\, q_t^\top k_j)\, v_j,
    \quad \gamma_t = \sum_{i \le t} g_i,

so the weight of token :math:`j` seen from :math:`t` shrinks by :math:`e^{\gamma_t -
\gamma_j} \le 1`. A constant :math:`g_t = \log \gamma` is RetNet's retention (fixed decay
:math:`\gamma^{t-j}`); a data-dependent :math:`g_t` is Mamba2 / SSD's scalar decay.

Formulations, all differentiable in every input (``q, k, v, g, initial_state``):

* :func:`linear_attention_reference` / :func:`gated_linear_attention_reference`: the
  recurrences above, token by token, written with engine ops;
* ``mode="recurrent"``: the Numba kernel with its hand-derived backward
  (:mod:`minimem.kernels.delta_recurrent`);
* ``mode="chunk"``: the chunkwise matmul form (:mod:`minimem.memory.delta.chunkwise`):
  :math:`O = s Q S + \mathrm{tril}(s Q K^\top \odot \Gamma) V`, :math:`S \leftarrow
  e^{\gamma_C} S + (\mathrm{diag}(e^{\gamma_C - \gamma}) K)^\top V` per chunk.
"""
from __future__ import annotations

from ...autograd import ops
from ...autograd.tensor import Tensor
from ...backend import get_xp
from ...checks import check_bool, check_real
from .chunkwise import chunk_recurrence
from .feature_maps import _check_kind as check_feature_kind
from .feature_maps import feature_map as apply_feature_map
from .recurrent import RecurrentDeltaFunction, mode_settings, prepare_inputs


def _mapped(fn, q, k, v, feature_map):
    """Check ``q, k, v``; return them with ``feature_map`` (a kind, a callable or None) applied
    to ``q`` and ``k``."""
    q, k, v, *_ = prepare_inputs(fn, q, k, v)
    if feature_map is None:
        return q, k, v
    if isinstance(feature_map, str):
        check_feature_kind(feature_map, {}, fn, "feature_map")
        phi = lambda x: apply_feature_map(x, feature_map)  # noqa: E731
    elif (isinstance(feature_map, tuple) and len(feature_map) == 2
          and isinstance(feature_map[0], str) and isinstance(feature_map[1], dict)):
        kind, params = feature_map
        check_feature_kind(kind, params, fn, "feature_map")
        phi = lambda x: apply_feature_map(x, kind, **params)  # noqa: E731
    elif callable(feature_map):
        phi = feature_map
    else:
        raise TypeError(f"{fn}: feature_map must be None, a kind (str), a (kind, dict of "
                        f"parameters) pair or a callable, got {type(feature_map).__name__}")
    fq, fk = phi(q), phi(k)
    if not isinstance(fq, Tensor) or fq.shape[:3] != q.shape[:3] or fk.shape != fq.shape:
        raise ValueError(f"{fn}: feature_map must map (B, H, T, D) to (B, H, T, D') for q and "
                         f"k alike, got {getattr(fq, 'shape', None)} and "
                         f"{getattr(fk, 'shape', None)}")
    return fq, fk, v


def _with_ones(v):
    """``[v | 1]``: the extra value column whose state is the normalizer z."""
    ones = Tensor(get_xp(v.data).ones(v.shape[:3] + (1,), dtype=v.dtype))
    return ops.concatenate([v, ones], axis=-1)


def _normalized(o, eps):
    """``o (B, H, T, D_v + 1)`` holds ``[S^T phi(q) | z^T phi(q)]``: divide."""
    return o[..., :-1] / (o[..., -1:] + eps)


def _check_normalize(fn, normalize, eps):
    return check_bool(fn, "normalize", normalize), check_real(fn, "eps", eps, low=0,
                                                              low_open=True)


def linear_attention(q, k, v, scale=None, initial_state=None, output_final_state=False,
                     mode="recurrent", chunk_size=None, checkpoint=None, feature_map=None,
                     normalize=False, eps=1e-6):
    """Causal linear attention; returns ``(o (B,H,T,D_v), S_T or None)``.

    ``q, k (B, H, T, D)``, ``v (B, H, T, D_v)``. ``feature_map``: ``None`` (identity), a kind
    of :func:`~minimem.memory.delta.feature_maps.feature_map` (``"elu1"``, ``"dpfp"``, ...), a
    pair ``(kind, {parameters})`` such as ``("dpfp", {"nu": 2})``, or a callable on Tensors; ``D_k`` is then the feature dimension and ``scale`` defaults to
    :math:`D_k^{-1/2}` as without a map. ``normalize=True`` divides by :math:`z_t^\\top
    \\phi(q_t) + \\varepsilon` (``eps``); the state then carries :math:`z` as its last column,
    ``(B, H, D_k, D_v + 1)`` (``initial_state`` too). ``mode`` is ``"recurrent"`` (Numba kernel,
    the state stored every ``checkpoint`` tokens for the backward's replay) or ``"chunk"``
    (matmuls on chunks of ``chunk_size`` tokens). Both default to 64, and each is an error with
    the other mode.
    """
    fn = "linear_attention"
    normalize, eps = _check_normalize(fn, normalize, eps)
    q, k, v = _mapped(fn, q, k, v, feature_map)
    if normalize:
        v = _with_ones(v)
    q, k, v, _, _, S0, scale = prepare_inputs(fn, q, k, v, scale=scale,
                                              initial_state=initial_state)
    chunk_size, checkpoint = mode_settings(fn, mode, chunk_size, checkpoint)
    if normalize:   # the scale would cancel in the ratio but for eps: it is not applied
        scale = 1.0
    o, S = _scan(q, k, v, None, S0, scale, mode, chunk_size, checkpoint)
    if normalize:
        o = _normalized(o, eps)
    return o, (S if output_final_state else None)


def gated_linear_attention(q, k, v, g, scale=None, initial_state=None,
                           output_final_state=False, mode="recurrent", chunk_size=None,
                           checkpoint=None):
    """Linear attention with a scalar decay per head and token: returns ``(o, S_T or None)``.

    :math:`S_t = e^{g_t} S_{t-1} + k_t v_t^\\top`, :math:`o_t = S_t^\\top (s\\, q_t)`, with
    log-decays ``g (B, H, T)``, ``g <= 0`` (a constant ``g`` is RetNet's decay). The other
    arguments as in :func:`linear_attention`.
    """
    fn = "gated_linear_attention"
    if g is None:
        raise TypeError(f"{fn}: g is required (log-decays of shape (B, H, T))")
    q, k, v, _, g, S0, scale = prepare_inputs(fn, q, k, v, g=g, scale=scale,
                                              initial_state=initial_state)
    chunk_size, checkpoint = mode_settings(fn, mode, chunk_size, checkpoint)
    o, S = _scan(q, k, v, g, S0, scale, mode, chunk_size, checkpoint)
    return o, (S if output_final_state else None)


def _scan(q, k, v, g, S0, scale, mode, chunk_size, checkpoint):
    if mode == "chunk":
        return chunk_recurrence(q, k, v, None, g, S0, scale, chunk_size, delta=False)
    return RecurrentDeltaFunction.apply(q, k, v, None, g, S0, scale=scale, delta=False,
                                        gated=g is not None, checkpoint=checkpoint)


def linear_attention_reference(q, k, v, scale=None, initial_state=None, feature_map=None,
                               normalize=False, eps=1e-6):
    """The recurrence token by token with engine ops: returns ``(o, S_T)`` (slow, plain).

    With ``normalize=True`` the normalizer :math:`z_t` is a separate running sum, and the
    state returned is ``[S_T | z_T]`` (as in :func:`linear_attention`).
    """
    fn = "linear_attention_reference"
    normalize, eps = _check_normalize(fn, normalize, eps)
    q, k, v = _mapped(fn, q, k, v, feature_map)
    state = initial_state
    if normalize and initial_state is not None:
        state = prepare_inputs(fn, q, k, _with_ones(v), initial_state=initial_state)[5]
        state, z = state[..., :-1], state[..., -1]
    q, k, v, _, _, S, scale = prepare_inputs(fn, q, k, v, scale=scale, initial_state=state)
    B, H, T, Dk = q.shape
    xp = get_xp(q.data)
    if S is None:
        S = Tensor(xp.zeros((B, H, Dk, v.shape[-1]), dtype=q.dtype))
    if normalize and initial_state is None:
        z = Tensor(xp.zeros((B, H, Dk), dtype=q.dtype))
    outs = []
    for t in range(T):
        q_t, k_t, v_t = q[:, :, t], k[:, :, t], v[:, :, t]
        # Exercise 20.1 (2 pt): one step of linear attention for all (batch, head) pairs:
        #   S <- S + k_t v_t^T (S is (B, H, D_k, D_v)), then the read o_t = S^T (scale q_t),
        #   of shape (B, H, D_v). Use engine ops so autograd differentiates it.
        # Needs: 0.1, 0.2, 0.5
        ### BEGIN SOLUTION
        S = S + ops.expand_dims(k_t, -1) * ops.expand_dims(v_t, -2)
        o_t = ops.einsum("bhij,bhi->bhj", S, q_t * scale)
        ### END SOLUTION
        if normalize:
            # Exercise 20.6 (2 pt): the normalizer. q_t, k_t are already phi(q_t), phi(k_t):
            #   update z (B, H, D_k) to z_t = z_{t-1} + phi(k_t), then replace o_t by
            #   S_t^T phi(q_t) / (z_t^T phi(q_t) + eps) (no scale), of shape (B, H, D_v).
            # Needs: 0.1, 0.2, 0.5, 20.1
            ### BEGIN SOLUTION
            z = z + k_t
            o_t = ops.einsum("bhij,bhi->bhj", S, q_t) / ops.expand_dims(
                ops.sum(z * q_t, axis=-1) + eps, -1)
            ### END SOLUTION
        outs.append(o_t)
    if normalize:
        S = ops.concatenate([S, ops.expand_dims(z, -1)], axis=-1)
    if not outs:
        return Tensor(xp.zeros(v.shape, dtype=q.dtype)), S
    return ops.stack(outs, axis=2), S


def gated_linear_attention_reference(q, k, v, g, scale=None, initial_state=None):
    """Gated linear attention token by token with engine ops: returns ``(o, S_T)``."""
    fn = "gated_linear_attention_reference"
    if g is None:
        raise TypeError(f"{fn}: g is required (log-decays of shape (B, H, T))")
    q, k, v, _, g, S, scale = prepare_inputs(fn, q, k, v, g=g, scale=scale,
                                             initial_state=initial_state)
    B, H, T, Dk = q.shape
    xp = get_xp(q.data)
    if S is None:
        S = Tensor(xp.zeros((B, H, Dk, v.shape[-1]), dtype=q.dtype))
    outs = []
    for t in range(T):
        decay = ops.expand_dims(ops.expand_dims(ops.exp(g[:, :, t]), -1), -1)
        S = decay * S + ops.expand_dims(k[:, :, t], -1) * ops.expand_dims(v[:, :, t], -2)
        outs.append(ops.einsum("bhij,bhi->bhj", S, q[:, :, t] * scale))
    if not outs:
        return Tensor(xp.zeros(v.shape, dtype=q.dtype)), S
    return ops.stack(outs, axis=2), S
