r"""Experiments of chapter 55: how many pairs a memory holds, how far it carries them, and
what a segment costs.

* :func:`write_capacity`: the associative write alone (no training): n pairs with random keys
  :math:`k_i = \phi(x_i)` written, each key read back; the share of keys whose read-out is
  nearest to their own value, for ARMT's write (delta correction, :math:`\gamma`) and for the
  plain sum of linear attention (:math:`A \mathrel{+}= k v^\top`, :math:`z \mathrel{+}= k`),
  with every key written once or twice (the second time with a new value).
* :func:`make_model`: RMT, Memformer, ARMT, LM2, TransformerFAM or the Cached Transformer with
  the same memory size (``n_mem`` vectors of width d per memory; ARMT adds its matrices).
* :func:`train`: chapter 50's loop through time (BPTT or MRBP) with AdamW, warm-up and
  cosine decay.
* :func:`retrieval_task`, :func:`pairs_recalled`: associative retrieval across segments, one
  pair per segment, every written key asked; trained through a curriculum over the number of
  pairs, then evaluated for each number of pairs written (pairs recalled = accuracy x pairs);
  :func:`accuracy_without_reads`: a trained ARMT with its associative reads switched off.
* :func:`facts_task`, :func:`length_generalization`: facts in noise, trained on a few
  segments, evaluated on more; :func:`facts_heuristics`: the accuracy of rules that do not
  bind; :func:`matrix_states`, :func:`write_sizes` and :func:`holds_a_fact`: what each
  segment writes.
  :func:`summarize`, :func:`print_table` and :func:`report` print the trained tables of the
  chapter.
* :func:`segment_cost`: seconds and peak tape bytes of one training step per segment.
* :func:`first_value_share` (a prediction, exercise 55.4) and :func:`measured_first_share`:
  how much of a key's first value is left after it is rewritten.

Training and evaluation reuse chapter 50's loop (:mod:`minimem.memory.segment.lab`).
"""
from __future__ import annotations

import time

import numpy as np

from ...autograd import ops
from ...autograd.function import no_grad, track_memory
from ...autograd.tensor import Tensor
from ...checks import check_choice, check_int, check_real
from ...optim import AdamW, WarmupCosine
from ...tasks import associative_retrieval, facts_in_noise, facts_vocab, retrieval_vocab
from ...tasks.segments import FIRST_ENTITY
from ..delta.feature_maps import feature_map
from ..segment import lab as segment_lab
from ..segment.memformer import Memformer
from ..segment.recurrent import RecurrentMemoryTransformer
from .associative import associative_read, associative_write
from .feedback import TransformerFAM
from .gated import LM2, CachedTransformer
from .layers import ARMT
from .plots import KIND_LABELS

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
def make_model(kind, vocab, d_model=32, n_mem=2, max_len=8, n_layers=1, n_heads=2, seed=0,
               emb_std=1.0, **model_kw):
    """One of :data:`KINDS` with ``n_mem`` memory vectors of width ``d_model`` (RMT's and
    ARMT's memory tokens, Memformer's slots, LM2's bank rows, FAM's vectors per layer, the
    Cached Transformer's cache rows per layer); d_ff = 2 d_model.

    ``emb_std``: the standard deviation of the token embeddings. The constructors draw them
    with GPT-2's 0.02; the experiments use 1.0 (PyTorch's ``nn.Embedding``), the same draw
    scaled, so that a token's identity is not drowned by the memory vectors (std 1) in the
    residual stream; at 0.02 no model of this chapter leaves the plateau of "answer one of the
    written values" within a few thousand steps (the note of :class:`minimem.nn.TransformerLM`
    on ``emb_std`` says the same for in-context recall). Positions keep std 0.02.
    ``model_kw`` go to the constructor (e.g. ``normalize=False`` for ARMT)."""
    args = (vocab, d_model, n_layers, n_heads, n_mem, max_len)
    kw = {"d_ff": 2 * d_model, "seed": seed, **model_kw}
    builders = {"rmt": RecurrentMemoryTransformer, "memformer": Memformer, "armt": ARMT,
                "lm2": LM2, "fam": TransformerFAM, "cached": CachedTransformer}
    if kind not in builders:
        raise ValueError(f"make_model: kind must be one of {KINDS}, got {kind!r}")
    emb_std = check_real("make_model", "emb_std", emb_std, low=0, low_open=True)
    model = builders[kind](*args, **kw)
    model.tok.weight.data *= emb_std / 0.02      # the constructors' N(0, 0.02^2), rescaled
    return model


