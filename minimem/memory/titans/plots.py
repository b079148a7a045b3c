"""Plots of the Titans / ATLAS chapter (the notebook and the tour only call these)."""
from __future__ import annotations

import numpy as np

from .omega import NS_COEFFICIENTS


def plot_capacity(result, title="Pairs recalled vs pairs stored (linear memory, d_k = 6)"):
    """Recall (mean ± std over seeds) of each config of ``lab.capacity_experiment``, the
    least-squares limits dashed and the exact capacities as dotted vertical lines."""
    import matplotlib.pyplot as plt

    n = np.asarray(result["n_pairs"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, r in result["recall"].items():
        ax.errorbar(n, r.mean(1), yerr=r.std(1), marker="o", capsize=3, label=label)
    for name, r in result["least_squares"].items():
        line, = ax.plot(n, r.mean(1), "--", label=f"least squares, {name}")
        cap = result["predicted"][name]
        ax.axvline(cap, color=line.get_color(), lw=0.8, ls=":",
                   label=f"exact capacity, {name}: {cap}")
    ax.set_xlim(0, max(n.max(), *result["predicted"].values()) + 2)
    ax.set_xlabel("pairs stored n")
    ax.set_ylabel("fraction recalled")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_inner_loss(result, smooth=5, title="Inner loss before each write (mean of seeds)"):
    """Moving averages of ``lab.inner_optimizer_experiment``'s loss, one line per optimizer."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    kernel = np.ones(smooth) / smooth
    for label, loss in result["loss"].items():
        mean = np.convolve(loss.mean(0), kernel, mode="valid")
        ax.semilogy(np.arange(len(mean)) + smooth, mean, label=label)
    ax.set_xlabel("token t")
    ax.set_ylabel(r"$\|M_{t-1}(k_t) - v_t\|^2$")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_newton_schulz(steps=5, title="Newton–Schulz: what each step does to a singular value"):
    """The quintic p(s) = a s + b s^3 + c s^5 iterated 1..``steps`` times on s in
    [1e-4, 1] (log axis: how small a singular value the steps still lift near 1)."""
    import matplotlib.pyplot as plt

    a, b, c = NS_COEFFICIENTS
    s = np.logspace(-4, 0, 801)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    x = s.copy()
    for j in range(1, steps + 1):
        x = a * x + b * x ** 3 + c * x ** 5
        ax.semilogx(s, x, label=f"{j} step{'s' if j > 1 else ''}")
    ax.axhline(1.0, color="k", lw=0.6, ls=":")
    ax.set_xlabel(r"singular value of $X_0 = \Sigma / \|\Sigma\|_F$")
    ax.set_ylabel("singular value after the steps")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_chunk_error(errors, title="Chunked form vs token rule (MLP memory)"):
    """``lab.chunk_error``'s max deviation per chunk size (log scale)."""
    import matplotlib.pyplot as plt

    C = [c for c in errors if c > 1]
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    ax.loglog(C, [errors[c] for c in C], "o-")
    ax.set_xticks(C, [str(c) for c in C])
    ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
    ax.set_xlabel("chunk size C")
    ax.set_ylabel("max |o(C) - o(1)|")
    ax.set_title(title)
    fig.tight_layout()
    return fig
