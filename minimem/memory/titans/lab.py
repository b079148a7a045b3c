r"""Experiments of the Titans / ATLAS chapter (used by the notebook, the tour and the tests).

* :func:`capacity_experiment`: pairs recalled vs pairs stored by a linear memory that learns a
  stream of key-value pairs at test time, with raw keys or polynomial features, Omega windows
  of 1 or more tokens, and the least-squares limit of each feature map.
* :func:`predicted_capacity`: how many pairs a linear memory on a feature map can hold exactly
  (the dimension of the span of the features).
* :func:`inner_optimizer_experiment`: the inner loss of the current token, before its write,
  along a stream, for gradient descent, momentum and Muon on the same memory.
* :func:`chunk_error`: how far the chunked (mini-batch) form drifts from the token rule as
  the chunk grows.
* :func:`long_range_experiment`: passkey retrieval where the key lies farther back than the
  attention window: window-only attention vs MAC, MAG, MAL vs a full Transformer, over seeds.
"""
from __future__ import annotations

import math

import numpy as np

from ... import tasks, train
from ...autograd import Tensor, no_grad
from ...checks import check_int
from ...optim import Adam
from ..delta.feature_maps import feature_dim, feature_map
from .layers import VARIANTS, TitansLM
from .neural_memory import neural_memory
from .omega import omega_memory


def predicted_capacity(d_k, degree=None):
    """The number of independent pairs a linear memory on ``d_k``-dimensional keys holds
    exactly: raw keys (``degree=None``) or ``feature_map(k, "poly", degree=degree)``."""
    d_k = check_int("predicted_capacity", "d_k", d_k, low=1)
    if degree is None:
        return d_k
    degree = check_int("predicted_capacity", "degree", degree, low=0)
    # Exercise 25.3 (2 pt): derive the dimension of the span of phi(k) = [1, k, k⊗k/√2!, ...,
    #   k⊗p/√p!] over all k in R^{d_k} (k⊗i is a symmetric tensor: how many of its entries
    #   are distinct monomials?), and return it as an int named `capacity`.
    ### BEGIN SOLUTION
    capacity = math.comb(d_k + degree, degree)
    ### END SOLUTION
    return capacity


def _unit_keys(rng, shape):
    k = rng.standard_normal(shape)
    return k / np.linalg.norm(k, axis=-1, keepdims=True)


def _features(k, degree):
    if degree is None:
        return k
    return feature_map(Tensor(k), "poly", degree=degree).numpy()


def _recall(read, values):
    """Fraction of queries whose read-out is nearest (cosine) to its own stored value."""
    sims = np.einsum("bnd,bmd->bnm", read, values)
    return (sims.argmax(-1) == np.arange(values.shape[1])).mean(axis=-1)


def capacity_experiment(d_k=6, d_v=16, n_pairs=(2, 4, 6, 8, 12, 20, 28),
                        configs=(("raw keys", None, 1), ("raw keys, window 4", None, 4),
                                 ("poly 2", 2, 1), ("poly 2, window 4", 2, 4)),
                        passes=3, seeds=(0, 1, 2)):
    """Store ``n`` random pairs (unit keys, ±1 values) by streaming them ``passes`` times
    through ``omega_memory`` (plain gradient descent: no momentum, no decay; step
    :math:`\\theta = 1 / (2 w \\|\\phi(k)\\|^2)`), then query every stored key.

    ``configs``: ``(label, poly degree or None, window)``. Returns a dict: ``n_pairs``,
    ``recall[label]`` (n_pairs, seeds) and ``least_squares[degree]`` (the exact least-squares
    memory's recall, the limit of each feature map), ``predicted`` (capacity per degree).
    """
    seeds = list(seeds)
    out = {"n_pairs": list(n_pairs), "recall": {}, "least_squares": {}, "predicted": {},
           "seeds": seeds}
    data = {}
    for n in n_pairs:
        keys, vals = [], []
        for s in seeds:
            rng = np.random.default_rng(1000 * s + n)
            keys.append(_unit_keys(rng, (n, d_k)))
            vals.append(rng.choice([-1.0, 1.0], size=(n, d_v)))
        data[n] = np.stack(keys), np.stack(vals)                       # (S, n, d)
    degrees = sorted({deg for _, deg, _ in configs}, key=lambda d: -1 if d is None else d)
    for deg in degrees:
        name = "raw keys" if deg is None else f"poly {deg}"
        out["predicted"][name] = predicted_capacity(d_k, deg)
        rows = []
        for n in n_pairs:
            phi, vals = _features(data[n][0], deg), data[n][1]
            M = np.stack([np.linalg.lstsq(p, v, rcond=None)[0] for p, v in zip(phi, vals)])
            rows.append(_recall(np.einsum("bnk,bkd->bnd", phi, M), vals))
        out["least_squares"][name] = np.array(rows)
    with no_grad():
        for label, deg, window in configs:
            rows = []
            for n in n_pairs:
                keys, vals = data[n]
                S = len(seeds)
                k = np.tile(keys, (1, passes, 1))[:, None]               # (S, 1, T, d_k)
                v = np.tile(vals, (1, passes, 1))[:, None]
                d_phi = feature_dim("poly", d_k, degree=deg) if deg else d_k
                norm2 = (_features(keys[:1, :1], deg) ** 2).sum()
                T = k.shape[2]
                theta = np.full((S, 1, T), 1.0 / (2 * window * norm2))
                zeros = np.zeros((S, 1, T))
                fm = None if deg is None else ("poly", {"degree": deg})
                _, (M,) = omega_memory(Tensor(k), Tensor(k), Tensor(v), Tensor(theta),
                                       Tensor(zeros), Tensor(zeros),
                                       (Tensor(np.zeros((S, 1, d_phi, d_v))),),
                                       window=window, feature_map=fm)
                read = np.einsum("bnk,bkd->bnd", _features(keys, deg), M.numpy()[:, 0])
                rows.append(_recall(read, vals))
            out["recall"][label] = np.array(rows)
    return out


