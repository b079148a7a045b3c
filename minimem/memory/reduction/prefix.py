r"""Attention of one query over every prefix (Aaren): the online-softmax merge as a scan.

One query :math:`q` per head attends to the keys :math:`k_1, \dots, k_T`; the output at step
:math:`t` is the softmax attention over the prefix :math:`k_{1..t}`:

.. math:: s_i = \tau\, q^\top k_i, \qquad
          o_t = \frac{\sum_{i \le t} e^{s_i} v_i}{\sum_{i \le t} e^{s_i}}
          \qquad (\tau = 1/\sqrt{d_k}).

Chapter 40's partial result of a set of keys is the triple :math:`(m, \ell, O)` (running max,
sum of exponentials, unnormalized output; Aaren's paper calls them :math:`(m, u, w)`). Token
:math:`i` alone is :math:`x_i = (s_i, 1, v_i)`; the merge

.. math:: (m_a, \ell_a, O_a) \oplus (m_b, \ell_b, O_b)
          &= \big(m,\; e^{m_a - m}\ell_a + e^{m_b - m}\ell_b,\;
          e^{m_a - m} O_a + e^{m_b - m} O_b\big), \\
          m &= \max(m_a, m_b)

is associative (and commutative) with neutral element :math:`(-\infty, 0, 0)`, so
:math:`(m_t, \ell_t, O_t) = x_1 \oplus \dots \oplus x_t` and :math:`o_t = O_t / \ell_t`.

* ``mode="recurrent"``: the many-to-one RNN, :math:`(m_t, \ell_t, O_t) = (m_{t-1}, \ell_{t-1},
  O_{t-1}) \oplus x_t`, one token at a time (:math:`T` sequential merges, :math:`O(1)` state).
* ``mode="scan"``: the Hillis–Steele inclusive scan. After round :math:`r` (offset
  :math:`d = 2^r`) element :math:`t` holds :math:`x_{t-2d+1} \oplus \dots \oplus x_t`:

  .. math:: y^{(r+1)}_t = y^{(r)}_{t-d} \oplus y^{(r)}_t \quad (t \ge d), \qquad
            y^{(r+1)}_t = y^{(r)}_t \quad (t < d),

  :math:`\lceil \log_2 T \rceil` rounds of :math:`T` independent merges.

Both are compositions of engine ops, so autograd gives the backward; :math:`m` is a constant
(no gradient flows through the stabilizer, as in chapter 40).
"""
from __future__ import annotations

from ...autograd import Tensor, ops
from ...backend import get_xp
from ...checks import check_choice, check_float_tensor, check_ndim, check_real, check_shape
from ..sparse import Partial, empty_partial, finish_partial, merge_partials

MODES = ("scan", "recurrent")


def check_qkv(fn, q, k, v, one_query=False, names=("q", "k", "v"), T="T"):
    """The boundary of this chapter's attentions: floating q, k, v (not float16) with
    q (B, H, T, D) and k of the same shape, or, with ``one_query``, q (B, H, D_k) and
    k (B, H, T, D_k); v (B, H, T, D_v). ``names`` and ``T`` are what the caller calls them.
    Returns (B, H, T, D)."""
    nq, nk, nv = names
    for name, x, nd in ((nq, q, 3 if one_query else 4), (nk, k, 4), (nv, v, 4)):
        check_float_tensor(fn, name, x, float16=False)
        check_ndim(fn, name, x, nd)
    if one_query:
        B, H, D = q.shape
        check_shape(fn, nk, k, (B, H, None, D), f"B, H, {T}, D_k")
        n = k.shape[2]
    else:
        B, H, n, D = q.shape
        check_shape(fn, nk, k, (B, H, n, D), f"B, H, {T}, D")
    check_shape(fn, nv, v, (B, H, n, None), f"B, H, {T}, D_v")
    return B, H, n, D


def check_scale(fn, scale, D):
    """``scale`` (None: 1/sqrt(D)) as a positive float."""
    return D ** -0.5 if scale is None else check_real(fn, "scale", scale, low=0, low_open=True)


