"""Plots of the sparse-attention chapter (the notebook and the tour only call these)."""
from __future__ import annotations

import numpy as np

from .patterns import attended_pairs, density


def plot_masks(masks, title="Attention patterns (row i: query, column j: key)"):
    """Side-by-side boolean masks {name: (T, T)}, each titled with its density."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(masks), figsize=(3.2 * len(masks), 3.4))
    for ax, (name, mask) in zip(np.atleast_1d(axes), masks.items()):
        ax.imshow(mask, cmap="Greys", interpolation="nearest")
        ax.set_title(f"{name}\ndensity {density(mask):.2f}")
        ax.set_xlabel("key j")
        ax.set_ylabel("query i")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_pairs_vs_length(Ts, patterns, title="Attended pairs vs sequence length"):
    """Log-log plot of the number of attended pairs; ``patterns`` = {name: (kind, params)}."""
    import matplotlib.pyplot as plt

    Ts = np.asarray(Ts)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, (kind, params) in patterns.items():
        ax.loglog(Ts, [attended_pairs(kind, int(T), **params) for T in Ts], "o-", label=name)
    ax.loglog(Ts, Ts * np.sqrt(Ts), "k--", label=r"$T\sqrt{T}$")
    ax.loglog(Ts, Ts ** 2 / 2, "k:", label=r"$T^2/2$")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("attended (query, key) pairs")
    ax.set_title(title)
    ax.legend()
    return fig


def plot_online_softmax(trace, true_output, title="Online softmax state after each key block"):
    """Running max m, sum l and output o of one query row (from ``online_softmax_trace``)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, label in zip(axes, ("m", "l", "o"), ("running max m", "running sum l",
                                                       "output O / l")):
        ax.step(trace["end"], trace[key], where="post", marker="o")
        ax.set_xlabel("keys seen")
        ax.set_ylabel(label)
        ax.set_title(label)
    axes[2].axhline(true_output, color="k", ls="--", label="full softmax")
    axes[2].legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_accuracies(results, chance=None, title="Passkey accuracy"):
    """Bar chart of {name: accuracy}; a list of accuracies (one per seed) gives its mean as
    the bar, its range as the error bar and every seed as a dot."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    names = list(results)
    values = [np.atleast_1d(np.asarray(results[n], dtype=float)) for n in names]
    means = [v.mean() for v in values]
    seeds = max(len(v) for v in values) > 1
    spread = np.array([[m - v.min() for m, v in zip(means, values)],
                       [v.max() - m for m, v in zip(means, values)]])
    ax.bar(names, means, color="tab:blue", alpha=0.8, yerr=spread if seeds else None,
           capsize=4)
    for x, v in enumerate(values):
        if len(v) > 1:
            ax.plot(np.full(len(v), x), v, "k.", ms=6, label="one seed" if x == 0 else None)
    if chance is not None:
        ax.axhline(chance, color="k", ls="--", label="chance")
    if chance is not None or seeds:
        ax.legend(loc="upper center", ncol=2, fontsize=8)
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    return fig
