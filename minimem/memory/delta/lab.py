r"""Experiments of the delta-rule chapter (used by the notebook, the tour and the tests).

* :func:`capacity_curve`: store :math:`N` key/value pairs in one :math:`d_k \times d_v` memory
  and read every key back. Linear attention returns :math:`v_i + \sum_{j\ne i}(k_i^\top k_j)v_j`:
  for random unit keys the crosstalk has variance :math:`\approx (N-1)/d_k` per stored value,
  so :math:`\mathrm{SNR} \approx d_k / N`. The delta rule with :math:`\beta = 1` overwrites
  instead of adding: with orthonormal keys the read-out is exact up to :math:`N = d_k`.
* :func:`mqar_experiment`: train the same small language model with DeltaNet or linear
  attention mixers on multi-query associative recall and compare accuracies.
* :func:`pair_recall_experiment`: the chapter's headline, one ``DeltaNet`` or
  ``LinearAttention`` layer trained on associative recall (:func:`pair_recall`: each token holds
  a key and its value, so the layer has nothing to bind across tokens and only the memory is
  tested), over several seeds.
* :func:`overwrite_trace`: the read-out error of every stored key after every token, under
  linear attention, the delta rule and the gated delta rule, while keys are rewritten.
* :func:`chunk_matrices`: one chunk's :math:`A`, :math:`\mathcal T`, :math:`W`, :math:`U` of the
  UT/WY form, checked against the token-by-token recurrence.
* :func:`transition_spectrum`, :func:`overwrite_demo`: the eigen-directions of the transition
  :math:`I - \beta k k^\top`; the final state after rewriting half of the keys.
"""
from __future__ import annotations

import numpy as np

from ...autograd.function import no_grad
from ...autograd.tensor import Tensor
from ...nn.layers import Embedding, Linear
from ...nn.module import Module
from .chunkwise import ut_transform
from .delta_rule import delta_rule, gated_delta_rule, transition_matrix
from .linear_attention import linear_attention

MIXERS = ("delta", "gated_delta", "linear")

def _keys(rng, N, d, orthogonal):
    """N unit keys; the first min(N, d) orthonormal when ``orthogonal``."""
    k = rng.standard_normal((N, d))
    if orthogonal:
        m = min(N, d)
        k[:m] = np.linalg.qr(rng.standard_normal((d, d)))[0].T[:m]
    return k / np.linalg.norm(k, axis=-1, keepdims=True)

def capacity_curve(d_k=64, n_pairs=(8, 16, 32, 48, 64, 96, 128, 192), orthogonal=True,
                   softmax_scale=None, sweeps=1, seed=0):
    """Retrieval error and SNR of linear attention, the delta rule and softmax attention.

    Returns ``{"n_pairs": array, "<method>": {"error": ..., "snr": ...}}`` for methods
    ``linear``, ``delta`` (beta = 1), ``softmax`` (logits ``softmax_scale * k_i . k_j``,
    default ``sqrt(d_k)``). ``error`` is :math:`\\|\\hat V - V\\|^2 / \\|V\\|^2`, ``snr`` its
    inverse. ``sweeps``: write the whole list of pairs that many times (the delta rule then
    converges towards the least-squares memory; linear attention only scales up).
    """
    rng = np.random.default_rng(seed)
    tau = np.sqrt(d_k) if softmax_scale is None else softmax_scale
    out = {"n_pairs": np.asarray(n_pairs), "linear": {}, "delta": {}, "softmax": {}}
    rows = {m: [] for m in ("linear", "delta", "softmax")}
    for N in n_pairs:
        k = _keys(rng, N, d_k, orthogonal)
        v = rng.standard_normal((N, d_k))
        K = Tensor(np.tile(k, (sweeps, 1))[None, None])
        V = Tensor(np.tile(v, (sweeps, 1))[None, None])
        _, S_lin = linear_attention(K, K, V, output_final_state=True)
        _, S_delta = delta_rule(K, K, V, Tensor(np.ones((1, 1, N * sweeps))),
                                output_final_state=True)
        S_lin = S_lin / sweeps
        logits = tau * k @ k.T
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        reads = {"linear": k @ S_lin.numpy()[0, 0], "delta": k @ S_delta.numpy()[0, 0],
                 "softmax": (w / w.sum(axis=1, keepdims=True)) @ v}
        for m, r in reads.items():
            rows[m].append(np.sum((r - v) ** 2) / np.sum(v ** 2))
    for m, errs in rows.items():
        errs = np.asarray(errs)
        out[m] = {"error": errs, "snr": 1 / np.maximum(errs, 1e-30)}
    return out

