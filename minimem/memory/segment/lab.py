r"""Experiments of the MRBP chapter: memory/time profiles, tasks across segments, training,
and what the memory holds.

* :func:`compare_bptt_mrbp` / :func:`memory_sweep`: peak tape bytes (``minimem.track_memory``)
  and wall time of one gradient computation by :func:`bptt` and :func:`mrbp`, and the largest
  difference between their gradients.
* :func:`tmaze_segments`: a cue in the first segment, the question in the last one — only a
  gradient that crosses every segment boundary can teach the model to store the cue
  (``balanced=True``: half the cues 1, half 2, for held-out batches).
* :func:`recall_segments`: key-value pairs in the first segment, queries in the last.
* :func:`copy_segments`: tokens in the first segment, to be reproduced in the last.
* :func:`train_through_time`: Adam on a segment task with ``bptt`` or ``mrbp`` (``window`` for
  truncation); :func:`train_seeds` repeats it over seeds, :func:`final_accuracies` and
  :func:`describe` summarize; :func:`evaluate_segments`, :func:`predict_targets` and
  :func:`position_accuracy` measure where a target is given.
* The memory over time: :func:`memory_trace` (the memories at every boundary),
  :func:`slot_change` (how far each write moved each slot), :func:`probe_slots` and
  :func:`probe_positions` (what a slot tells about a label, by a held-out nearest-class-mean
  read-out), :func:`first_segment_influence` (how far the first segment reaches).

Every segment is a pair ``(x, y)`` of int arrays (B, T); ``y = -100`` where no loss is taken.
"""
from __future__ import annotations

import time

import numpy as np

from ...autograd.function import no_grad, track_memory
from ...autograd.ops import cross_entropy
from ...optim import Adam, clip_grad_norm_
from .mrbp import bptt, mrbp

IGNORE = -100

def segment_cell(model):
    """The cell ``(segment, memory) -> (logits, memory)`` of a model with ``step(x, memory)``."""
    def cell(segment, memory):
        return model.step(segment[0], memory)
    return cell

def segment_loss(logits, segment):
    """Mean cross-entropy over the segment's targets, or None when it has none."""
    y = np.asarray(segment[1])
    if not (y != IGNORE).any():
        return None
    return cross_entropy(logits, y, ignore_index=IGNORE)

def _grads(model):
    return [None if p.grad is None else p.grad.numpy().copy() for p in model.parameters()]

def _run(method, model, segments, memory0_fn, loss_fn, **kw):
    model.zero_grad()
    memory0 = memory0_fn()
    with track_memory() as tracker:
        t0 = time.perf_counter()
        loss = method(segment_cell(model), memory0, segments, loss_fn, **kw)
        seconds = time.perf_counter() - t0
    return loss, seconds, tracker.peak_bytes, _grads(model)

def compare_bptt_mrbp(model, segments, loss_fn=segment_loss, batch=None, repeat=1):
    """Peak tape bytes, best wall time (of ``repeat``) and gradients of BPTT vs MRBP.

    Returns a dict: ``T, loss_bptt, loss_mrbp, peak_bptt, peak_mrbp, seconds_bptt,
    seconds_mrbp, stored_bytes`` (the boundary memories MRBP keeps) and ``max_grad_diff``
    (largest :math:`|g_{BPTT} - g_{MRBP}|` over every parameter, relative to the largest
    :math:`|g_{BPTT}|`).
    """
    batch = batch or np.asarray(segments[0][0]).shape[0]
    init = lambda: model.init_memory(batch)
    out = {"T": len(segments)}
    for name, method in (("bptt", bptt), ("mrbp", mrbp)):
        best = None
        for _ in range(max(1, repeat)):
            loss, sec, peak, grads = _run(method, model, segments, init, loss_fn)
            best = sec if best is None else min(best, sec)
        out.update({f"loss_{name}": loss, f"peak_{name}": peak, f"seconds_{name}": best,
                    f"grads_{name}": grads})
    gb, gm = out.pop("grads_bptt"), out.pop("grads_mrbp")
    scale = max((float(np.abs(g).max()) for g in gb if g is not None), default=1.0) or 1.0
    out["max_grad_diff"] = max((float(np.abs(a - b).max()) for a, b in zip(gb, gm)
                                if a is not None), default=0.0) / scale
    memory = model.init_memory(batch)
    leaves = memory if isinstance(memory, (tuple, list)) else (memory,)
    out["stored_bytes"] = (len(segments) + 1) * sum(int(m.data.nbytes) for m in leaves)
    return out

def memory_sweep(model, make_segments, Ts, loss_fn=segment_loss, repeat=1):
    """:func:`compare_bptt_mrbp` for each number of segments T in ``Ts``."""
    return [compare_bptt_mrbp(model, make_segments(T), loss_fn, repeat=repeat) for T in Ts]

