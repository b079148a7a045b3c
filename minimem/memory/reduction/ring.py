r"""Ring attention: the sequence split over P devices, key/value blocks passed around a ring.

Device :math:`r` holds the contiguous block :math:`r` of the sequence: queries
:math:`Q_r`, keys :math:`K_r`, values :math:`V_r` (each :math:`T/P` rows). At step
:math:`s = 0, \dots, P-1` it holds the key/value block

.. math:: j(r, s) = (r - s) \bmod P,

merges the partial attention of :math:`Q_r` over :math:`(K_j, V_j)` into its running
:math:`(m, \ell, O)` with chapter 40's merge :math:`\oplus`, and sends the block to device
:math:`r + 1` while it receives block :math:`j(r, s+1)` from device :math:`r - 1`. After
:math:`P` steps every device has seen every block, and since :math:`\oplus` is associative and
commutative the order does not matter:

.. math:: o_r = O / \ell, \qquad (m, \ell, O) = \bigoplus_{s=0}^{P-1}
          \mathrm{partial}(Q_r, K_{j(r,s)}, V_{j(r,s)}).

Causal masking: block :math:`j > r` lies entirely in the future of :math:`Q_r` and is skipped;
:math:`j = r` is the diagonal block (a causal mask inside it); :math:`j < r` is attended fully.

Backward (the FlashAttention backward, one block at a time). With the saved log-sum-exp
:math:`L_i = m_i + \log \ell_i` and :math:`\Delta_i = \sum_c \bar o_{ic} o_{ic}`, for a block
:math:`(K_j, V_j)`:

.. math:: P = e^{\tau Q_r K_j^\top - L}, \quad \bar V_j \mathrel{+}= P^\top \bar O_r, \quad
          \bar S = P \odot (\bar O_r V_j^\top - \Delta), \\
          \bar Q_r \mathrel{+}= \tau \bar S K_j, \quad \bar K_j \mathrel{+}= \tau \bar S^\top Q_r.

:math:`\bar K_j, \bar V_j` travel with :math:`(K_j, V_j)` around the ring: after :math:`P`
sends every block is back at its owner with its full gradient.

:func:`ring_attention` runs on P processes through MPI (``mpi4py``, the ``distributed`` extra);
:func:`ring_attention_simulated` runs the same schedule (:func:`ring_schedule`) in one process
as a composition of engine ops (autograd gives its backward).
"""
from __future__ import annotations

import numpy as np

from ...autograd import Tensor, ops
from ...autograd.function import Function
from ...backend import get_xp
from ...checks import (
    check_bool,
    check_int,
    check_same_dtype,
)
from ..sparse import empty_partial, finish_partial, merge_partials, partial_attention
from .prefix import check_qkv, check_scale

SKIP, DIAGONAL, FULL = 0, 1, 2  # what device r does with the block it holds at a step


def block_kind(r, j, causal):
    """SKIP when block j is in the future of query block r (causal), DIAGONAL when j = r."""
    if j == r:
        return DIAGONAL if causal else FULL
    return SKIP if causal and j > r else FULL


def ring_schedule(n_devices, causal=True):
    """Which block each device holds at each step, and what it does with it.

    Returns ``(held, kind)``: int arrays (P steps, P devices); ``held[s, r] = (r - s) mod P``,
    ``kind[s, r]`` one of SKIP (0), DIAGONAL (1), FULL (2).
    """
    P = check_int("ring_schedule", "n_devices", n_devices, low=1)
    check_bool("ring_schedule", "causal", causal)
    held = (np.arange(P)[None, :] - np.arange(P)[:, None]) % P
    kind = np.array([[block_kind(r, held[s, r], causal) for r in range(P)] for s in range(P)])
    return held, kind


def causal_block_counts(n_devices):
    """Under the causal ring schedule: how many blocks device r computes (an int array (P,)),
    and the imbalance max / mean (the slowest device sets the pace of every step)."""
    P = check_int("causal_block_counts", "n_devices", n_devices, low=1)
    # Exercise 45.3 (2 pt): predict, in closed form and without running the schedule, the
    #   number of key/value blocks device r attends to (full or diagonal) when causal=True,
    #   for r = 0..P-1, and the ratio of the largest count to the mean count.
    ### BEGIN SOLUTION
    counts = np.arange(1, P + 1)
    return counts, float(counts.max() / counts.mean())
    ### END SOLUTION