# ---------------------------------------------------------------------------------------------
def make_mqar_model(mixer, vocab_size=64, d_model=64, n_layers=2, n_heads=2, max_len=128,
                    d_head=None, mode="recurrent", seed=0, emb_std=1.0, zero_positions=False):
    """A :class:`TransformerLM` whose attention is replaced by a recurrent mixer (heads of
    size ``d_head``, default ``d_model // n_heads``). ``emb_std=1.0``: unit-variance token and
    position embeddings (the setting the chapter's MQAR numbers were measured with; with
    ``TransformerLM``'s default 0.02 the recall plateau lasts several times longer).
    ``zero_positions=True`` initialises the (still trained) position embeddings to zero: the
    recurrent mixers need no positions for recall, and random ones add noise to every key and
    value, which roughly halves the time spent on the plateau."""
    from ...nn.attention import TransformerLM
    from .layers import DeltaNet, GatedDeltaNet, LinearAttention

    if mixer not in MIXERS:
        raise ValueError(f"make_mqar_model: mixer must be one of {MIXERS}, got {mixer!r}")
    cls = {"delta": DeltaNet, "gated_delta": GatedDeltaNet, "linear": LinearAttention}[mixer]
    model = TransformerLM(vocab_size, d_model, n_layers, n_heads, max_len, seed=seed,
                          emb_std=emb_std,
                          mixer=lambda d_model, n_heads, layer: cls(d_model, n_heads, d_head, mode=mode,
                                                                    seed=seed + 17 * layer))
    if zero_positions:
        model.pos.weight.data[...] = 0
    return model

def mqar_experiment(mixers=("delta", "linear"), vocab_size=64, seq_len=128, n_kv=16,
                    d_model=64, n_layers=2, n_heads=2, d_head=None, steps=300, batch_size=32,
                    lr=3e-3, betas=(0.9, 0.999), warmup_steps=0, eval_examples=256,
                    eval_every=None, stop_at=None, seed=0, zero_positions=False, random_fill=True,
                    progress=False):
    """Train one model per mixer (same seed, data and steps); returns per-mixer results.

    Each training batch is fresh MQAR data (seeded by the step); accuracy is measured on
    ``eval_examples`` held-out sequences every ``eval_every`` steps. With ``stop_at``, the
    *first* mixer stops as soon as its held-out accuracy reaches ``stop_at`` and every other
    mixer then trains for exactly as many steps. ``warmup_steps > 0`` adds a linear warm-up
    then cosine decay of the learning rate over ``steps``. ``zero_positions`` is passed to
    :func:`make_mqar_model`; ``random_fill=False`` fills the non-recall positions with token 0
    instead of random tokens (:func:`minimem.tasks.mqar`). Returns ``{mixer: {"accuracy", "steps",
    "history", "model"}}``.
    """
    from ...optim import AdamW, WarmupCosine
    from ...tasks import mqar
    from ...train import evaluate, fit

    eval_data = mqar(vocab_size, seq_len, n_kv, eval_examples, seed=10 ** 6 + seed,
                     random_fill=random_fill)
    every = eval_every or max(1, steps // 10)
    results = {}
    for i, mixer in enumerate(mixers):
        model = make_mqar_model(mixer, vocab_size, d_model, n_layers, n_heads, seq_len, d_head,
                                seed=seed, zero_positions=zero_positions)
        opt = AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=0.0)
        sched = WarmupCosine(opt, steps, warmup_steps=warmup_steps) if warmup_steps else None
        hist = fit(model, lambda s: mqar(vocab_size, seq_len, n_kv, batch_size,
                                         seed=seed * 10 ** 5 + s, random_fill=random_fill),
                   steps, opt, batch_size=batch_size, eval_every=every, eval_data=eval_data,
                   target_accuracy=stop_at if i == 0 else None, clip_norm=1.0, scheduler=sched,
                   progress=progress, seed=seed)
        if i == 0 and stop_at is not None:
            steps = len(hist["step"])          # the others get the same budget
        with no_grad():
            acc = evaluate(model, *eval_data)
        results[mixer] = {"accuracy": acc, "steps": len(hist["step"]), "history": hist,
                          "model": model}
    return results

# ---------------------------------------------------------------------------------------------
def transition_spectrum(k, beta):
    """Eigenvalues and eigenvectors (columns) of :math:`I - \\beta k k^\\top`, ascending."""
    return np.linalg.eigh(transition_matrix(np.asarray(k, dtype=np.float64), beta))