# ---- tasks ---------------------------------------------------------------------------------
def tmaze_segments(n_segments, seg_len, batch, seed=None, vocab=8, balanced=False):
    """T-maze: segment 0 starts with a cue (token 1 or 2), the rest is noise (tokens 4..V-1);
    the last position of the last segment holds the query (token 3), whose target is the cue.
    Chance accuracy is 1/2.

    ``balanced=True`` draws the cues as a shuffled half-and-half batch (one more 1 when the
    batch is odd), so a model that always gives the same answer scores exactly 1/2 on it; with
    independent cues that score is the share of its answer in the batch (1/2 only on average)."""
    if n_segments < 2 or seg_len < 2 or vocab < 5:
        raise ValueError(f"tmaze_segments: need n_segments >= 2, seg_len >= 2, vocab >= 5; got "
                         f"{n_segments}, {seg_len}, {vocab}")
    rng = np.random.default_rng(seed)
    if balanced:
        cue = rng.permutation(np.arange(batch) % 2) + 1
    else:
        cue = rng.integers(1, 3, size=batch)
    segments = []
    for t in range(n_segments):
        x = rng.integers(4, vocab, size=(batch, seg_len))
        y = np.full((batch, seg_len), IGNORE)
        if t == 0:
            x[:, 0] = cue
        if t == n_segments - 1:
            x[:, -1] = 3
            y[:, -1] = cue
        segments.append((x, y))
    return segments

def recall_segments(n_pairs, batch, seed=None, n_keys=8, n_values=8, n_gap=0):
    """Associative recall across segments: segment 0 lists n_pairs (key, value) pairs,
    ``n_gap`` noise segments follow, and the last segment asks each key (in a new order); the
    target at a query is its value. Keys are tokens 1..n_keys, values the next n_values tokens;
    every segment has 2 * n_pairs tokens. Chance accuracy is 1/n_values."""
    if not 1 <= n_pairs <= n_keys:
        raise ValueError(f"recall_segments: n_pairs must be in [1, n_keys={n_keys}], got {n_pairs}")
    rng = np.random.default_rng(seed)
    L = 2 * n_pairs
    keys = np.stack([rng.choice(n_keys, n_pairs, replace=False) for _ in range(batch)]) + 1
    values = rng.integers(0, n_values, size=(batch, n_pairs)) + 1 + n_keys
    store = np.empty((batch, L), dtype=np.int64)
    store[:, 0::2], store[:, 1::2] = keys, values
    segments = [(store, np.full((batch, L), IGNORE))]
    for _ in range(n_gap):
        segments.append((rng.integers(1, 1 + n_keys + n_values, size=(batch, L)),
                         np.full((batch, L), IGNORE)))
    order = np.argsort(rng.random((batch, n_pairs)), axis=1)
    q = np.zeros((batch, L), dtype=np.int64)  # token 0: a blank after each query
    y = np.full((batch, L), IGNORE)
    q[:, 0::2] = np.take_along_axis(keys, order, axis=1)
    y[:, 0::2] = np.take_along_axis(values, order, axis=1)
    segments.append((q, y))
    return segments

def copy_segments(n_tokens, batch, seed=None, vocab=8, n_gap=0, n_noise=0):
    """Copy across segments: segment 0 holds n_tokens random tokens (1..vocab-1), ``n_gap``
    noise segments follow, and the last segment (all blanks, token 0) must reproduce segment 0
    position by position. Chance accuracy is 1/(vocab - 1).

    ``n_noise=0``: the noise is drawn from the data tokens, so only the memory can tell a noise
    segment from the data segment. ``n_noise > 0``: the noise is drawn from ``n_noise`` tokens
    of their own (``vocab .. vocab + n_noise - 1``; the model needs ``vocab + n_noise`` tokens),
    so a writer can learn to ignore it by its content."""
    if n_tokens < 1 or vocab < 3 or n_gap < 0 or n_noise < 0:
        raise ValueError(f"copy_segments: need n_tokens >= 1, vocab >= 3, n_gap >= 0 and "
                         f"n_noise >= 0, got {n_tokens}, {vocab}, {n_gap}, {n_noise}")
    rng = np.random.default_rng(seed)
    data = rng.integers(1, vocab, size=(batch, n_tokens))
    blank = np.full((batch, n_tokens), IGNORE)
    segments = [(data, blank)]
    low, high = (vocab, vocab + n_noise) if n_noise else (1, vocab)
    for _ in range(n_gap):
        segments.append((rng.integers(low, high, size=(batch, n_tokens)), blank))
    segments.append((np.zeros((batch, n_tokens), dtype=np.int64), data.copy()))
    return segments

