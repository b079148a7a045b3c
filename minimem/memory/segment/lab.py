r"""Experiments of the MRBP chapter: memory/time profiles, tasks across segments, training.

* :func:`compare_bptt_mrbp` / :func:`memory_sweep`: peak tape bytes (``minimem.track_memory``)
  and wall time of one gradient computation by :func:`bptt` and :func:`mrbp`, and the largest
  difference between their gradients.
* :func:`tmaze_segments`: a cue in the first segment, the question in the last one — only a
  gradient that crosses every segment boundary can teach the model to store the cue.
* :func:`recall_segments`: key-value pairs in the first segment, queries in the last.
* :func:`train_through_time`: Adam on a segment task with ``bptt`` or ``mrbp`` (``window`` for
  truncation); :func:`evaluate_segments` measures accuracy where a target is given.

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
def tmaze_segments(n_segments, seg_len, batch, seed=None, vocab=8):
    """T-maze: segment 0 starts with a cue (token 1 or 2), the rest is noise (tokens 4..V-1);
    the last position of the last segment holds the query (token 3), whose target is the cue.
    Chance accuracy is 1/2."""
    if n_segments < 2 or seg_len < 2 or vocab < 5:
        raise ValueError(f"tmaze_segments: need n_segments >= 2, seg_len >= 2, vocab >= 5; got "
                         f"{n_segments}, {seg_len}, {vocab}")
    rng = np.random.default_rng(seed)
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

def copy_segments(n_tokens, batch, seed=None, vocab=8, n_gap=0):
    """Copy across segments: segment 0 holds n_tokens random tokens (1..vocab-1), ``n_gap``
    noise segments follow, and the last segment (all blanks, token 0) must reproduce segment 0
    position by position. Chance accuracy is 1/(vocab - 1)."""
    if n_tokens < 1 or vocab < 3:
        raise ValueError(f"copy_segments: need n_tokens >= 1 and vocab >= 3, got {n_tokens}, {vocab}")
    rng = np.random.default_rng(seed)
    data = rng.integers(1, vocab, size=(batch, n_tokens))
    blank = np.full((batch, n_tokens), IGNORE)
    segments = [(data, blank)]
    for _ in range(n_gap):
        segments.append((rng.integers(1, vocab, size=(batch, n_tokens)), blank))
    segments.append((np.zeros((batch, n_tokens), dtype=np.int64), data.copy()))
    return segments

# ---- training ------------------------------------------------------------------------------
def evaluate_segments(model, segments):
    """Accuracy of the argmax logits over every position with a target."""
    correct = total = 0
    with no_grad():
        memory = model.init_memory(np.asarray(segments[0][0]).shape[0])
        for x, y in segments:
            logits, memory = model.step(x, memory)
            mask = np.asarray(y) != IGNORE
            pred = logits.numpy().argmax(-1)
            correct += int((pred[mask] == np.asarray(y)[mask]).sum())
            total += int(mask.sum())
    return correct / max(total, 1)

def train_through_time(model, task, steps, method="mrbp", window=None, lr=3e-3, batch=32,
                       seed=0, eval_every=25, eval_batch=256, clip=1.0, progress=False):
    """Train ``model`` (with ``init_memory``/``step``) on ``task(batch, seed) -> segments``.

    ``method``: ``"mrbp"`` or ``"bptt"``; ``window``: truncation. Returns a history dict with
    ``step``, ``accuracy`` (on a fixed held-out batch) and ``loss`` (per step).
    """
    if method not in ("mrbp", "bptt"):
        raise ValueError(f"train_through_time: method must be 'mrbp' or 'bptt', got {method!r}")
    backprop = mrbp if method == "mrbp" else bptt
    opt = Adam(model.parameters(), lr=lr)
    eval_data = task(eval_batch, 10**6 + seed)
    history = {"step": [0], "accuracy": [evaluate_segments(model, eval_data)], "loss": []}
    cell = segment_cell(model)
    for step in range(1, steps + 1):
        segments = task(batch, seed * 100003 + step)
        opt.zero_grad()
        loss = backprop(cell, model.init_memory(batch), segments, segment_loss, window=window)
        if clip:
            clip_grad_norm_(model.parameters(), clip)
        opt.step()
        history["loss"].append(loss)
        if step % eval_every == 0 or step == steps:
            history["step"].append(step)
            history["accuracy"].append(evaluate_segments(model, eval_data))
            if progress:
                print(f"step {step}: loss {loss:.3f}, accuracy {history['accuracy'][-1]:.3f}")
    return history

# ---- plots ---------------------------------------------------------------------------------