def overwrite_demo(d_k=16, seed=0):
    """Store d_k pairs under orthonormal keys, then rewrite half of them with new values.

    Returns ``{"linear": S, "delta": S, "error_linear": e, "error_delta": e}`` where the
    errors are the mean squared read-out errors against the *latest* values.
    """
    rng = np.random.default_rng(seed)
    keys = np.linalg.qr(rng.standard_normal((d_k, d_k)))[0].T
    v_old = rng.standard_normal((d_k, d_k))
    v_new = v_old.copy()
    half = d_k // 2
    v_new[:half] = rng.standard_normal((half, d_k))
    k = np.concatenate([keys, keys[:half]])[None, None]
    v = np.concatenate([v_old, v_new[:half]])[None, None]
    K, V = Tensor(k), Tensor(v)
    _, S_lin = linear_attention(K, K, V, output_final_state=True)
    _, S_del = delta_rule(K, K, V, Tensor(np.ones((1, 1, k.shape[2]))), output_final_state=True)
    S_lin, S_del = S_lin.numpy()[0, 0], S_del.numpy()[0, 0]
    return {"linear": S_lin, "delta": S_del,
            "error_linear": float(np.mean((keys @ S_lin - v_new) ** 2)),
            "error_delta": float(np.mean((keys @ S_del - v_new) ** 2))}


# ---------------------------------------------------------------------------------------------
def pair_recall(n_pairs=8, n_keys=32, n_values=32, n_rewritten=0, rounds=3, n_examples=32,
                seed=0):
    r"""Associative recall with each key and its value in one token, some keys rewritten.

    An example first writes ``n_pairs`` distinct keys (from ``1..n_keys``) in a random order,
    each with a value drawn uniformly from ``1..n_values``; then ``n_rewritten`` of those keys
    are written ``rounds - 1`` more times (each round in a fresh order, each time a fresh
    value); then every key is queried once, in a random order. Token id
    ``key * (n_values + 1) + value``, value ``0`` marking a query; the target at a query is the
    value the key was given *last* (``-100`` elsewhere). Each token carries its key and value
    (the synthetic retrieval setting of Schlag et al., 2021), so a model needs no layer that
    binds a key to the token after it, and only its memory is tested. :func:`writes_per_query`
    tells the rewritten queries from the others.

    Returns ``(inputs, targets)``, int64 arrays of shape ``(n_examples, 2 * n_pairs +
    (rounds - 1) * n_rewritten)``.
    """
    for name, val, low in (("n_pairs", n_pairs, 1), ("n_keys", n_keys, 1),
                           ("n_values", n_values, 1), ("n_rewritten", n_rewritten, 0),
                           ("rounds", rounds, 1), ("n_examples", n_examples, 1)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < low:
            raise ValueError(f"pair_recall: {name} must be an int >= {low}, got {val!r}")
    if n_pairs > n_keys or n_rewritten > n_pairs:
        raise ValueError(f"pair_recall: needs n_rewritten <= n_pairs <= n_keys, got "
                         f"n_rewritten={n_rewritten}, n_pairs={n_pairs}, n_keys={n_keys}")
    rng = np.random.default_rng(seed)
    N, n, m = n_examples, n_pairs, n_rewritten

    def shuffled(width, take):                      # (N, take): random distinct 0..width-1
        return np.argsort(rng.random((N, width)), axis=1)[:, :take]

    rows = np.arange(N)[:, None]
    keys = 1 + shuffled(n_keys, n)                  # the key of slot j
    latest = np.zeros((N, n), dtype=np.int64)
    rewritten = shuffled(n, m)                      # the slots written again
    writes = []
    for r in range(rounds if m else 1):
        slots = shuffled(n, n) if r == 0 else rewritten[rows, shuffled(m, m)]
        vals = rng.integers(1, n_values + 1, size=slots.shape)
        latest[rows, slots] = vals
        writes.append(keys[rows, slots] * (n_values + 1) + vals)
    order = shuffled(n, n)
    inputs = np.concatenate(writes + [keys[rows, order] * (n_values + 1)], axis=1)
    targets = np.full(inputs.shape, -100, dtype=np.int64)
    targets[:, -n:] = latest[rows, order]
    return inputs.astype(np.int64), targets


def writes_per_query(inputs, targets, n_values=32):
    """How many times the key queried at each target position was written before it (0 where
    there is no target): ``(N, T)`` int array, for :func:`pair_recall` data."""
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    if inputs.shape != targets.shape or inputs.ndim != 2:
        raise ValueError(f"writes_per_query: inputs and targets must both be (N, T), got "
                         f"{inputs.shape} and {targets.shape}")
    key, value = np.divmod(inputs, n_values + 1)
    written = value > 0
    count = np.zeros(key.shape, dtype=np.int64)
    for b, t in zip(*np.nonzero(targets != -100)):
        count[b, t] = int(np.sum(written[b, :t] & (key[b, :t] == key[b, t])))
    return count


class PairRecallNet(Module):
    r"""Key and value embeddings, one recurrent mixer, a read-out over the values.

    ``forward(ids)``: :math:`x_t = E_k[\mathrm{key}_t] + E_v[\mathrm{value}_t]` for the tokens of
    :func:`pair_recall`, then the mixer (``DeltaNet``, ``GatedDeltaNet`` or
    ``LinearAttention``, without its short convolution), then logits over ``0..n_values``. No
    residual path: whatever the read-out knows about the queried value came through the memory.
    ``mode``, ``chunk_size``: the mixer's (the chunkwise form with chunks of 8 is the fastest
    here on a CPU; every mode computes the same recurrence).
    """

    def __init__(self, mixer, n_keys=32, n_values=32, d_model=32, n_heads=1, d_head=16,
                 mode="chunk", chunk_size=8, seed=0):
        super().__init__()
        from .layers import DeltaNet, GatedDeltaNet, LinearAttention

        if mixer not in MIXERS:
            raise ValueError(f"PairRecallNet: mixer must be one of {MIXERS}, got {mixer!r}")
        cls = {"delta": DeltaNet, "gated_delta": GatedDeltaNet, "linear": LinearAttention}[mixer]
        rng = np.random.default_rng(seed)
        self.n_keys, self.n_values = n_keys, n_values
        self.key_emb = Embedding(n_keys + 1, d_model, seed=rng)
        self.value_emb = Embedding(n_values + 1, d_model, seed=rng)
        tuning = {"chunk_size": chunk_size} if mode == "chunk" else {}
        self.mixer = cls(d_model, n_heads, d_head, conv_size=0, mode=mode, seed=seed + 17,
                         **tuning)
        self.head = Linear(d_model, n_values + 1, bias=False, seed=rng)

    def forward(self, ids):
        ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"PairRecallNet: ids must be (B, T) integers, got "
                             f"{ids.dtype} {ids.shape}")
        key, value = np.divmod(ids, self.n_values + 1)
        return self.head(self.mixer(self.key_emb(key) + self.value_emb(value)))


