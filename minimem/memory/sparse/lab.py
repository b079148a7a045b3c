r"""Experiments of the sparse-attention chapter (used by the notebook, the tour and the tests).

* :class:`MemorizingLM` reads a long sequence segment by segment (its attention window is one
  segment) with a :class:`~minimem.memory.sparse.layers.KNNAttention` layer; the kNN memory of the
  earlier segments lets it answer a passkey placed segments before the query
  (:func:`passkey_knn_experiment`).
* :func:`pattern_lm` builds a ``TransformerLM`` whose attention is dense, ``fixed`` or
  ``local`` (block-sparse); :func:`long_range_experiment` trains them on the passkey task,
  where a key far outside a local window must reach the last position.
"""
from __future__ import annotations

import numpy as np

from ... import tasks, train
from ...autograd import Tensor, no_grad, ops
from ...backend import get_rng
from ...nn.attention import TransformerLM
from ...nn.layers import MLP, Embedding, LayerNorm, Linear
from ...nn.module import Module
from ...optim import Adam
from .layers import KNNAttention, SparseAttention


class MemorizingLM(Module):
    """One-layer LM reading ``tokens`` (B, T) in segments of ``segment`` tokens.

    Within a segment attention is causal; across segments only the kNN memory (keys and values
    of the previous segments, ``capacity`` per head) connects positions. ``use_memory=False``
    gives the same model with the window alone. The memory is cleared at each forward.
    """

    def __init__(self, vocab, d_model=32, n_heads=2, segment=16, capacity=256, topk=4,
                 use_memory=True, seed=None):
        super().__init__()
        rng = get_rng(seed)
        self.segment, self.use_memory = segment, use_memory
        self.tok = Embedding(vocab, d_model, seed=rng, std=0.5)
        self.pos = Embedding(segment, d_model, seed=rng, std=0.02)
        self.ln1, self.ln2, self.ln_f = LayerNorm(d_model), LayerNorm(d_model), LayerNorm(d_model)
        self.attn = KNNAttention(d_model, n_heads, capacity=capacity, topk=topk, seed=rng)
        self.mlp = MLP(d_model, 2 * d_model, seed=rng)
        self.head = Linear(d_model, vocab, bias=False, seed=rng)

    def forward(self, tokens):
        ids = np.asarray(tokens.data if isinstance(tokens, Tensor) else tokens)
        if ids.ndim != 2:
            raise ValueError(f"MemorizingLM: tokens must be (B, T) integers, got {ids.shape}")
        self.attn.memory.clear()
        self.attn.memorize = self.use_memory
        outs = []
        for s0 in range(0, ids.shape[1], self.segment):
            seg = ids[:, s0:s0 + self.segment]
            x = self.tok(seg) + self.pos(np.arange(seg.shape[1]))
            x = x + self.attn(self.ln1(x))
            x = x + self.mlp(self.ln2(x))
            outs.append(self.head(self.ln_f(x)))
        return outs[0] if len(outs) == 1 else ops.concatenate(outs, axis=1)


def passkey_knn_experiment(n_segments=4, segment=8, vocab=16, steps=200, batch_size=32,
                           n_eval=256, seed=0, lr=1e-2, progress=False):
    """Train a :class:`MemorizingLM` on passkeys; report accuracy with and without memory.

    Training alternates short sequences (the key inside the window, where the keys and values
    the memory will store are learned) and long ones (``n_segments`` segments; the key lies in
    the first quarter, at least one segment before the query). Evaluation uses long sequences
    only, so without memory the model can only guess (chance = 2 / vocab).

    Returns a dict: ``acc_memory``, ``acc_window`` (same weights, memory off), ``chance``,
    ``distance`` (mean tokens between the query and the retrieved key), ``history``, ``model``.
    """
    T = n_segments * segment
    if T // 4 + 2 > (n_segments - 1) * segment:
        raise ValueError("passkey_knn_experiment: the key must lie before the last segment")
    model = MemorizingLM(vocab, segment=segment, capacity=T, seed=seed)

    def batch(step):
        length = segment if step % 2 else T
        return tasks.passkey(vocab, length, batch_size, seed=seed * 100003 + step)

    hist = train.fit(model, batch, steps, Adam(model.parameters(), lr=lr),
                     batch_size=batch_size, eval_every=steps, progress=progress, seed=seed)
    x, y = tasks.passkey(vocab, T, n_eval, seed=seed + 987654)
    model.eval()
    acc_memory = train.evaluate(model, x, y)
    with no_grad():
        model(x[:64])
    key_pos = np.argmax(x[:64] == tasks.recall.KEY_MARK, axis=1) + 1
    # the position (in the stream) of the best retrieved item of the last query
    best = model.attn.last_retrieved.positions[:, :, -1, 0]
    hit = (best == key_pos[:, None]).mean()
    model.use_memory = False
    acc_window = train.evaluate(model, x, y)
    model.use_memory = True
    return {"acc_memory": acc_memory, "acc_window": acc_window, "chance": 2.0 / vocab,
            "retrieval_hit_rate": float(hit), "distance": float(np.mean(T - 1 - key_pos)),
            "history": hist, "model": model}