def train(model, task, steps, lr=5e-3, batch=64, seed=0, warmup=50, method="bptt", clip=1.0,
          stage=0):
    """Train ``model`` on ``task(batch, seed) -> segments`` through time; returns the losses.

    AdamW (betas (0.9, 0.98), no weight decay), ``warmup`` steps of linear warm-up then cosine
    decay to 0 (the schedule of :func:`minimem.train.mqar_experiment`), gradient norm clipped
    at ``clip``; ``method``: ``"bptt"`` or ``"mrbp"`` (the same gradients). Batch ``i`` is
    ``task(batch, seed * 100003 + 10**4 * stage + i)``: with fewer than 10**4 steps and 10
    stages no two stages or seeds share one, and none is the held-out batch of the
    evaluations (seeds >= 10**6)."""
    fn = "train"
    steps = check_int(fn, "steps", steps, low=1)
    check_choice(fn, "method", method, ("bptt", "mrbp"))
    history = segment_lab.train_through_time(
        model, task, steps, method=method, batch=batch, seed=seed, eval_every=None, clip=clip,
        optimizer=lambda params: AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.0),
        schedule=lambda opt: WarmupCosine(opt, steps, warmup_steps=min(warmup, steps - 1)),
        batch_offset=10**4 * stage)
    return history["loss"]


def retrieval_task(n_pairs, pairs_per_segment=1, n_gap=0, n_keys=8, n_values=8,
                   n_queries=None):
    """``task(batch, seed) -> segments`` of :func:`minimem.tasks.associative_retrieval`, every
    written key asked (``n_queries=None``) in the last segment; a tuple ``n_gap`` draws the
    number of filler segments per batch from it."""
    gaps = tuple(n_gap) if isinstance(n_gap, (tuple, list)) else (n_gap,)
    asked = n_pairs if n_queries is None else n_queries

    def task(batch, seed):
        gap = gaps[np.random.default_rng(seed).integers(len(gaps))]
        return associative_retrieval(n_pairs, batch, seed=seed,
                                     pairs_per_segment=pairs_per_segment, n_gap=int(gap),
                                     n_keys=n_keys, n_values=n_values, n_queries=asked)
    return task


def pairs_recalled(kinds, stages=(2, 4, 6, 8), eval_pairs=(2, 4, 6, 8), seeds=(0, 1, 2),
                   steps=2000, d_model=32, n_mem=2, n_keys=8, n_values=8, lr=3e-3, batch=32,
                   method="bptt", eval_batch=256, model_kw=None):
    """Pairs recalled vs pairs written, one pair per segment, every written key asked.

    Each kind and seed trains one model through a curriculum (the paper's): ``steps`` steps on
    ``stages[0]`` pairs, then ``steps`` on ``stages[1]``, ... (:func:`train`), and is then
    evaluated on a held-out batch for each number of pairs in ``eval_pairs``. Returns a list
    of rows ``{kind, n_pairs, seed, accuracy, recalled, losses, model}`` (recalled = accuracy
    x pairs written, since every written key is asked; losses: the training loss of every
    step of the curriculum, stage after stage, one list shared by the rows of one model);
    ``model_kw`` go to :func:`make_model`."""
    vocab = retrieval_vocab(n_keys, n_values)
    max_len = 2 * max(max(eval_pairs), max(stages))
    rows = []
    for kind in kinds:
        for seed in seeds:
            model = make_model(kind, vocab, d_model, n_mem, max_len, seed=seed,
                               **(model_kw or {}))
            losses = []
            for stage, n in enumerate(stages):
                losses += train(model, retrieval_task(n, n_keys=n_keys, n_values=n_values),
                                steps, lr=lr, batch=batch, seed=seed, method=method,
                                stage=stage)
            for n in eval_pairs:
                segs = retrieval_task(n, n_keys=n_keys, n_values=n_values)(
                    eval_batch, 10**6 + seed)
                acc = segment_lab.evaluate_segments(model, segs)
                rows.append({"kind": kind, "n_pairs": n, "seed": seed, "accuracy": acc,
                             "recalled": acc * n, "losses": losses, "model": model})
    return rows


def accuracy_without_reads(model, segments):
    r"""Accuracy of a trained ARMT on ``segments`` with its associative reads switched off:
    every layer's :math:`W_V` set to 0 for the evaluation (and restored), so that every write
    stores :math:`v = \bar v = 0`, :math:`A` stays 0 and every read returns 0. What is left
    is what the memory tokens alone carry; a drop to chance says the pairs live in A."""
    if not isinstance(model, ARMT):
        raise TypeError(f"accuracy_without_reads: model must be an ARMT, got "
                        f"{type(model).__name__}")
    saved = [assoc.W_V.weight.data.copy() for assoc in model.assoc]
    try:
        for assoc in model.assoc:
            assoc.W_V.weight.data[...] = 0.0
        return segment_lab.evaluate_segments(model, segments)
    finally:
        for assoc, weight in zip(model.assoc, saved):
            assoc.W_V.weight.data[...] = weight


