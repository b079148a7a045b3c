"""The experiments of the attention-as-a-reduction chapter (data, not plots).

Each returns numbers the notebook prints: the monoid laws of the merge, the agreement of every
formulation with dense attention (forward and backward), the peak memory of the blockwise
transformer block and of ring attention per process.
"""
from __future__ import annotations

import numpy as np

from ...autograd import Tensor, ops
from ...checks import check_int
from ...nn.attention import TransformerBlock, scaled_dot_product_attention
from ...nn.rope import rope
from ..sparse import Partial, empty_partial, merge_partials
from .bpt import blockwise_block, peak_forward_bytes
from .prefix import prefix_attention
from .ring import ring_attention_simulated
from .split_kv import split_kv_decode


def _rng(seed):
    return np.random.default_rng(check_int("lab", "seed", seed, low=0))


def random_partial(rng, n=6, d_v=3, scale=3.0):
    """A partial (m, l, O) of n query rows over a few random keys (float64)."""
    s = scale * rng.standard_normal((n, 4))
    v = rng.standard_normal((4, d_v))
    m = s.max(-1, keepdims=True)
    p = np.exp(s - m)
    return Partial(m, Tensor(p.sum(-1, keepdims=True)), Tensor(p @ v))


def _gap(a, b):
    return max(float(np.abs(a.m - b.m).max()), float(np.abs(a.l.data - b.l.data).max()),
               float(np.abs(a.O.data - b.O.data).max()))


def merge_laws(seed=0):
    """Largest gaps of the monoid laws: associativity, commutativity, the neutral element."""
    rng = _rng(seed)
    a, b, c = (random_partial(rng) for _ in range(3))
    e = empty_partial((6, 3), 3, np.float64)
    return {"(a+b)+c vs a+(b+c)": _gap(merge_partials(merge_partials(a, b), c),
                                       merge_partials(a, merge_partials(b, c))),
            "a+b vs b+a": _gap(merge_partials(a, b), merge_partials(b, a)),
            "e+a vs a": _gap(merge_partials(e, a), a)}


def _grads(fn, inputs, seed):
    leaves = [Tensor(x, requires_grad=True) for x in inputs]
    out = fn(*leaves)
    out.backward(Tensor(_rng(seed + 100).standard_normal(out.shape)))
    return [out.data] + [t.grad.data for t in leaves]


def _max_gaps(a, b, names=("output", "dq", "dk", "dv")):
    return {n: float(np.abs(x - y).max()) for n, x, y in zip(names, a, b)}


def prefix_gaps(T=37, B=2, H=2, D=4, seed=0):
    """Scan and recurrent prefix attention vs dense causal attention (float64)."""
    rng = _rng(seed)
    inputs = [rng.standard_normal(s) for s in ((B, H, D), (B, H, T, D), (B, H, T, D))]

    def dense(q, k, v):
        qs = ops.broadcast_to(ops.expand_dims(q, 2), k.shape)
        return scaled_dot_product_attention(qs, k, v, causal=True)

    ref = _grads(dense, inputs, seed)
    return {mode: _max_gaps(_grads(lambda q, k, v, mode=mode: prefix_attention(q, k, v, mode=mode),
                                   inputs, seed), ref) for mode in ("scan", "recurrent")}


def ring_simulated_gaps(T=48, n_devices=(1, 2, 3, 4), causal=True, seed=0):
    """ring_attention_simulated vs dense attention for each number of devices (float64)."""
    rng = _rng(seed)
    inputs = [rng.standard_normal((1, 2, T, 8)) for _ in range(3)]
    ref = _grads(lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=causal),
                 inputs, seed)
    return {P: _max_gaps(_grads(lambda q, k, v, P=P: ring_attention_simulated(q, k, v, P, causal),
                                inputs, seed), ref) for P in n_devices}


def split_kv_gaps(S=1000, n_splits=(1, 2, 7, 16), seed=0):
    """split_kv_decode vs dense decoding for each number of parts (float64)."""
    rng = _rng(seed)
    inputs = [rng.standard_normal(s) for s in ((1, 4, 16), (1, 4, S, 16), (1, 4, S, 16))]

    def dense(q, k, v):
        return ops.squeeze(scaled_dot_product_attention(ops.expand_dims(q, 2), k, v), 2)

    ref = _grads(dense, inputs, seed)
    return {n: _max_gaps(_grads(lambda q, k, v, n=n: split_kv_decode(q, k, v, n), inputs, seed),
                         ref) for n in n_splits}


