r"""Experiments of chapter 55: how many pairs a memory holds, how far it carries them, and
what a segment costs.

* :func:`write_capacity`: the associative write alone (no training): n pairs with random keys
  :math:`k_i = \phi(x_i)` written, each key read back; the share of keys whose read-out is
  nearest to their own value, for ARMT's write (delta correction, :math:`\gamma`) and for the
  plain sum of linear attention (:math:`A \mathrel{+}= k v^\top`, :math:`z \mathrel{+}= k`),
  with every key written once or twice (the second time with a new value).
* :func:`make_model`: RMT, Memformer, ARMT, LM2, TransformerFAM or the Cached Transformer with
  the same memory size (``n_mem`` vectors of width d per memory; ARMT adds its matrices).
* :func:`retrieval_task`, :func:`pairs_recalled`: trained models on associative retrieval
  across segments; pairs recalled = accuracy x pairs written (the queries are uniform over
  the written keys). :func:`length_generalization`: a trained model on more filler segments
  than it was trained on.
* :func:`segment_cost`: seconds and peak tape bytes of one training step per segment.
* :func:`first_value_share` (a prediction, exercise 55.4) and :func:`measured_first_share`:
  how much of a key's first value is left after it is rewritten; :func:`report` prints the
  trained tables of the chapter.

Training and evaluation reuse chapter 50's loop (:mod:`minimem.memory.segment.lab`).
"""
from __future__ import annotations

import time

import numpy as np

from ...autograd import ops
from ...autograd.function import no_grad, track_memory
from ...autograd.tensor import Tensor
from ...checks import check_int
from ...tasks import associative_retrieval, retrieval_vocab
from ..delta.feature_maps import feature_map
from ..segment import lab as segment_lab
from ..segment.memformer import Memformer
from ..segment.recurrent import RecurrentMemoryTransformer
from .associative import associative_read, associative_write
from .feedback import TransformerFAM
from .gated import LM2, CachedTransformer
from .layers import ARMT

KINDS = ("rmt", "memformer", "armt", "lm2", "fam", "cached")


# ---- the write alone -----------------------------------------------------------------------
def _sum_write(A, z, k, v):
    """Linear attention's write: every pair added, every key counted in z."""
    return A + ops.swapaxes(k, -1, -2) @ v, z + k.sum(axis=1)


def write_capacity(n_pairs, seeds=(0, 1, 2), d_key=8, d_v=16, nu=3, pairs_per_segment=4,
                   rewrite=False, batch=16):
    """Recall of the associative memory alone: a dict ``rule -> (len(n_pairs), len(seeds))``
    array of the share of keys read back nearest (cosine) to their latest value.

    Keys :math:`x_i \\sim \\mathcal N(0, I_{d_{key}})`, :math:`k_i = \\mathrm{DPFP}_\\nu(x_i)`
    (:math:`d_\\phi = 2 d_{key} \\nu`), values :math:`\\mathcal N(0, I_{d_v})`, written
    ``pairs_per_segment`` per segment with :math:`\\beta = 1`; ``rewrite=True`` writes every
    key a second time (after all first writes) with a new value, which is then the answer.
    Each entry averages ``batch`` independent memories. Rules: ``"armt"`` (:func:`associative_write`) and ``"sum"`` (linear attention).
    """
    fn = "write_capacity"
    ns = [check_int(fn, "n_pairs", n, 1) for n in n_pairs]
    p = check_int(fn, "pairs_per_segment", pairs_per_segment, 1)
    B = check_int(fn, "batch", batch, 1)
    d_phi = 2 * check_int(fn, "d_key", d_key, 1) * check_int(fn, "nu", nu, 1)
    out = {"armt": np.zeros((len(ns), len(seeds))), "sum": np.zeros((len(ns), len(seeds)))}
    with no_grad():
        for j, seed in enumerate(seeds):
            rng = np.random.default_rng(seed)
            for i, n in enumerate(ns):
                keys = feature_map(Tensor(rng.standard_normal((B, n, d_key))), "dpfp", nu=nu)
                writes = [rng.standard_normal((B, n, d_v))]
                if rewrite:
                    writes.append(rng.standard_normal((B, n, d_v)))
                for rule, table in out.items():
                    A, z = Tensor(np.zeros((B, d_phi, d_v))), Tensor(np.zeros((B, d_phi)))
                    for values in writes:
                        for s in range(0, n, p):
                            k, v = keys[:, s:s + p], Tensor(values[:, s:s + p])
                            if rule == "armt":
                                A, z = associative_write(A, z, k, v, Tensor(np.ones(k.shape[:2])))
                            else:
                                A, z = _sum_write(A, z, k, v)
                    read = associative_read(A, z, keys).numpy()
                    table[i, j] = np.mean([_nearest_is_own(r, w)
                                               for r, w in zip(read, writes[-1])])
    return out


