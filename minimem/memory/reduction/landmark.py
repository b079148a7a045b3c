r"""Landmark attention (Mohtashami & Jaggi, 2023): a landmark token per block gates the block.

The sequence is cut into blocks of :math:`b` tokens, each followed by a landmark token:
position :math:`p` is in group :math:`g(p) = \lfloor p / (b+1) \rfloor` and is the landmark
of its group when :math:`p \bmod (b+1) = b`. With scores :math:`s_{ij} = \tau q_i^\top k_j`,
query :math:`i` takes two softmaxes. The *outer* one runs over the regular tokens
:math:`j \le i` of its own group and the landmarks :math:`\lambda_c` of the earlier groups
:math:`c < g(i)`:

.. math:: \alpha_{ij} = \frac{e^{s_{ij}}}{\sum_{j' \in \mathcal{O}_i} e^{s_{ij'}}}, \qquad
          \mathcal{O}_i = \{j \le i: g(j) = g(i),\ j \text{ regular}\} \cup
          \{\lambda_c : c < g(i)\};

the *inner* one runs inside each earlier group :math:`c`, over its :math:`b` regular tokens:
:math:`\beta_{ij} = e^{s_{ij}} / \sum_{j' \in c} e^{s_{ij'}}`. The weight of a token is

.. math:: a_{ij} = \alpha_{ij} \ \text{ if } g(j) = g(i), \qquad
          a_{ij} = \alpha_{i \lambda_{g(j)}}\, \beta_{ij} \ \text{ if } g(j) < g(i),

and 0 on landmarks: a landmark's weight is handed to the tokens of its block (the grouped
softmax; the weights still sum to 1), and :math:`o_i = \sum_j a_{ij} v_j`.

Retrieval (inference): the landmark score :math:`s_{i\lambda_c}` ranks the blocks; keeping
only the ``top_k`` best landmarks in :math:`\mathcal{O}_i` (the others drop out of the outer
softmax) attends to :math:`k` blocks plus the current one, whatever the context length.
:func:`landmark_attention` computes all queries as masked dense products (the reference,
with autograd's backward); :func:`landmark_decode` computes one decoding query by gathering
only the retrieved blocks from the cache, :math:`O(k b)` work per step instead of
:math:`O(T)`; they agree.
"""
from __future__ import annotations

import numpy as np

from ...autograd import Tensor, ops
from ...backend import get_xp
from ...checks import check_float_tensor, check_int, check_ndim, check_shape
from .prefix import check_qkv, check_scale

NEG = -1e30  # a masked logit: exp underflows to exactly 0, never NaN


def landmark_layout(T, block):
    """group (T,) and is_landmark (T,) of the positions of a sequence with landmarks."""
    p = np.arange(T)
    return p // (block + 1), p % (block + 1) == block