def _check_ring_args(fn, q, k, v, causal, scale):
    B, H, T, D = check_qkv(fn, q, k, v)
    check_same_dtype(fn, ("q", "k", "v"), q, k, v)
    check_bool(fn, "causal", causal)
    if T < 1:
        raise ValueError(f"{fn}: q must hold at least one position (T >= 1), got {q.shape}")
    return check_scale(fn, scale, D)


def _diagonal_mask(n, xp):
    return xp.tri(n, n, 0, dtype=bool)


def ring_attention_simulated(q, k, v, n_devices, causal=True, scale=None):
    """The ring schedule run in one process: q, k, v (B, H, T, D) with T divisible by P.

    Equal to ``scaled_dot_product_attention(q, k, v, causal=causal)``; a composition of engine
    ops (partial attention and chapter 40's ``merge_partials``), so it has a backward.
    """
    fn = "ring_attention_simulated"
    scale = _check_ring_args(fn, q, k, v, causal, scale)
    P = check_int(fn, "n_devices", n_devices, low=1)
    T = q.shape[2]
    if T % P:
        raise ValueError(f"{fn}: the sequence length T = {T} must be divisible by n_devices "
                         f"= {P}")
    xp, b = get_xp(q.data), T // P
    blocks = [(q[:, :, r * b:(r + 1) * b], k[:, :, r * b:(r + 1) * b],
               v[:, :, r * b:(r + 1) * b]) for r in range(P)]
    state = [empty_partial(blocks[r][0].shape, v.shape[-1], q.dtype, xp) for r in range(P)]
    held, kind = ring_schedule(P, causal)
    for s in range(P):
        for r in range(P):
            j = held[s, r]
            if kind[s, r] == SKIP:
                continue
            mask = _diagonal_mask(b, xp) if kind[s, r] == DIAGONAL else None
            part = partial_attention(blocks[r][0], blocks[j][1], blocks[j][2], mask, scale)
            state[r] = merge_partials(state[r], part)
    return ops.concatenate([finish_partial(st) for st in state], axis=2)


# --------------------------------------------------------------------------- over MPI


def _world():
    try:
        from mpi4py import MPI
    except ImportError as e:  # the distributed extra is missing
        raise ImportError("ring_attention: comm=None needs mpi4py and an MPI (pip install "
                          "'minimem[distributed]')") from e
    return MPI.COMM_WORLD


def _block_partial(q, kb, vb, kind, scale):
    """The chapter-40 partial of q over one block, as arrays (m, l, O)."""
    mask = _diagonal_mask(q.shape[-2], np) if kind == DIAGONAL else None
    return partial_attention(Tensor(q), Tensor(kb), Tensor(vb), mask, scale)


def _exchange(comm, send, recv):
    """Start sending ``send`` to the next device and receiving ``recv`` from the previous."""
    P, r = comm.Get_size(), comm.Get_rank()
    return [comm.Irecv(recv, source=(r - 1) % P, tag=45),
            comm.Isend(send, dest=(r + 1) % P, tag=45)]


def _wait(reqs):
    for req in reqs:
        req.Wait()


def ring_forward(comm, q, k, v, causal, scale):
    """This device's output o (B, H, T/P, D_v) and log-sum-exp L (B, H, T/P, 1)."""
    P, r = comm.Get_size(), comm.Get_rank()
    d = k.shape[-1]
    kv = np.ascontiguousarray(np.concatenate([k, v], axis=-1))
    incoming = np.empty_like(kv)
    state = empty_partial(q.shape, v.shape[-1], q.dtype)
    for s in range(P):
        j = (r - s) % P
        reqs = _exchange(comm, kv, incoming) if s < P - 1 else []  # overlap: send, compute
        kind = block_kind(r, j, causal)
        if kind != SKIP:
            part = _block_partial(q, kv[..., :d], kv[..., d:], kind, scale)
            state = merge_partials(state, part)
        _wait(reqs)
        if reqs:
            kv, incoming = incoming, kv
    ell = state.l.data
    return state.O.data / ell, state.m + np.log(ell)