def matrix_states(model, segments, layer=0):
    """The associative memory of a trained ARMT while it reads ``segments`` in order:
    :math:`A_t` and :math:`z_t` of layer ``layer`` after every segment t, two arrays
    (T, B, d_phi, d) and (T, B, d_phi) (no gradients are kept)."""
    if not isinstance(model, ARMT):
        raise TypeError(f"matrix_states: model must be an ARMT, got {type(model).__name__}")
    layer = check_int("matrix_states", "layer", layer, low=-len(model.assoc),
                      high=len(model.assoc) - 1)
    As, zs = [], []
    with no_grad():
        state = model.init_memory(segments[0][0].shape[0])
        for x, _ in segments:
            _, state = model.step(x, state)
            A, z = state[1][layer]
            As.append(A.numpy())
            zs.append(z.numpy())
    return np.array(As), np.array(zs)


def write_sizes(model, segments, layer=-1):
    r"""How much each segment writes into a trained ARMT's matrix: for every segment t of
    ``segments`` read in order, :math:`\lVert A_t - A_{t-1} \rVert_F` and
    :math:`\lVert A_t \rVert_F` of layer ``layer`` (:func:`matrix_states`; :math:`A_0 = 0`),
    per sequence; two arrays (T, B)."""
    if not isinstance(model, ARMT):
        raise TypeError(f"write_sizes: model must be an ARMT, got {type(model).__name__}")
    layer = check_int("write_sizes", "layer", layer, low=-len(model.assoc),
                      high=len(model.assoc) - 1)
    As = matrix_states(model, segments, layer)[0]
    As = As.reshape(As.shape[0], As.shape[1], -1)
    before = np.concatenate([np.zeros_like(As[:1]), As[:-1]])       # A_{t-1}, A_0 = 0
    return np.linalg.norm(As - before, axis=2), np.linalg.norm(As, axis=2)


def holds_a_fact(segments, n_entities=4):
    """(T, B) bool: which segment of facts-in-noise ``segments`` holds a fact (an entity
    token; the question segment holds an entity too and is True)."""
    return np.array([((x >= FIRST_ENTITY) & (x < FIRST_ENTITY + n_entities)).any(axis=1)
                     for x, _ in segments])


def facts_task(n_segments, n_facts=2, seg_len=8, n_entities=4, n_places=4, n_noise=8,
               n_questions=1):
    """``task(batch, seed) -> segments`` of :func:`minimem.tasks.facts_in_noise`; a tuple
    ``n_segments`` draws the number of segments per batch from it (the facts stay
    ``n_facts``: more segments, more filler around them)."""
    counts = tuple(n_segments) if isinstance(n_segments, (tuple, list)) else (n_segments,)

    def task(batch, seed):
        S = counts[np.random.default_rng(seed).integers(len(counts))]
        return facts_in_noise(n_facts, int(S), seg_len, batch, seed=seed,
                              n_entities=n_entities, n_places=n_places, n_noise=n_noise,
                              n_questions=n_questions)
    return task


def facts_heuristics(segments, n_entities=4, n_places=4):
    """Accuracy of three rules that need no memory of bindings, or only half of it, on the
    questions of facts-in-noise ``segments`` (:func:`minimem.tasks.facts_in_noise` with
    ``n_entities`` and ``n_places``): what a trained model must beat to show it binds.

    * ``"last place read"``: answer the place of the last fact, whoever was asked;
    * ``"a mentioned place"``: a uniform guess among the places the facts named (expected);
    * ``"first place of the entity"``: bind, but never overwrite (the entity's first fact).

    Returns ``{rule: accuracy}``."""
    first_place = FIRST_ENTITY + n_entities
    first_noise = first_place + n_places
    stream = np.concatenate([x for x, _ in segments[:-1]], axis=1)
    x_q, y_q = segments[-1]
    hits = {"last place read": [], "a mentioned place": [], "first place of the entity": []}
    for b in range(stream.shape[0]):
        starts = np.flatnonzero((stream[b, :-1] >= FIRST_ENTITY)
                                & (stream[b, :-1] < first_place))
        starts = starts[(stream[b, starts + 1] >= first_place)
                        & (stream[b, starts + 1] < first_noise)]
        who, where = stream[b, starts], stream[b, starts + 1]
        for j in np.flatnonzero(y_q[b] >= 0):
            answer = y_q[b, j]
            if not (who == x_q[b, j]).any():
                raise ValueError(f"facts_heuristics: sequence {b} asks about entity "
                                 f"{x_q[b, j]}, which no fact mentions (segments must come "
                                 f"from facts_in_noise with n_entities={n_entities})")
            hits["last place read"].append(where[-1] == answer)
            hits["a mentioned place"].append(np.mean(np.unique(where) == answer))
            hits["first place of the entity"].append(where[who == x_q[b, j]][0] == answer)
    return {rule: float(np.mean(h)) for rule, h in hits.items()}