# ---- training ------------------------------------------------------------------------------
def predict_targets(model, segments):
    """The argmax predictions and the targets at every position with a target.

    Returns two int arrays of one length: segment by segment, row-major within a segment."""
    preds, targets = [], []
    with no_grad():
        memory = model.init_memory(np.asarray(segments[0][0]).shape[0])
        for x, y in segments:
            logits, memory = model.step(x, memory)
            y = np.asarray(y)
            mask = y != IGNORE
            preds.append(logits.numpy().argmax(-1)[mask])
            targets.append(y[mask])
    return np.concatenate(preds), np.concatenate(targets)


def evaluate_segments(model, segments):
    """Accuracy of the argmax logits over every position with a target."""
    pred, target = predict_targets(model, segments)
    return float((pred == target).sum()) / max(target.size, 1)


def position_accuracy(model, segments):
    """Accuracy at each position of the last segment over the batch: (L,), NaN where no row of
    the batch has a target there (e.g. which copied token is right, position by position)."""
    with no_grad():
        memory = model.init_memory(np.asarray(segments[0][0]).shape[0])
        for x, _ in segments:
            logits, memory = model.step(x, memory)
    y = np.asarray(segments[-1][1])
    mask = y != IGNORE
    hit = (logits.numpy().argmax(-1) == y) & mask
    count = mask.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, hit.sum(0) / np.maximum(count, 1), np.nan)


def train_through_time(model, task, steps, method="mrbp", window=None, lr=3e-3, batch=32,
                       seed=0, eval_every=25, eval_batch=256, clip=1.0, progress=False,
                       eval_task=None, optimizer=None, schedule=None, batch_offset=0):
    """Train ``model`` (with ``init_memory``/``step``) on ``task(batch, seed) -> segments``.

    ``method``: ``"mrbp"`` or ``"bptt"``; ``window``: truncation. The held-out batch (of
    ``eval_batch`` sequences) is drawn once from ``eval_task`` (default ``task``), with a seed
    no training batch uses; ``eval_every=None`` skips the evaluations. ``optimizer``:
    ``params -> optimizer`` (default Adam at ``lr``); ``schedule``: ``optimizer -> schedule``
    stepped after every update (default none). Batch ``i`` is
    ``task(batch, seed * 100003 + batch_offset + i)``. Returns a history dict with ``step``,
    ``accuracy`` (on that batch) and ``loss`` (per step).
    """
    if method not in ("mrbp", "bptt"):
        raise ValueError(f"train_through_time: method must be 'mrbp' or 'bptt', got {method!r}")
    backprop = mrbp if method == "mrbp" else bptt
    opt = (optimizer or (lambda params: Adam(params, lr=lr)))(model.parameters())
    lr_schedule = schedule(opt) if schedule else None
    history = {"step": [], "accuracy": [], "loss": []}
    if eval_every is not None:
        eval_data = (eval_task or task)(eval_batch, 10**6 + seed)
        history["step"].append(0)
        history["accuracy"].append(evaluate_segments(model, eval_data))
    cell = segment_cell(model)
    for step in range(1, steps + 1):
        segments = task(batch, seed * 100003 + batch_offset + step)
        opt.zero_grad()
        loss = backprop(cell, model.init_memory(batch), segments, segment_loss, window=window)
        if clip:
            clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if lr_schedule:
            lr_schedule.step()
        history["loss"].append(loss)
        if eval_every is not None and (step % eval_every == 0 or step == steps):
            history["step"].append(step)
            history["accuracy"].append(evaluate_segments(model, eval_data))
            if progress:
                print(f"step {step}: loss {loss:.3f}, accuracy {history['accuracy'][-1]:.3f}")
    return history


def train_seeds(make_model, task, seeds, steps, **kw):
    """:func:`train_through_time` once per seed: ``make_model(seed)`` is trained with
    ``seed=seed`` (its own initialization, training batches and held-out batch).

    Returns one dict per seed: ``seed``, ``model`` (trained) and ``history``."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("train_seeds: seeds must be a non-empty list of ints")
    runs = []
    for seed in seeds:
        model = make_model(seed)
        history = train_through_time(model, task, steps, seed=seed, **kw)
        runs.append({"seed": seed, "model": model, "history": history})
    return runs


def final_accuracies(runs):
    """The last held-out accuracy of each run of :func:`train_seeds`, as an array."""
    return np.array([r["history"]["accuracy"][-1] for r in runs])


def describe(values, digits=2):
    """``"mean ± std [min, max] (n seeds)"`` of a list of numbers (std over the seeds, ddof=0)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("describe: no values")
    f = f".{digits}f"
    return (f"{v.mean():{f}} ± {v.std():{f}} [{v.min():{f}}, {v.max():{f}}] "
            f"({v.size} seed{'s' if v.size != 1 else ''})")