def pair_recall_experiment(mixers=("delta", "linear"), seeds=(0, 1, 2), n_pairs=8,
                           n_keys=32, n_values=32, n_rewritten=4, rounds=3, d_model=32,
                           n_heads=1, d_head=16, steps=150, batch_size=32, lr=1e-2,
                           eval_every=25, eval_examples=256, progress=False):
    r"""Train one :class:`PairRecallNet` per mixer and seed on :func:`pair_recall`.

    Every (mixer, seed) run sees the same fresh training batches (seeded by seed and step) and
    the same held-out set; AdamW (no weight decay), gradient clipping at 1. The default
    regime: 8 pairs, 4 of them rewritten twice more (3 values each, the last one asked for);
    one head of :math:`d_k = 16`. Linear attention's state is a sum over the writes, the same
    whatever their order, so for a rewritten key it cannot tell the last value from the earlier
    ones (at most about ``1 / rounds`` of those queries right); the delta rule replaces.

    Returns ``{"config": dict, "seeds": tuple, "chance": 1/n_values, "eval_step": list,
    mixer: {"accuracy", "once", "rewritten": (n_seeds,) final held-out accuracies over all
    queries, over the keys written once, over the rewritten keys; "eval_acc": (n_seeds,
    n_evals); "seconds": (n_seeds,)}}``.
    """
    from ...optim import AdamW
    from ...train import fit

    bad = [m for m in mixers if m not in MIXERS]
    if bad or not mixers:
        raise ValueError(f"pair_recall_experiment: mixers must be a non-empty sequence of "
                         f"{MIXERS}, got {mixers!r}")
    if len(seeds) == 0:
        raise ValueError("pair_recall_experiment: seeds must not be empty")
    task = {"n_pairs": n_pairs, "n_keys": n_keys, "n_values": n_values,
            "n_rewritten": n_rewritten, "rounds": rounds}
    config = {**task, "d_model": d_model, "n_heads": n_heads, "d_head": d_head,
              "steps": steps, "batch_size": batch_size, "lr": lr}
    out = {"config": config, "seeds": tuple(seeds), "chance": 1.0 / n_values}
    for mixer in mixers:
        res = {k: [] for k in ("accuracy", "once", "rewritten", "eval_acc", "seconds")}
        for seed in seeds:
            model = PairRecallNet(mixer, n_keys, n_values, d_model, n_heads, d_head, seed=seed)
            opt = AdamW(model.parameters(), lr=lr, weight_decay=0.0)
            x, y = pair_recall(**task, n_examples=eval_examples, seed=10 ** 6 + seed)
            hist = fit(model, lambda s, seed=seed: pair_recall(**task, n_examples=batch_size,
                                                               seed=seed * 10 ** 5 + s),
                       steps, opt, batch_size=batch_size, eval_every=eval_every,
                       eval_data=(x, y), clip_norm=1.0, progress=progress, seed=seed)
            model.eval()
            with no_grad():
                right = model(x).numpy().argmax(-1) == y
            count, asked = writes_per_query(x, y, n_values), y != -100
            for part, where in (("accuracy", asked), ("once", asked & (count == 1)),
                                ("rewritten", count > 1)):
                res[part].append(right[where].mean() if where.any() else np.nan)
            res["eval_acc"].append(hist["eval_acc"])
            res["seconds"].append(hist["time"][-1])
            out["eval_step"] = list(hist["eval_step"])
        out[mixer] = {k: np.asarray(v) for k, v in res.items()}
    return out


