"""The figures of the Hopfield chapter (matplotlib is imported only when drawing).

Each function takes the numbers an experiment of :mod:`minimem.memory.hopfield.lab`
returned, draws one labelled figure and returns ``(fig, ax)`` (or ``(fig, axes)``).
"""
from __future__ import annotations

import numpy as np

from .lab import critical_load, dense_capacity_theory, one_step_error_theory, retrieval_branch


def _plt():
    import matplotlib.pyplot as plt

    return plt


def plot_images(images, size, titles=None, suptitle=None):
    """A row of images (k, size*size) in [-1, 1]."""
    plt = _plt()
    imgs = np.asarray(images).reshape(-1, size, size)
    fig, axes = plt.subplots(1, len(imgs), figsize=(1.6 * len(imgs), 1.9), squeeze=False)
    for k, (ax, img) in enumerate(zip(axes[0], imgs)):
        ax.imshow(img, cmap="gray", vmin=-1, vmax=1)
        ax.set_xticks([]), ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)
    fig.suptitle(suptitle or "patterns")
    fig.tight_layout()
    return fig, axes[0]


def plot_capacity(alphas, m, N):
    """Final overlap m against the load alpha, with the retrieval state of the
    zero-temperature replica-symmetric theory (N -> infinity), m = erf(y) at the load
    alpha(y) of :func:`~.lab.retrieval_branch`, and its end alpha_c marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(alphas, m, "o-", label=f"simulation, N={N}")
    alpha_c, _ = critical_load()
    ax.plot(*retrieval_branch(), "k-", lw=1, label=r"replica theory, $N \to \infty$")
    ax.axvline(alpha_c, color="gray", ls="--", label=rf"$\alpha_c = {alpha_c:.3f}$")
    ax.set(xlabel=r"load $\alpha = P/N$", ylabel="final overlap $m$", ylim=(0, 1.05),
           title="Classical Hopfield network: retrieval vs load")
    ax.legend()
    fig.tight_layout()
    return fig, ax


def plot_one_step_error(alphas, simulated, N):
    """Simulated one-step bit-error rate and 1/2 (1 - erf(sqrt(N / 2P))) (log scale)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    grid = np.linspace(min(alphas), max(alphas), 200)
    ax.semilogy(grid, one_step_error_theory(grid),
                label=r"$\frac{1}{2}(1-\mathrm{erf}\sqrt{N/2P})$")
    seen = np.asarray(simulated) > 0  # a load with no error at all has no point on a log axis
    ax.semilogy(np.asarray(alphas)[seen], np.asarray(simulated)[seen], "o",
                label=f"simulation, N={N}")
    ax.axhline(1e-3, color="gray", ls=":", label=r"$P_{err}=10^{-3}$ ($\alpha \approx 0.105$)")
    ax.set(xlabel=r"load $\alpha = P/N$", ylabel="bit-error probability after one step",
           title="One-step error: simulation vs theory")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, ax


def plot_dense_capacity(ns, counts, N, F="poly"):
    """Exact-recall count against the power n (log scale), with Krotov & Hopfield's estimate."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ns, counts = np.asarray(ns), np.asarray(counts, np.float64)
    ax.semilogy(ns, counts, "o-", label=f"max exact recalls, N={N}, F={F}")
    ax.semilogy(ns, [dense_capacity_theory(N, n) for n in ns], "--",
                label=r"$N^{n-1} / (2(2n-3)!!\,\ln N)$")
    ax.set(xlabel="power $n$ of $F(z)=z^n$", ylabel="patterns recalled exactly",
           title="Dense associative memory: capacity vs n")
    ax.legend()
    fig.tight_layout()
    return fig, ax


def plot_beta_regimes(betas, n_eff, n_stored, cluster_size=None):
    """Effective number of patterns at the fixed point against beta (log-log)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.loglog(betas, n_eff, "o-", label=r"$1/\sum_i p_i^2$ at the fixed point")
    ax.axhline(n_stored, color="gray", ls="--", label=f"all {n_stored} patterns (global average)")
    if cluster_size is not None:
        ax.axhline(cluster_size, color="gray", ls="-.", label=f"one class ({cluster_size}, metastable)")
    ax.axhline(1, color="gray", ls=":", label="one pattern")
    ax.set(xlabel=r"$\beta$", ylabel="effective number of patterns",
           title="Modern Hopfield network: the three regimes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, ax


def plot_energy_landscape(xs, ys, E, stored, trajectories=()):
    """Contours of E over a 2-D grid, the stored patterns and update trajectories."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    cs = ax.contourf(xs, ys, E, levels=30, cmap="viridis")
    fig.colorbar(cs, ax=ax, label="energy $E(\\xi)$")
    Y = np.asarray(stored)
    ax.plot(Y[:, 0], Y[:, 1], "r*", ms=12, label="stored patterns")
    for k, tr in enumerate(trajectories):
        ax.plot(tr[:, 0], tr[:, 1], "w.-", lw=1, label="updates" if k == 0 else None)
    ax.set(xlabel=r"$\xi_1$", ylabel=r"$\xi_2$", title="Energy landscape and updates")
    ax.legend(fontsize=8, loc="lower left", framealpha=0.8)
    fig.tight_layout()
    return fig, ax


def plot_error_vs_bound(betas, err, bound):
    """One-step retrieval error and the separation bound against beta (log scale)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.semilogy(betas, np.maximum(err, 1e-300), "o-", label=r"$\|\xi^{new} - x_i\|$")
    ax.semilogy(betas, bound, "--", label=r"$2M(N-1)e^{-\beta(\Delta_i - 2M\|\xi - x_i\|)}$")
    ax.set(xlabel=r"$\beta$", ylabel="retrieval error", title="Retrieval error vs its bound")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, ax