# ---- the memory over time ------------------------------------------------------------------
def memory_trace(model, segments):
    """The memories :math:`M_0, \\dots, M_T` as the model reads the segments (no tape).

    For a model whose memory is one Tensor (B, K, d) (Memformer's slots, RMT's tokens): an
    array (T + 1, B, K, d); entry t is the memory *before* segment t (entry T: after the last).
    """
    with no_grad():
        memory = model.init_memory(np.asarray(segments[0][0]).shape[0])
        trace = [memory.numpy().copy()]
        for x, _ in segments:
            _, memory = model.step(x, memory)
            trace.append(memory.numpy().copy())
    return np.stack(trace)


def slot_change(trace):
    r"""How much each write moved each slot: :math:`1 - \cos(m^i_{t+1}, m^i_t)`, averaged over
    the batch; (T, K), row t is the write of segment t. 0 = kept, 1 = orthogonal, 2 = flipped."""
    trace = np.asarray(trace, dtype=float)
    if trace.ndim != 4 or trace.shape[0] < 2:
        raise ValueError(f"slot_change: trace must be (T + 1 >= 2, B, K, d), got {trace.shape}")
    a, b = trace[1:], trace[:-1]
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    cos = (a * b).sum(-1) / np.maximum(norms, 1e-30)
    return 1.0 - cos.mean(axis=1)


def _nearest_mean_accuracy(X, labels, train, test):
    classes = np.unique(labels[train])
    means = np.stack([X[train][labels[train] == c].mean(0) for c in classes])
    dist = ((X[test][:, None, :] - means[None]) ** 2).sum(-1)
    return float((classes[dist.argmin(1)] == labels[test]).mean())


def probe_slots(trace, labels, seed=0):
    """What each slot holds about ``labels`` (one int per sequence, e.g. the T-maze cue) at
    each boundary: a nearest-class-mean read-out fit on a random half of the batch and scored
    on the other half. Returns (T + 1, K + 1) accuracies: column i is slot i alone, the last
    column all slots together. Chance is the share of the commonest label."""
    trace = np.asarray(trace, dtype=float)
    labels = np.asarray(labels)
    if trace.ndim != 4 or labels.shape != (trace.shape[1],):
        raise ValueError(f"probe_slots: need a trace (T + 1, B, K, d) and B labels, got "
                         f"{trace.shape} and {labels.shape}")
    B, K = trace.shape[1], trace.shape[2]
    if B < 4:
        raise ValueError(f"probe_slots: need a batch of at least 4 sequences, got {B}")
    order = np.random.default_rng(seed).permutation(B)
    train, test = order[: B // 2], order[B // 2:]
    out = np.empty((trace.shape[0], K + 1))
    for t, M in enumerate(trace):
        for i in range(K):
            out[t, i] = _nearest_mean_accuracy(M[:, i], labels, train, test)
        out[t, K] = _nearest_mean_accuracy(M.reshape(B, -1), labels, train, test)
    return out



def probe_positions(trace, tokens, boundary=-1, seed=0):
    """Which slot holds which token: for each position p of ``tokens`` (B, P) (e.g. the data
    segment of a copy task), :func:`probe_slots` of the memory at ``boundary`` against the
    token at p. Returns (P, K + 1): row p, column i = how well slot i alone tells the token at
    position p (last column: all slots together). Chance is about 1 / (number of tokens)."""
    trace = np.asarray(trace)
    tokens = np.asarray(tokens)
    if trace.ndim != 4 or tokens.ndim != 2 or tokens.shape[0] != trace.shape[1]:
        raise ValueError(f"probe_positions: need a trace (T + 1, B, K, d) and tokens (B, P), got "
                         f"{trace.shape} and {tokens.shape}")
    at = trace[[boundary]]
    return np.stack([probe_slots(at, tokens[:, p], seed=seed)[0] for p in range(tokens.shape[1])])


def first_segment_influence(model, segments):
    """How far segment 0 reaches: run ``segments`` and a copy whose segment 0 is replaced by
    another row's (the batch rolled by one), and return the largest absolute difference of
    logits in each segment, (T,). Exactly 0 in a segment the first one cannot influence."""
    x0 = np.asarray(segments[0][0])
    if x0.shape[0] < 2:
        raise ValueError("first_segment_influence: need a batch of at least 2 sequences")
    other = [(np.roll(x0, 1, axis=0), segments[0][1])] + list(segments[1:])
    outs = []
    for segs in (segments, other):
        logits = []
        with no_grad():
            memory = model.init_memory(x0.shape[0])
            for x, _ in segs:
                y, memory = model.step(x, memory)
                logits.append(y.numpy())
        outs.append(logits)
    return np.array([float(np.abs(a - b).max()) for a, b in zip(*outs)])