def _nearest_is_own(read, values):
    """Share of rows of ``read`` whose most cosine-similar row of ``values`` is their own."""
    r = read / np.maximum(np.linalg.norm(read, axis=1, keepdims=True), 1e-30)
    v = values / np.linalg.norm(values, axis=1, keepdims=True)
    return float(np.mean((r @ v.T).argmax(axis=1) == np.arange(len(values))))


# ---- rewriting one key --------------------------------------------------------------------
def first_value_share(beta, n_writes):
    """Predict: a key orthogonal to every other key is written ``n_writes`` times (once per
    segment, each time with a new value and the same gate ``beta``); the read-out of the key is
    then a mix of the values written. Return the share of the *first* value in it (a float),
    as eps goes to 0."""
    fn = "first_value_share"
    n = check_int(fn, "n_writes", n_writes, 1)
    if isinstance(beta, bool) or not 0 < float(beta) <= 1:
        raise ValueError(f"{fn}: beta must be in (0, 1], got {beta!r}")
    # Exercise 55.4 (2 pt): derive, from the write and the read of the module docstring of
    # associative.py, the share of the first value in the read-out after n writes of one key
    # with gate beta (the first write into an empty memory) and assign it to `share` (a float).
    ### BEGIN SOLUTION
    # write 1 (z = 0, so v_bar = 0, gamma = 1): A = beta k v_1^T, z = k: the read is beta v_1.
    # later writes (gamma = 0, z stays k): read' = read + beta (v_j - read), an exponential
    # moving average; v_1 keeps beta (1 - beta)^(n - 1) of the read-out.
    share = float(beta) * (1.0 - float(beta)) ** (n - 1)
    ### END SOLUTION
    return share


def measured_first_share(beta, n_writes, d_phi=8, d_v=4, seed=0, eps=1e-9):
    """The share of the first value measured by writing one key ``n_writes`` times (values
    orthonormal, so the share is the read-out's component along the first value)."""
    n = check_int("measured_first_share", "n_writes", n_writes, 1)
    if n > d_v:
        raise ValueError(f"measured_first_share: n_writes must be <= d_v={d_v}, got {n}")
    rng = np.random.default_rng(seed)
    k = Tensor(rng.uniform(0.5, 1.5, (1, 1, d_phi)))
    values = np.linalg.qr(rng.standard_normal((d_v, d_v)))[0][:n]
    A, z = Tensor(np.zeros((1, d_phi, d_v))), Tensor(np.zeros((1, d_phi)))
    with no_grad():
        for v in values:
            A, z = associative_write(A, z, k, Tensor(v[None, None]),
                                     Tensor(np.full((1, 1), float(beta))), eps)
        read = associative_read(A, z, k, eps).numpy()[0, 0]
    return float(read @ values[0])


# ---- trained models ------------------------------------------------------------------------
def make_model(kind, vocab, d_model=32, n_mem=2, max_len=8, n_layers=1, n_heads=2, seed=0):
    """One of :data:`KINDS` with ``n_mem`` memory vectors of width ``d_model`` (RMT's and
    ARMT's memory tokens, Memformer's slots, LM2's bank rows, FAM's vectors per layer, the
    Cached Transformer's cache rows per layer); d_ff = 2 d_model."""
    args = (vocab, d_model, n_layers, n_heads, n_mem, max_len)
    kw = {"d_ff": 2 * d_model, "seed": seed}
    builders = {"rmt": RecurrentMemoryTransformer, "memformer": Memformer, "armt": ARMT,
                "lm2": LM2, "fam": TransformerFAM, "cached": CachedTransformer}
    if kind not in builders:
        raise ValueError(f"make_model: kind must be one of {KINDS}, got {kind!r}")
    return builders[kind](*args, **kw)


def retrieval_task(n_pairs, pairs_per_segment=2, n_gap=0, n_keys=8, n_values=8):
    """``task(batch, seed) -> segments`` of :func:`minimem.tasks.associative_retrieval`; a
    tuple ``n_gap`` draws the number of filler segments per batch from it."""
    gaps = tuple(n_gap) if isinstance(n_gap, (tuple, list)) else (n_gap,)

    def task(batch, seed):
        gap = gaps[np.random.default_rng(seed).integers(len(gaps))]
        return associative_retrieval(n_pairs, batch, seed=seed,
                                     pairs_per_segment=pairs_per_segment, n_gap=int(gap),
                                     n_keys=n_keys, n_values=n_values)
    return task