# ---------------------------------------------------------------------------------------------
def overwrite_trace(d_k=32, n_keys=8, n_writes=40, decay=0.9, beta=1.0, orthogonal=False,
                    seed=0):
    r"""Per-token read-out error of every stored key while keys are rewritten.

    Tokens ``0..n_keys-1`` write each key once; the remaining ``n_writes - n_keys`` tokens
    rewrite a random key (never the one just written) with a fresh value. Values are
    :math:`\mathcal N(0, I/d_k)` (norm about 1), keys unit vectors (orthonormal with
    ``orthogonal=True``). After every token ``t`` each key :math:`k_i` is read back,
    :math:`\hat v_i = S_t^\top k_i`, and compared with the value it was *last* given:

    .. math:: e_{t,i} = \|S_t^\top k_i - v_i^{\mathrm{latest}}\|^2 / \|v_i^{\mathrm{latest}}\|^2

    (NaN before key ``i`` is first written), under linear attention, the delta rule
    (``beta``) and the gated delta rule (``beta``, decay ``e^{g} = decay`` every token).

    Returns ``{"key": (T,) index written at each token, "error": {rule: (T, n_keys)},
    "final": {rule: mean error over keys after the last token}, "decay", "beta"}``.
    """
    if not 0 < decay <= 1:
        raise ValueError(f"overwrite_trace: decay must be in (0, 1], got {decay!r}")
    if n_writes < n_keys:
        raise ValueError(f"overwrite_trace: n_writes ({n_writes}) must be >= n_keys "
                         f"({n_keys})")
    rng = np.random.default_rng(seed)
    keys = _keys(rng, n_keys, d_k, orthogonal)
    order = list(range(n_keys))
    while len(order) < n_writes:
        nxt = int(rng.integers(n_keys - 1))
        order.append(nxt + (nxt >= order[-1]))          # any key but the one just written
    order = np.asarray(order)
    T = len(order)
    values = rng.standard_normal((T, d_k)) / np.sqrt(d_k)
    latest = np.full((T, n_keys, d_k), np.nan)
    current = np.full((n_keys, d_k), np.nan)
    for t, i in enumerate(order):
        current[i] = values[t]
        latest[t] = current
    # read key i after every token: batch row i queries k_i at every step (scale 1)
    k = np.broadcast_to(keys[order], (n_keys, 1, T, d_k)).copy()
    v = np.broadcast_to(values, (n_keys, 1, T, d_k)).copy()
    q = np.broadcast_to(keys[:, None, None, :], (n_keys, 1, T, d_k)).copy()
    Q, K, V = Tensor(q), Tensor(k), Tensor(v)
    B = Tensor(np.full((n_keys, 1, T), float(beta)))
    G = Tensor(np.full((n_keys, 1, T), np.log(decay)))
    reads = {"linear": linear_attention(Q, K, V, scale=1.0)[0],
             "delta": delta_rule(Q, K, V, B, scale=1.0)[0],
             "gated_delta": gated_delta_rule(Q, K, V, B, G, scale=1.0)[0]}
    truth = np.transpose(latest, (1, 0, 2))                            # (n_keys, T, d_k)
    norm = np.sum(truth ** 2, axis=-1)
    error, final = {}, {}
    for rule, o in reads.items():
        e = np.sum((o.numpy()[:, 0] - truth) ** 2, axis=-1) / norm    # (n_keys, T), NaN early
        error[rule] = e.T
        final[rule] = float(np.mean(e[:, -1]))
    return {"key": order, "error": error, "final": final, "decay": decay, "beta": beta}


