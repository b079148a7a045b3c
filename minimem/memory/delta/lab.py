r"""Experiments of the delta-rule chapter (used by the notebook, the tour and the tests).

* :func:`capacity_curve`: store :math:`N` key/value pairs in one :math:`d_k \times d_v` memory
  and read every key back. Linear attention returns :math:`v_i + \sum_{j\ne i}(k_i^\top k_j)v_j`:
  for random unit keys the crosstalk has variance :math:`\approx (N-1)/d_k` per stored value,
  so :math:`\mathrm{SNR} \approx d_k / N`. The delta rule with :math:`\beta = 1` overwrites
  instead of adding: with orthonormal keys the read-out is exact up to :math:`N = d_k`.
* :func:`mqar_experiment`: train the same small language model with DeltaNet or linear
  attention mixers on multi-query associative recall and compare accuracies.
* :func:`transition_spectrum`, :func:`plot_state`: the state matrix and the eigen-directions of
  the transition :math:`I - \beta k k^\top`.
"""
from __future__ import annotations

import numpy as np

from ...autograd.function import no_grad
from ...autograd.tensor import Tensor
from .delta_rule import delta_rule, transition_matrix
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