def pairs_recalled(kinds, n_pairs, seeds=(0, 1, 2), steps=300, d_model=32, n_mem=2,
                   pairs_per_segment=2, n_gap=0, n_keys=8, n_values=8, lr=3e-3, batch=32,
                   method="bptt", eval_batch=256):
    """Train each kind on each number of pairs, over seeds; returns a list of rows
    ``{kind, n_pairs, seed, accuracy, recalled, model}`` (recalled = accuracy x n_pairs)."""
    vocab = retrieval_vocab(n_keys, n_values)
    rows = []
    for n in n_pairs:
        task = retrieval_task(n, pairs_per_segment, n_gap, n_keys, n_values)
        for kind in kinds:
            runs = segment_lab.train_seeds(
                lambda seed, kind=kind: make_model(kind, vocab, d_model, n_mem,
                                                   2 * pairs_per_segment, seed=seed),
                task, seeds, steps, method=method, lr=lr, batch=batch, eval_every=steps,
                eval_batch=eval_batch)
            for r in runs:
                acc = r["history"]["accuracy"][-1]
                rows.append({"kind": kind, "n_pairs": n, "seed": r["seed"], "accuracy": acc,
                             "recalled": acc * n, "model": r["model"]})
    return rows


def length_generalization(rows, gaps, n_keys=8, n_values=8, pairs_per_segment=2,
                          eval_batch=256):
    """Accuracy of each trained model of :func:`pairs_recalled` with ``gap`` filler segments
    between the writes and the queries, for each gap; returns the rows with ``gaps`` and
    ``by_gap`` (one accuracy per gap) added, on held-out batches."""
    out = []
    for row in rows:
        accs = []
        for gap in gaps:
            segs = retrieval_task(row["n_pairs"], pairs_per_segment, gap, n_keys, n_values)(
                eval_batch, 2 * 10**6 + row["seed"])
            accs.append(segment_lab.evaluate_segments(row["model"], segs))
        out.append({**row, "gaps": list(gaps), "by_gap": accs})
    return out


def summarize(rows, key="accuracy"):
    """``{(kind, n_pairs): (mean, std, n)}`` of ``key`` over the seeds."""
    groups = {}
    for r in rows:
        groups.setdefault((r["kind"], r["n_pairs"]), []).append(r[key])
    return {g: (float(np.mean(v)), float(np.std(v)), len(v)) for g, v in groups.items()}


def report(steps=400, kinds=("rmt", "memformer", "armt"), n_pairs=(2, 4, 8), seeds=(0, 1, 2),
           gaps=(0, 1, 2, 4, 8)):
    """Train and print the chapter's two tables: pairs recalled vs pairs written (trained with
    0 or 1 filler segments) and accuracy vs filler segments (the same models). Returns the
    rows of :func:`length_generalization`."""
    rows = pairs_recalled(kinds, n_pairs, seeds, steps, n_gap=(0, 1))
    recalled = summarize(rows, "recalled")
    print("pairs recalled (mean ± std over seeds)")
    print("kind        " + "".join(f"{n:>14d}" for n in n_pairs))
    for kind in kinds:
        print(f"{kind:12s}" + "".join(f"{recalled[kind, n][0]:8.2f} ± {recalled[kind, n][1]:.2f}"
                                      for n in n_pairs))
    gen = length_generalization(rows, gaps)
    print("accuracy vs filler segments (trained on 0-1)")
    for n in n_pairs:
        for kind in kinds:
            accs = np.array([r["by_gap"] for r in gen if r["kind"] == kind and r["n_pairs"] == n])
            cells = "".join(f"  {m:.2f} ± {s:.2f}" for m, s in zip(accs.mean(0), accs.std(0)))
            print(f"{n} pairs {kind:10s}{cells}")
    return gen


# ---- cost per segment ----------------------------------------------------------------------
def segment_cost(kinds, n_segments=4, d_model=32, n_mem=4, seg_len=16, batch=2, repeat=3,
                 seed=0):
    """Seconds (best of ``repeat``) and peak tape bytes of one BPTT step over ``n_segments``
    random segments, per segment, for each kind; returns ``{kind: (seconds, bytes)}``."""
    vocab = 32
    rng = np.random.default_rng(seed)
    segs = [(rng.integers(0, vocab, (batch, seg_len)), rng.integers(0, vocab, (batch, seg_len)))
            for _ in range(n_segments)]
    out = {}
    for kind in kinds:
        model = make_model(kind, vocab, d_model, n_mem, seg_len, seed=seed)
        cell = segment_lab.segment_cell(model)

        def step(model=model, cell=cell):
            model.zero_grad()
            segment_lab.bptt(cell, model.init_memory(batch), segs, segment_lab.segment_loss)

        with track_memory() as tracker:
            step()
        best = min(_seconds(step) for _ in range(repeat))
        out[kind] = (best / n_segments, tracker.peak_bytes / n_segments)
    return out


def _seconds(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