def chunk_matrices(C=8, d_k=6, d_v=4, gated=True, seed=0):
    r"""One chunk of the UT/WY form, from its definitions, checked against the recurrence.

    Random unit keys, values, :math:`\beta \sim U(0.3, 1)`, log-decays :math:`g \sim
    -U(0, 0.3)` (``gated``; else 0) and a random entry state :math:`S`. Builds
    :math:`\Gamma`, :math:`A = \mathrm{tril}(\mathrm{diag}(\beta) K K^\top \odot \Gamma, -1)`,
    :math:`\mathcal T = (I + A)^{-1} \mathrm{diag}(\beta)`, :math:`W, U` (from
    ``ut_transform``) and :math:`U' = U - W S`, and runs the gated delta rule token by token from
    :math:`S` for its pseudo-values :math:`u_t` and final state.

    Returns a dict of the arrays (``K, V, beta, gamma, Gamma, A, T, W, U, U_prime, S0``) and
    ``gap_wu`` (max deviation of ``ut_transform`` from :math:`\mathcal T\, \mathrm{diag}
    (e^\gamma) K`, :math:`\mathcal T V`), ``gap_u`` (:math:`U'` vs the recurrence's
    :math:`u_t`), ``gap_state`` (the hand-off :math:`e^{\gamma_C} S + (\mathrm{diag}
    (e^{\gamma_C - \gamma}) K)^\top U'` vs the recurrence's final state).
    """
    for name, val in (("C", C), ("d_k", d_k), ("d_v", d_v)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"chunk_matrices: {name} must be an int >= 1, got {val!r}")
    rng = np.random.default_rng(seed)
    K = rng.standard_normal((C, d_k))
    K /= np.linalg.norm(K, axis=1, keepdims=True)
    V = rng.standard_normal((C, d_v))
    beta = rng.uniform(0.3, 1.0, C)
    g = -rng.uniform(0, 0.3, C) if gated else np.zeros(C)
    S0 = rng.standard_normal((d_k, d_v))
    gamma = np.cumsum(g)
    Gamma = np.tril(np.exp(gamma[:, None] - gamma[None, :]))
    A = np.tril(beta[:, None] * (K @ K.T) * Gamma, -1)
    Tm = np.linalg.inv(np.eye(C) + A) @ np.diag(beta)
    W, U = ut_transform(K, V, beta, g)
    gap_wu = max(np.abs(W - Tm @ (np.exp(gamma)[:, None] * K)).max(), np.abs(U - Tm @ V).max())
    U_prime = U - W @ S0
    S, u = S0.copy(), []                        # the recurrence (delta-gated), token by token
    for t in range(C):
        S = np.exp(g[t]) * S
        u.append(beta[t] * (V[t] - S.T @ K[t]))
        S = S + np.outer(K[t], u[-1])
    handoff = np.exp(gamma[-1]) * S0 + (np.exp(gamma[-1] - gamma)[:, None] * K).T @ U_prime
    return {"K": K, "V": V, "beta": beta, "gamma": gamma, "Gamma": Gamma, "A": A, "T": Tm,
            "W": W, "U": U, "U_prime": U_prime, "S0": S0,
            "gap_wu": float(gap_wu), "gap_u": float(np.abs(U_prime - np.array(u)).max()),
            "gap_state": float(np.abs(handoff - S).max())}


# ---------------------------------------------------------------------------------------------
# State tracking: parity and modular counting, trained short, tested long
# ---------------------------------------------------------------------------------------------
STATE_MIXERS = ("linear", "delta", "delta_neg", "delta_product", "softmax")
STATE_TASKS = ("parity", "modular_counting")


def _state_mixer(mixer, d_model, n_heads, mode, chunk_size, seed):
    """The token mixer of :class:`StateTrackingNet` (no short convolution: the state alone
    must carry the count)."""
    from ...nn.attention import MultiHeadAttention
    from .layers import DeltaNet, DeltaProductNet, LinearAttention

    if mixer == "softmax":   # causal, no positional encoding (NoPE)
        return MultiHeadAttention(d_model, n_heads, causal=True, seed=seed)
    kw = dict(conv_size=0, mode=mode, seed=seed,
              **({"chunk_size": chunk_size} if mode == "chunk" else {}))
    if mixer == "linear":
        return LinearAttention(d_model, n_heads, **kw)
    if mixer == "delta_product":
        return DeltaProductNet(d_model, n_heads, n_householder=2, allow_neg_eigval=True, **kw)
    return DeltaNet(d_model, n_heads, allow_neg_eigval=mixer == "delta_neg", **kw)