def rope_relative_gap(D=16, shifts=(1, 5, 100), seed=0):
    """The largest change, over shifts c, of the score ``rope(q, p + c) . rope(k, p' + c)``
    from ``rope(q, p) . rope(k, p')`` (zero when scores depend on p - p' only)."""
    rng = _rng(seed)
    q, k = Tensor(rng.standard_normal((1, D))), Tensor(rng.standard_normal((1, D)))
    base = float((rope(q, np.array([3])).data * rope(k, np.array([11])).data).sum())
    return max(abs(float((rope(q, np.array([3 + c])).data
                          * rope(k, np.array([11 + c])).data).sum()) - base)
               for c in shifts)


def bpt_memory(Ts=(256, 512, 1024, 2048), d_model=32, n_heads=2, query_block=64,
               key_block=64, seed=0):
    """Peak forward bytes of the plain and the blockwise transformer block, and their gap.

    float32, no graph (the memory a forward pass allocates at its peak; a training step would
    recompute each block in the backward, as BPT does).
    """
    rng = _rng(seed)
    block = TransformerBlock(d_model, n_heads, seed=seed)
    x0 = Tensor(rng.standard_normal((1, 64, d_model)).astype(np.float32))
    peak_forward_bytes(block, x0)  # load the kernels once, outside the measurement
    rows = []
    for T in Ts:
        x = Tensor(rng.standard_normal((1, T, d_model)).astype(np.float32))
        plain, y_plain = peak_forward_bytes(block, x)
        blockwise, y_block = peak_forward_bytes(
            lambda x: blockwise_block(block, x, query_block, key_block), x)
        rows.append({"T": T, "plain_bytes": plain, "blockwise_bytes": blockwise,
                     "max_gap": float(np.abs(y_plain.data - y_block.data).max())})
    return rows


def ring_memory(processes=(1, 2, 4), per_process=256, heads=2, dim=32):
    """Peak bytes per process of ring attention (forward + backward, real MPI processes)
    with the context growing as P x ``per_process``; None when MPI is not installed."""
    from .ring_mpi import have_mpi, launch_ring_sweep

    if not have_mpi():
        return None
    return launch_ring_sweep(processes, per_process, heads, dim, causal=True)



def landmark_passkey(seed=0, train_len=32, block=8, factors=(1, 4, 8), top_k=2, vocab=16,
                     d_model=32, n_layers=2, n_heads=2, steps=150, batch_size=32, lr=1e-2,
                     n_eval=128):
    """Train a :class:`LandmarkLM` on passkeys of ``train_len`` tokens, evaluate at each
    ``factor`` x ``train_len`` with every landmark (the training form) and with top-k
    retrieval. In training the key's position cycles through the whole sequence; in
    evaluation it lies in the first quarter (the passkey test); chance is 2 / vocab.

    Returns {"full": [acc per factor], "top_k": [...], "lengths": [...], "chance": float,
    "final_loss": float}.
    """
    from ... import tasks, train
    from ...optim import Adam
    from .layers import LandmarkLM

    rng_seed = check_int("landmark_passkey", "seed", seed, low=0)
    model = LandmarkLM(vocab, d_model, n_layers, n_heads, block, seed=rng_seed)

    def batch(step):  # the key anywhere (not only in the first block) while training
        return tasks.passkey(vocab, train_len, batch_size, seed=rng_seed * 100003 + step,
                             key_pos=step % (train_len - 2))

    hist = train.fit(model, batch, steps, Adam(model.parameters(), lr=lr),
                     batch_size=batch_size, eval_every=steps, progress=False, seed=rng_seed)
    lengths = [f * train_len for f in factors]
    out = {"full": [], "top_k": [], "lengths": lengths, "chance": 2.0 / vocab,
           "final_loss": float(np.mean(hist["loss"][-10:]))}
    for T in lengths:
        x, y = tasks.passkey(vocab, T, n_eval, seed=rng_seed + 7919 * T)
        model.top_k = None
        out["full"].append(train.evaluate(model, x, y))
        model.top_k = top_k
        out["top_k"].append(train.evaluate(model, x, y))
    model.top_k = None
    return out


def landmark_passkey_over_seeds(seeds=(0, 1, 2), **kwargs):
    """:func:`landmark_passkey` for each seed: {"full": (n_seeds, n_factors) array, "top_k":
    the same, "lengths", "chance"}."""
    runs = [landmark_passkey(seed=s, **kwargs) for s in seeds]
    return {"full": np.array([r["full"] for r in runs]),
            "top_k": np.array([r["top_k"] for r in runs]),
            "lengths": runs[0]["lengths"], "chance": runs[0]["chance"],
            "final_loss": [r["final_loss"] for r in runs]}