def insert_landmarks(tokens, block, landmark_id):
    """Tokens (N, T) with ``landmark_id`` after every ``block`` tokens; also the index of each
    original token in the result (so outputs can be read back at those positions)."""
    fn = "insert_landmarks"
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.dtype.kind not in "iu":
        raise ValueError(f"{fn}: tokens must be an integer array (N, T), got {tokens.dtype} "
                         f"{tokens.shape}")
    b = check_int(fn, "block", block, low=1)
    N, T = tokens.shape
    keep = np.arange(T) + np.arange(T) // b          # position of token t after insertion
    out = np.full((N, T + T // b), landmark_id, dtype=tokens.dtype)
    out[:, keep] = tokens
    return out, keep


def _check(fn, q, k, v, block, top_k, scale):
    B, H, T, D = check_qkv(fn, q, k, v)
    b = check_int(fn, "block", block, low=1)
    if top_k is not None:
        check_int(fn, "top_k", top_k, low=1)
    return b, check_scale(fn, scale, D)


def _pad_keys(x, Tp):
    """x (B, H, T, D) with zero rows appended up to Tp (whole groups)."""
    T = x.shape[2]
    if Tp == T:
        return x
    xp = get_xp(x.data)
    pad = Tensor(xp.zeros(x.shape[:2] + (Tp - T, x.shape[3]), dtype=x.dtype))
    return ops.concatenate([x, pad], axis=2)


def _masks(T, b, xp):
    """Per (query i, key j) of the padded key axis: the outer set, earlier regular tokens
    (inner softmax), own-group regular tokens; and per (i, group c): c is an earlier group."""
    L = b + 1
    G = -(-T // L)
    gi, _ = landmark_layout(T, b)
    gj, lmj = landmark_layout(G * L, b)
    exists = np.arange(G * L) < T
    causal = np.arange(G * L)[None, :] <= np.arange(T)[:, None]
    earlier = gj[None, :] < gi[:, None]
    own = (gj[None, :] == gi[:, None]) & ~lmj[None, :] & causal
    outer = own | (lmj[None, :] & earlier & exists[None, :])
    inner = ~lmj[None, :] & earlier & exists[None, :]
    earlier_group = np.arange(G)[None, :] < gi[:, None]
    return [xp.asarray(m) for m in (outer, inner, own, earlier_group)], G, L


def _keep_top_k(s5, earlier_group, top_k, xp):
    """(B, H, T, G) bool: the top_k earlier groups of each query by landmark score."""
    lm_score = xp.where(earlier_group, s5.data[..., -1], -xp.inf)
    if top_k >= lm_score.shape[-1]:
        return earlier_group
    kth = -xp.sort(-lm_score, axis=-1)[..., top_k - 1:top_k]
    return (lm_score >= kth) & earlier_group


def landmark_attention(q, k, v, block, top_k=None, scale=None):
    """Grouped-softmax attention over a sequence with a landmark after every ``block`` tokens.

    q, k, v (B, H, T, D) Tensors laid out as :func:`landmark_layout` says (the landmarks'
    own q, k, v included); returns (B, H, T, D_v). ``top_k``: keep only the ``top_k`` earlier
    blocks with the best landmark score per query (retrieval; None = all, the training form).
    """
    fn = "landmark_attention"
    b, scale = _check(fn, q, k, v, block, top_k, scale)
    xp = get_xp(q.data)
    B, H, T, _ = q.shape
    (outer, inner, own, earlier_group), G, L = _masks(T, b, xp)
    kp, vp = _pad_keys(k, G * L), _pad_keys(v, G * L)
    s = (q @ ops.swapaxes(kp, -1, -2)) * scale                       # (B, H, T, G L)
    s5 = ops.reshape(s, (B, H, T, G, L))
    if top_k is not None:
        keep = _keep_top_k(s5, earlier_group, top_k, xp)            # (B, H, T, G)
        is_lm = xp.asarray(np.arange(G * L) % L == b)
        dropped = xp.repeat(~keep, L, axis=-1) & is_lm
        outer = outer & ~dropped
    neg = Tensor(xp.asarray(NEG, dtype=s.dtype))
    alpha = ops.reshape(ops.softmax(ops.where(outer, s, neg), axis=-1), (B, H, T, G, L))
    inner5 = xp.reshape(inner, (T, G, L))
    beta = ops.softmax(ops.where(inner5, s5, neg), axis=-1) * inner5.astype(s.dtype)
    gate = alpha[..., L - 1:L]                                       # the landmarks' weights
    own5 = xp.reshape(own, (T, G, L)).astype(s.dtype)
    weights = alpha * own5 + gate * beta
    return ops.reshape(weights, (B, H, T, G * L)) @ vp


def landmark_decode(q, k_cache, v_cache, block, top_k, scale=None):
    """One decoding query at the last position of the cache: q (B, H, D), k_cache, v_cache
    (B, H, T, D) laid out with landmarks (:func:`landmark_layout`). Gathers the ``top_k``
    earlier blocks with the best landmark score, and the current block; equal to the last
    row of ``landmark_attention(q_all, k_cache, v_cache, block, top_k)``. Returns (B, H, D_v).
    """
    fn = "landmark_decode"
    check_float_tensor(fn, "q", q, float16=False)
    check_ndim(fn, "q", q, 3)
    B, H, D = q.shape
    check_float_tensor(fn, "k_cache", k_cache, float16=False)
    check_shape(fn, "k_cache", k_cache, (B, H, None, D), "B, H, T, D")
    if k_cache.shape[2] < 1:
        raise ValueError(f"{fn}: the cache must hold at least one position, got "
                         f"{k_cache.shape}")
    b, scale = _check(fn, ops.broadcast_to(ops.expand_dims(q, 2), k_cache.shape), k_cache,
                      v_cache, block, top_k, scale)
    T, L, Dv = k_cache.shape[2], b + 1, v_cache.shape[-1]
    g_i = (T - 1) // L
    start, stop = g_i * L, min(T, g_i * L + b)       # the current block's regular tokens
    q1 = ops.expand_dims(q, 2)
    s_own = ops.squeeze(q1 @ ops.swapaxes(k_cache[:, :, start:stop], -1, -2), 2) * scale
    v_own = v_cache[:, :, start:stop]
    if g_i == 0:
        return ops.squeeze(ops.expand_dims(ops.softmax(s_own, axis=-1), 2) @ v_own, 2)
    kb = ops.reshape(k_cache[:, :, :g_i * L], (B, H, g_i, L * D))
    vb = ops.reshape(v_cache[:, :, :g_i * L], (B, H, g_i, L * Dv))
    s_lm = (q1 @ ops.swapaxes(ops.reshape(kb, (B, H, g_i, L, D))[..., b, :], -1, -2))
    kk = min(top_k, g_i)
    best = np.argsort(-s_lm.data[:, :, 0], axis=-1, kind="stable")[..., :kk, None]
    k_sel = ops.reshape(ops.take_along_axis(kb, best, axis=2), (B, H, kk, L, D))
    v_sel = ops.reshape(ops.take_along_axis(vb, best, axis=2), (B, H, kk, L, Dv))
    s_sel = ops.einsum("bhd,bhkld->bhkl", q, k_sel) * scale          # (B, H, kk, L)
    alpha = ops.softmax(ops.concatenate([s_own, s_sel[..., b]], axis=-1), axis=-1)
    n_own = stop - start
    beta = ops.softmax(s_sel[..., :b], axis=-1)                       # inside each block
    from_blocks = ops.einsum("bhk,bhkl,bhkle->bhe", alpha[..., n_own:], beta,
                             v_sel[:, :, :, :b])
    return ops.squeeze(ops.expand_dims(alpha[..., :n_own], 2) @ v_own, 2) + from_blocks