class StateTrackingNet(Module):
    r"""Token embedding, ``n_layers`` pre-norm blocks :math:`x \leftarrow x + \mathrm{mixer}
    (\mathrm{LN}(x))`, :math:`x \leftarrow x + \mathrm{MLP}(\mathrm{LN}(x))`, then logits over
    the ``n_classes`` states. Mixers (:data:`STATE_MIXERS`): ``"linear"`` (linear attention),
    ``"delta"`` (DeltaNet, :math:`\beta \in (0, 1)`), ``"delta_neg"`` (DeltaNet,
    :math:`\beta \in (0, 2)`), ``"delta_product"`` (DeltaProduct, :math:`n_h = 2`,
    :math:`\beta \in (0, 2)`), ``"softmax"`` (causal softmax attention without positions)."""

    def __init__(self, mixer, n_symbols=2, n_classes=2, d_model=32, n_layers=1, n_heads=2,
                 mode="chunk", chunk_size=16, seed=0):
        super().__init__()
        from ...nn.attention import TransformerBlock
        from ...nn.layers import LayerNorm
        from ...nn.module import ModuleList

        if mixer not in STATE_MIXERS:
            raise ValueError(f"StateTrackingNet: mixer must be one of {STATE_MIXERS}, got "
                             f"{mixer!r}")
        rng = np.random.default_rng(seed)
        self.emb = Embedding(n_symbols, d_model, seed=rng)
        self.blocks = ModuleList([
            TransformerBlock(d_model, n_heads, 2 * d_model, seed=rng, layer=i,
                             mixer=lambda d_model, n_heads, layer, i=i: _state_mixer(
                                 mixer, d_model, n_heads, mode, chunk_size, seed + 31 * i + 7))
            for i in range(n_layers)])
        self.ln_f = LayerNorm(d_model)
        self.head = Linear(d_model, n_classes, bias=True, seed=rng)

    def forward(self, ids):
        ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"StateTrackingNet: ids must be (B, T) integers, got "
                             f"{ids.dtype} {ids.shape}")
        x = self.emb(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def _state_task(task, modulus):
    from ...tasks import modular_counting, parity

    if task not in STATE_TASKS:
        raise ValueError(f"state_tracking_experiment: task must be one of {STATE_TASKS}, got "
                         f"{task!r}")
    if task == "parity":
        return parity, 2
    return (lambda n, T, seed, targets="all": modular_counting(n, T, modulus, seed, targets),
            modulus)


def state_tracking_experiment(task="parity", mixers=STATE_MIXERS, seeds=(0, 1, 2),
                              train_len=16, test_lens=(16, 32, 64, 128), modulus=3,
                              d_model=32, n_layers=1, n_heads=2, steps=300, batch_size=32,
                              lr=3e-3, eval_examples=256, progress=False):
    r"""Length generalization on a state-tracking task (:mod:`minimem.tasks.state_tracking`).

    One :class:`StateTrackingNet` per mixer and seed, trained on strings of ``train_len``
    tokens with a target at every position (AdamW, no weight decay, gradient clipping at 1);
    then the accuracy of the state *after the last token* of ``eval_examples`` fresh strings
    of each length in ``test_lens`` (chance: ``1 / n_classes``).

    Returns ``{"config": dict, "seeds": tuple, "test_lens": tuple, "chance": float,
    mixer: {"accuracy": (n_seeds, n_lens), "train_acc": (n_seeds,) the last training
    accuracy, "seconds": (n_seeds,)}}``.
    """
    from ...optim import AdamW
    from ...train import fit

    gen, n_classes = _state_task(task, modulus)
    bad = [m for m in mixers if m not in STATE_MIXERS]
    if bad or not mixers:
        raise ValueError(f"state_tracking_experiment: mixers must be a non-empty sequence of "
                         f"{STATE_MIXERS}, got {mixers!r}")
    if len(seeds) == 0 or len(test_lens) == 0:
        raise ValueError("state_tracking_experiment: seeds and test_lens must not be empty")
    config = {"task": task, "modulus": n_classes, "train_len": train_len, "d_model": d_model,
              "n_layers": n_layers, "n_heads": n_heads, "steps": steps,
              "batch_size": batch_size, "lr": lr}
    out = {"config": config, "seeds": tuple(seeds), "test_lens": tuple(test_lens),
           "chance": 1.0 / n_classes}
    tests = {L: gen(eval_examples, L, seed=10 ** 6 + L, targets="last") for L in test_lens}
    for mixer in mixers:
        res = {"accuracy": [], "train_acc": [], "seconds": []}
        for seed in seeds:
            model = StateTrackingNet(mixer, 2, n_classes, d_model, n_layers, n_heads,
                                     seed=seed)
            opt = AdamW(model.parameters(), lr=lr, weight_decay=0.0)
            hist = fit(model, lambda s, seed=seed: gen(batch_size, train_len,
                                                       seed=seed * 10 ** 5 + s),
                       steps, opt, batch_size=batch_size, eval_every=steps, clip_norm=1.0,
                       progress=progress, seed=seed)
            model.eval()
            with no_grad():
                accs = [float((model(x).numpy()[:, -1].argmax(-1) == y[:, -1]).mean())
                        for x, y in tests.values()]
            res["accuracy"].append(accs)
            res["train_acc"].append(float(np.mean(hist["train_acc"][-20:])))
            res["seconds"].append(hist["time"][-1])
        out[mixer] = {k: np.asarray(v) for k, v in res.items()}
    return out


def product_spectrum(k, beta):
    r"""Eigenvalues (complex, in the unit disk) of one DeltaProduct transition
    :math:`\prod_j (I - \beta_j k_j k_j^\top)` (``k (n_h, D)`` unit keys, ``beta (n_h,)``):
    with :math:`n_h = 1` they are real (:math:`1` and :math:`1 - \beta`); a product of two can
    rotate (a complex pair :math:`e^{\pm i\theta}`)."""
    from .delta_product import householder_product

    return np.linalg.eigvals(householder_product(np.asarray(k, dtype=np.float64),
                                                 np.asarray(beta, dtype=np.float64)))


def spectrum_samples(n_h=1, beta_range=(0.0, 1.0), d=4, n_samples=200, seed=0):
    """Eigenvalues of ``n_samples`` random DeltaProduct transitions (random unit keys, beta
    uniform in ``beta_range``): the points of the chapter's spectrum figure."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_samples):
        k = rng.standard_normal((n_h, d))
        k /= np.linalg.norm(k, axis=1, keepdims=True)
        out.append(product_spectrum(k, rng.uniform(*beta_range, n_h)))
    return np.concatenate(out)


def reflection_rotation_angle(k1, k2):
    r"""Predict: the product :math:`H_2 H_1` of the two reflections :math:`H_j = I - 2 k_j
    k_j^\top` (unit keys ``k1``, ``k2``, not parallel) leaves the directions orthogonal to both
    keys fixed and rotates their plane. Return the rotation angle :math:`\theta \in [0, \pi]`
    (a float): the eigenvalues of :math:`H_2 H_1` are then :math:`e^{\pm i\theta}` and
    :math:`1`."""
    fn = "reflection_rotation_angle"
    k1, k2 = np.asarray(k1, dtype=np.float64), np.asarray(k2, dtype=np.float64)
    if k1.ndim != 1 or k1.shape != k2.shape:
        raise ValueError(f"{fn}: k1 and k2 must be vectors of one length, got {k1.shape} and "
                         f"{k2.shape}")
    for name, k in (("k1", k1), ("k2", k2)):
        if abs(float(np.linalg.norm(k)) - 1.0) > 1e-8:
            raise ValueError(f"{fn}: {name} must be a unit vector, got norm "
                             f"{float(np.linalg.norm(k))}")
    # Exercise 20.7 (3 pt): derive the angle. In the plane of k1, k2, a reflection
    #   I - 2 k k^T mirrors across the line orthogonal to k; two mirrors whose lines meet at
    #   the angle phi make a rotation by 2 phi. Assign theta from the cosine c = k1 . k2.
    ### BEGIN SOLUTION
    # the mirror lines are orthogonal to k1 and k2, so they meet at the angle between the
    # keys' lines, phi = arccos |c| in [0, pi/2]: the rotation is by 2 phi in [0, pi].
    c = float(np.clip(abs(k1 @ k2), 0.0, 1.0))
    theta = 2.0 * float(np.arccos(c))
    ### END SOLUTION
    return theta


# ---------------------------------------------------------------------------------------------
# Feature maps and decays: what the figures of sections 8 and 9 show
# ---------------------------------------------------------------------------------------------
KERNEL_KINDS = (("elu1", {}), ("dpfp", {"nu": 3}), ("taylor2", {}), ("poly", {"degree": 4}),
                ("performer", {"n_features": 64}))


def kernel_curves(d=8, n_pairs=400, radius=1.0, kinds=KERNEL_KINDS, seed=0):
    r"""The kernel :math:`\phi(q)^\top \phi(k)` of each feature map against the softmax's
    :math:`e^{q^\top k}`, for ``n_pairs`` random pairs of norm ``radius`` (:math:`q^\top k
    \in [-r^2, r^2]`). Returns ``{"dot": (n,), "exp": (n,), kind: (n,)}`` sorted by the dot
    product; the performer curve uses one projection (``seed``)."""
    from .feature_maps import feature_map

    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal((2, n_pairs, d))
    q *= radius / np.linalg.norm(q, axis=1, keepdims=True)
    k *= radius / np.linalg.norm(k, axis=1, keepdims=True)
    dot = (q * k).sum(-1)
    order = np.argsort(dot)
    out = {"dot": dot[order], "exp": np.exp(dot[order])}
    for kind, params in kinds:
        if kind == "performer":
            params = {**params, "seed": seed}
        fq, fk = (feature_map(Tensor(x), kind, **params).numpy() for x in (q, k))
        out[kind] = (fq * fk).sum(-1)[order]
    return out


def decay_weights(g):
    r"""The decay factors :math:`e^{\gamma_t - \gamma_j}` (:math:`j \le t`, else 0) that gated
    linear attention puts on top of :math:`s\, q_t^\top k_j`, for log-decays ``g (T,)``."""
    g = np.asarray(g, dtype=np.float64)
    if g.ndim != 1 or (g > 0).any():
        raise ValueError(f"decay_weights: g must be a vector of log-decays <= 0, got shape "
                         f"{g.shape}")
    gamma = np.cumsum(g)
    T = len(g)
    return np.exp(gamma[:, None] - gamma[None, :]) * np.tril(np.ones((T, T)))