def ring_backward(comm, q, k, v, o, lse, grad_o, causal, scale):
    """dq of this device's queries, dk and dv of its own key/value block.

    Not overlapped: the block's gradients are updated before it is sent on (the forward's
    send does overlap its computation)."""
    P, r = comm.Get_size(), comm.Get_rank()
    d, dv_ = k.shape[-1], v.shape[-1]
    delta = np.sum(grad_o * o, axis=-1, keepdims=True)
    dq = np.zeros_like(q)
    # k, v, dk, dv travel together; the gradients are filled in as the block goes round
    pack = np.ascontiguousarray(np.concatenate([k, v, np.zeros_like(k), np.zeros_like(v)], -1))
    incoming = np.empty_like(pack)
    cut = np.cumsum([d, dv_, d])
    for s in range(P):
        j = (r - s) % P
        kind = block_kind(r, j, causal)
        if kind != SKIP:
            kb, vb, dkb, dvb = np.split(pack, cut, axis=-1)
            p = np.exp(scale * (q @ np.swapaxes(kb, -1, -2)) - lse)
            if kind == DIAGONAL:
                p = p * _diagonal_mask(q.shape[-2], np)
            ds = p * (grad_o @ np.swapaxes(vb, -1, -2) - delta)
            dq += scale * (ds @ kb)
            pack[..., cut[1]:cut[2]] = dkb + scale * (np.swapaxes(ds, -1, -2) @ q)
            pack[..., cut[2]:] = dvb + np.swapaxes(p, -1, -2) @ grad_o
        _wait(_exchange(comm, pack, incoming))  # P sends: the block comes home
        pack, incoming = incoming, pack
    _, _, dk, dv = np.split(pack, cut, axis=-1)
    return dq, np.ascontiguousarray(dk), np.ascontiguousarray(dv)


class RingAttention(Function):
    """Ring attention as one node: :func:`ring_forward` and :func:`ring_backward`."""

    @staticmethod
    def forward(ctx, q, k, v, comm, causal, scale):
        o, lse = ring_forward(comm, q, k, v, causal, scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.comm, ctx.causal, ctx.scale = comm, causal, scale
        return o

    @staticmethod
    def backward(ctx, grad_o):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = ring_backward(ctx.comm, q, k, v, o, lse, np.ascontiguousarray(grad_o),
                                   ctx.causal, ctx.scale)
        return dq, dk, dv, None, None, None


def ring_attention(q, k, v, causal=True, scale=None, comm=None):
    """Attention over a sequence split across the processes of an MPI communicator.

    Each process passes its own contiguous block: q, k, v (B, H, T/P, D) Tensors (process r
    holds positions r T/P .. (r+1) T/P - 1); returns its block of the output (B, H, T/P, D_v).
    ``comm``: an mpi4py communicator (default ``MPI.COMM_WORLD``). Every process must call it
    with the same shapes; the backward runs the ring again (dK, dV travel with K, V).
    """
    fn = "ring_attention"
    scale = _check_ring_args(fn, q, k, v, causal, scale)
    comm = _world() if comm is None else comm
    if not (hasattr(comm, "Get_size") and hasattr(comm, "Isend")):
        raise TypeError(f"ring_attention: comm must be an mpi4py communicator, got "
                        f"{type(comm).__name__}")
    if not isinstance(q.data, np.ndarray):
        raise TypeError("ring_attention: q, k, v must hold NumPy arrays (MPI sends host "
                        "buffers)")
    # every process must hold a block of the same shape: check once, on every process alike
    mine = (q.shape, v.shape, q.dtype.str)
    others = comm.allgather(mine)
    if any(o != mine for o in others):
        raise ValueError(f"ring_attention: every process must pass q, v of the same shapes "
                         f"and dtype; got (q, v, dtype) = {others} over the ranks")
    return RingAttention.apply(q, k, v, comm, bool(causal), scale)