def inner_optimizer_experiment(d_k=8, d_v=8, n_assoc=6, T=64, seeds=(0, 1, 2),
                               settings=(("GD", "momentum", 0.0, 0.25),
                                         ("momentum", "momentum", 0.8, 0.06),
                                         ("Muon", "muon", 0.8, 0.15))):
    """Inner loss :math:`\\|M_{t-1}(k_t) - v_t\\|^2` of each token before its write, along a
    stream of ``T`` tokens drawn from ``n_assoc`` fixed pairs, for each inner optimizer
    ``(label, optimizer, eta, theta)`` on the same linear memory (no decay). The loss before
    the write is read by querying ``M_{t-1}`` with ``k_t`` (``q`` = the keys shifted by one).

    Returns ``{"loss": {label: (seeds, T - 1)}, "settings": ...}``.
    """
    losses = {label: [] for label, *_ in settings}
    for s in seeds:
        rng = np.random.default_rng(s)
        keys, vals = _unit_keys(rng, (n_assoc, d_k)), rng.standard_normal((n_assoc, d_v))
        order = rng.integers(0, n_assoc, T)
        k, v = keys[order][None, None], vals[order][None, None]
        q = np.concatenate([k[:, :, 1:], k[:, :, :1]], axis=2)      # q_t = k_{t+1}
        for label, opt, eta, theta in settings:
            with no_grad():
                o, _ = omega_memory(Tensor(q), Tensor(k), Tensor(v),
                                    Tensor(np.full((1, 1, T), theta)),
                                    Tensor(np.full((1, 1, T), eta)),
                                    Tensor(np.zeros((1, 1, T))),
                                    (Tensor(np.zeros((1, 1, d_k, d_v))),), optimizer=opt)
            err = ((o.numpy()[0, 0, :-1] - v[0, 0, 1:]) ** 2).sum(-1)
            losses[label].append(err)
    return {"loss": {k: np.array(v) for k, v in losses.items()}, "settings": list(settings)}


def chunk_error(chunk_sizes=(1, 2, 4, 8, 16), T=64, d=8, theta=0.1, eta=0.5, seed=0):
    """Largest ``abs(o(chunked) - o(token rule))`` of an MLP memory per chunk size (the price
    of taking a chunk's gradients at the memory before the chunk)."""
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((1, 2, T, d)) / math.sqrt(d) for _ in range(3))
    gates = [np.full((1, 2, T), x) for x in (theta, eta, 0.01)]
    W = (rng.standard_normal((1, 2, d, 2 * d)) / math.sqrt(d),
         rng.standard_normal((1, 2, 2 * d, d)) / math.sqrt(2 * d))
    args = [Tensor(x) for x in (q, k, v, *gates)]
    with no_grad():
        base = neural_memory(*args, tuple(map(Tensor, W)), "mlp")[0].numpy()
        return {C: float(np.abs(neural_memory(*args, tuple(map(Tensor, W)), "mlp",
                                              chunk_size=C)[0].numpy() - base).max())
                for C in chunk_sizes}


def long_range_experiment(variants=VARIANTS, seeds=(0, 1, 2), vocab=16, seq_len=24, window=6,
                          d_model=32, steps=300, batch_size=32, n_eval=256, lr=3e-3,
                          progress=False):
    """Passkey accuracy of a one-layer :class:`TitansLM` per variant and seed.

    The key lies in the first quarter of a sequence of ``seq_len`` tokens and the query at
    the end, so its distance (at least ``3 seq_len / 4 - 1``) exceeds the ``window`` of the
    sliding-window attention (and MAC's segment): only the memory (or full attention) can
    carry it. Memories are linear, in chunks of ``window`` tokens. Returns ``{"accuracy":
    {variant: [one per seed]}, "chance": 2 / vocab, "distance": the smallest distance}``.
    """
    if seq_len - 2 - (seq_len - 2) // 4 <= window:
        raise ValueError("long_range_experiment: the key must lie beyond the window")
    acc = {v: [] for v in variants}
    for seed in seeds:
        x, y = tasks.passkey(vocab, seq_len, n_eval, seed=seed + 4242)
        data = tasks.passkey(vocab, seq_len, steps * batch_size, seed=seed)
        for variant in variants:
            model = TitansLM(vocab, d_model, 1, 2, max_len=seq_len, variant=variant,
                             window=window, n_persistent=2, chunk_size=window, seed=seed)
            train.fit(model, data, steps, Adam(model.parameters(), lr=lr),
                      batch_size=batch_size, eval_every=max(1, steps // 4), eval_data=(x, y),
                      target_accuracy=0.99, progress=progress, seed=seed)
            acc[variant].append(train.evaluate(model, x, y))
    return {"accuracy": acc, "chance": 2 / vocab,
            "distance": seq_len - 2 - (seq_len - 2) // 4}