def _check_prefix_args(fn, q, k, v, scale):
    B, H, T, D = check_qkv(fn, q, k, v, one_query=True)
    if T < 1:
        raise ValueError(f"{fn}: k must hold at least one key (T >= 1), got shape {k.shape}")
    return check_scale(fn, scale, D)


def token_partials(q, k, v, scale):
    """The partial x_i = (s_i, 1, v_i) of every token alone: m (B, H, T, 1) an array,
    l (B, H, T, 1) and O (B, H, T, D_v) Tensors (l = e^(s - m) keeps the gradient of s)."""
    s = (k @ ops.expand_dims(q, -1)) * scale            # (B, H, T, 1)
    m = s.data.copy()                                   # a constant, as in chapter 40
    p = ops.exp(s - Tensor(m))                          # = 1, with d p / d s = 1
    return Partial(m, p, p * v)


def _slice(part, t0, t1):
    return Partial(part.m[..., t0:t1, :], part.l[..., t0:t1, :], part.O[..., t0:t1, :])


def prefix_attention_recurrent(q, k, v, scale):
    """The RNN form: fold one token at a time into the state (m, l, O)."""
    tokens = token_partials(q, k, v, scale)
    state = empty_partial(q.shape[:2] + (1, q.shape[-1]), v.shape[-1], q.dtype,
                          get_xp(q.data))
    outputs = []
    for t in range(k.shape[2]):
        state = merge_partials(state, _slice(tokens, t, t + 1))
        outputs.append(finish_partial(state))
    return ops.concatenate(outputs, axis=2)


def _shift(part, d):
    """y_{t-d} at position t, and the neutral element (-inf, 0, 0) where t < d."""
    xp = get_xp(part.O.data)
    lead = part.m.shape[:-2]
    pad_m = xp.full(lead + (d, 1), -xp.inf, dtype=part.m.dtype)
    pad_l = Tensor(xp.zeros(lead + (d, 1), dtype=part.O.dtype))
    pad_O = Tensor(xp.zeros(lead + (d, part.O.shape[-1]), dtype=part.O.dtype))
    T = part.m.shape[-2]
    return Partial(xp.concatenate([pad_m, part.m[..., :T - d, :]], axis=-2),
                   ops.concatenate([pad_l, part.l[..., :T - d, :]], axis=-2),
                   ops.concatenate([pad_O, part.O[..., :T - d, :]], axis=-2))


def prefix_attention_scan(q, k, v, scale):
    """The Hillis-Steele inclusive scan of the merge: ceil(log2 T) rounds."""
    y = token_partials(q, k, v, scale)
    T, d = k.shape[2], 1
    while d < T:
        # Exercise 45.1 (2 pt): one round of the Hillis-Steele scan: every position t >= d
        #   merges the partial d steps back into its own (use _shift, which puts y_{t-d} at t
        #   and the neutral element (-inf, 0, 0) where t < d), then d doubles.
        # Needs: 40.3
        ### BEGIN SOLUTION
        y = merge_partials(_shift(y, d), y)
        d *= 2
        ### END SOLUTION
    return finish_partial(y)


def prefix_attention(q, k, v, scale=None, mode="scan"):
    """Softmax attention of one query per head over every prefix of the keys (Aaren).

    q (B, H, D_k), k (B, H, T, D_k), v (B, H, T, D_v) Tensors; returns o (B, H, T, D_v) with
    ``o[:, :, t]`` the attention of q over ``k[:, :, :t+1]``. ``mode``: ``"scan"`` (parallel
    prefix scan) or ``"recurrent"`` (the RNN update); they agree to rounding.
    """
    fn = "prefix_attention"
    scale = _check_prefix_args(fn, q, k, v, scale)
    check_choice(fn, "mode", mode, MODES)
    if mode == "recurrent":
        return prefix_attention_recurrent(q, k, v, scale)
    return prefix_attention_scan(q, k, v, scale)


def scan_rounds(T):
    """For a drawing of the scan: per round, the offset d and the (source, target) pairs."""
    rounds, d = [], 1
    while d < T:
        rounds.append((d, [(t - d, t) for t in range(d, T)]))
        d *= 2
    return rounds