def pattern_lm(pattern, vocab, seq_len, d_model=32, n_layers=2, n_heads=2, block_size=4,
               seed=0, **params):
    """A ``TransformerLM`` with dense attention (``pattern="dense"``) or a block-sparse one."""
    mixer = None
    if pattern != "dense":
        def mixer(d_model, n_heads, layer):
            return SparseAttention(d_model, n_heads, pattern=pattern, block_size=block_size,
                                   seed=seed + 17 * layer + 1, layer=layer, **params)
    return TransformerLM(vocab, d_model, n_layers, n_heads, max_len=seq_len, mixer=mixer,
                         seed=seed)


def long_range_experiment(patterns=None, vocab=16, seq_len=32, steps=300, batch_size=32,
                          n_eval=256, seed=0, lr=3e-3, progress=False):
    """Train one small LM per pattern on passkeys of length ``seq_len``; {pattern: accuracy}.

    ``patterns``: {name: (pattern, params)}; default dense, ``fixed`` (blocks of 4, l=2, c=1:
    two hops reach any earlier token) and ``local`` (a 2-block window: the key is out of reach).
    """
    patterns = patterns or {"dense": ("dense", {}), "fixed": ("fixed", {"l": 2, "c": 1}),
                            "local": ("local", {"w": 2})}
    x, y = tasks.passkey(vocab, seq_len, n_eval, seed=seed + 4242)
    results = {}
    for name, (pattern, params) in patterns.items():
        model = pattern_lm(pattern, vocab, seq_len, seed=seed, **params)
        data = tasks.passkey(vocab, seq_len, steps * batch_size, seed=seed)
        hist = train.fit(model, data, steps, Adam(model.parameters(), lr=lr),
                         batch_size=batch_size, eval_every=max(1, steps // 4), eval_data=(x, y),
                         target_accuracy=0.99, progress=progress, seed=seed)
        results[name] = {"accuracy": train.evaluate(model, x, y), "history": hist}
    return results


def pattern_table(patterns, T):
    """One row per pattern: pairs kept, density, most keys of one query, two-hop coverage.

    ``patterns`` = {name: (kind, params)}. Coverage counts the pairs of the pattern's own
    reference that two layers reach: the causal pairs for a causal pattern, all pairs for a
    bidirectional one (Longformer, BigBird).
    """
    from .patterns import reachability, sparse_mask

    rows = []
    for name, (kind, params) in patterns.items():
        mask = sparse_mask(kind, T, **params)
        causal = not np.triu(mask, 1).any()
        reference = sparse_mask("causal", T) if causal else np.ones((T, T), dtype=bool)
        rows.append({"name": name, "causal": causal, "pairs": int(mask.sum()),
                     "density": float(mask.sum() / reference.sum()),
                     "max_keys": int(mask.sum(1).max()),
                     "two_hop": float(reachability(mask, hops=2)[reference].mean())})
    return rows


def passkey_knn_over_seeds(seeds=(0, 1, 2), **kwargs):
    """:func:`passkey_knn_experiment` for each seed: {"window only": [...], "window + kNN
    memory": [...], "retrieval hit rate": [...]} (one accuracy per seed) and ``chance``."""
    runs = [passkey_knn_experiment(seed=s, **kwargs) for s in seeds]
    return {"window only": [r["acc_window"] for r in runs],
            "window + kNN memory": [r["acc_memory"] for r in runs],
            "retrieval hit rate": [r["retrieval_hit_rate"] for r in runs],
            "chance": runs[0]["chance"], "seeds": tuple(seeds)}


def long_range_over_seeds(seeds=(0, 1, 2), steps=120, out_of_reach_steps=60, **kwargs):
    """:func:`long_range_experiment` for each seed: {pattern: [accuracy per seed]}.

    The ``local`` model cannot see the key at all, so it trains for ``out_of_reach_steps``
    only (more steps cannot help it; the dense and fixed models stop at 99 % anyway).
    """
    reachable = {"dense": ("dense", {}), "fixed": ("fixed", {"l": 2, "c": 1})}
    out = {"dense": [], "fixed": [], "local": []}
    for s in seeds:
        for name, r in long_range_experiment(reachable, steps=steps, seed=s, **kwargs).items():
            out[name].append(r["accuracy"])
        local = long_range_experiment({"local": ("local", {"w": 2})}, steps=out_of_reach_steps,
                                      seed=s, **kwargs)
        out["local"].append(local["local"]["accuracy"])
    return out