def length_generalization(kinds, train_segments=(3, 4), eval_segments=(3, 4, 8, 16, 32),
                          seeds=(0, 1, 2), steps=1500, d_model=32, n_mem=2, n_layers=2,
                          n_facts=2, seg_len=8, n_entities=4, n_places=4, n_noise=8,
                          n_questions=1, lr=3e-3, batch=64, method="bptt", eval_batch=256,
                          length_stages=None, model_kw=None):
    """Facts in noise: train on ``train_segments`` segments (drawn per batch), evaluate on
    ``eval_segments`` (more segments than trained: the same facts in more filler).

    The defaults are the chapter's setting: 2 layers, 2 facts among 4 entities and 4 places,
    one question, 3 or 4 segments of 8 tokens in training. Why 2 layers: a fact is two
    adjacent tokens, and one layer cannot bind a place to the entity before it when a segment
    holds several facts (with 1 layer, 3 facts and 2 questions every model of the chapter
    stayed at 0.60, near the 0.56 of always answering the last place read).

    ``length_stages``: a curriculum over lengths instead, e.g. ``((3, 4), (6, 8), (12, 16))``:
    ``steps`` steps on each tuple of segment counts in turn (the paper's curriculum over
    lengths), and an evaluation after every stage.

    Returns rows ``{kind, seed, stage, n_segments, accuracy, model}`` (accuracy on the
    questions of a held-out batch after stage ``stage``, 0 without a curriculum; chance
    1 / n_places); ``model_kw`` go to :func:`make_model`."""
    vocab = facts_vocab(n_entities, n_places, n_noise)
    shape = {"n_facts": n_facts, "seg_len": seg_len, "n_entities": n_entities,
             "n_places": n_places, "n_noise": n_noise, "n_questions": n_questions}
    stages = [tuple(train_segments)] if length_stages is None else [
        tuple(lengths) for lengths in length_stages]
    rows = []
    for kind in kinds:
        for seed in seeds:
            model = make_model(kind, vocab, d_model, n_mem, seg_len, n_layers, seed=seed,
                               **(model_kw or {}))
            for stage, lengths in enumerate(stages):
                train(model, facts_task(lengths, **shape), steps, lr=lr, batch=batch,
                      seed=seed, method=method, stage=stage)
                for S in eval_segments:
                    segs = facts_task(S, **shape)(eval_batch, 10**6 + seed)
                    rows.append({"kind": kind, "seed": seed, "stage": stage, "n_segments": S,
                                 "model": model,
                                 "accuracy": segment_lab.evaluate_segments(model, segs)})
    return rows


def summarize(rows, key="accuracy", by="n_pairs"):
    """``{(kind, row[by]): (mean, std, n)}`` of ``key`` over the seeds."""
    groups = {}
    for r in rows:
        groups.setdefault((r["kind"], r[by]), []).append(r[key])
    return {g: (float(np.mean(v)), float(np.std(v)), len(v)) for g, v in groups.items()}


def print_table(summary, kinds, columns, title, width=13):
    """Print ``summary`` (of :func:`summarize`) as ``title``, one line per kind, one column
    (mean ± std) per entry of ``columns``."""
    print(title)
    print(f"{'':12s}" + "".join(f"{c:>{width}}" for c in columns))
    for kind in kinds:
        cells = "".join(f"{f'{summary[kind, c][0]:.2f} ± {summary[kind, c][1]:.2f}':>{width}}"
                        for c in columns)
        print(f"{KIND_LABELS.get(kind, kind):12s}" + cells)


def report(kinds=("rmt", "armt"), steps=2000, seeds=(0, 1, 2), stages=(2, 4, 6, 8),
           eval_pairs=(2, 4, 6, 8), facts_steps=1500, train_segments=(3, 4),
           eval_segments=(3, 4, 8, 16, 32), d_model=32, n_mem=2):
    """Train and print the chapter's two tables: pairs recalled vs pairs written
    (:func:`pairs_recalled`) and facts-in-noise accuracy vs segments
    (:func:`length_generalization`). Returns both lists of rows."""
    rows = pairs_recalled(kinds, stages, eval_pairs, seeds, steps, d_model, n_mem)
    print_table(summarize(rows, "recalled"), kinds, eval_pairs,
                f"pairs recalled of n written (mean ± std over {len(seeds)} seeds)")
    gen = length_generalization(kinds, train_segments, eval_segments, seeds, facts_steps,
                                d_model, n_mem)
    print_table(summarize(gen, by="n_segments"), kinds, eval_segments,
                f"facts in noise: accuracy vs segments (trained on {train_segments})")
    return rows, gen


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
