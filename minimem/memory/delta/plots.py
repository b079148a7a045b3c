"""Figures of the delta-rule chapter (matplotlib, labelled): capacity, states, MQAR curves."""
from __future__ import annotations

import numpy as np

from ...autograd.tensor import Tensor

def plot_capacity(results, ax=None, d_k=None, methods=("linear", "delta", "softmax")):
    """Log-log plot of the SNR against the number of stored pairs (and ``d_k / N``).

    ``results``: ``{label: capacity_curve(...)}``; one line per label and method.
    """
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 4))[1]
    markers = {"linear": "o", "delta": "s", "softmax": "^"}
    for i, (label, result) in enumerate(results.items()):
        n = result["n_pairs"]
        for m in methods:
            snr = np.minimum(np.maximum(result[m]["snr"], 1e-1), 1e6)
            ax.loglog(n, snr, marker=markers[m], ls="-" if i == 0 else "--",
                      label=f"{m} ({label})")
    if d_k:
        ax.loglog(n, d_k / n, "k--", label=r"$d_k / N$")
        ax.axvline(d_k, color="gray", lw=0.8)
    ax.set(xlabel="stored pairs N", ylabel="SNR = |V|^2 / |V_hat - V|^2 (clipped)",
           title="Associative recall from one memory")
    ax.legend()
    return ax



def plot_state(S, ax=None, title="state S (d_k x d_v)"):
    """Heat map of one state matrix."""
    import matplotlib.pyplot as plt

    S = S.numpy() if isinstance(S, Tensor) else np.asarray(S)
    ax = ax or plt.subplots(figsize=(4, 4))[1]
    lim = np.abs(S).max() or 1.0
    im = ax.imshow(S, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set(title=title, xlabel="value dim", ylabel="key dim")
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    return ax



def plot_mqar(results, ax=None):
    """Held-out MQAR accuracy against training steps, one line per mixer."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 4))[1]
    for mixer, r in results.items():
        h = r["history"]
        ax.plot(h["eval_step"], h["eval_acc"], marker="o",
                label=f"{mixer} (final {r['accuracy']:.2f})")
    ax.set(xlabel="training step", ylabel="held-out accuracy", ylim=(0, 1.02),
           title="MQAR: DeltaNet vs linear attention (same model, seed, steps)")
    ax.legend()
    return ax
