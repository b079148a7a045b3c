"""The figures of the product-key memory chapter (matplotlib is imported only when drawing).

Each function draws one labelled figure from numbers the library computed and returns
``(fig, ax)`` or ``(fig, axes)``.
"""
from __future__ import annotations

import numpy as np

from ...kernels.product_topk import product_topk


def _plt():
    import matplotlib.pyplot as plt

    return plt


def plot_score_grid(s1, s2, k):
    """The n x n grid of scores s1[a] + s2[b] of one query: left in slot order with the top-k
    rows and columns of each half shaded, right with rows and columns sorted by sub-score, where
    the candidate block is the top-left k x k corner. Dots: the exact top-k slots."""
    plt = _plt()
    s1, s2 = np.asarray(s1, dtype=np.float64), np.asarray(s2, dtype=np.float64)
    if s1.ndim != 1 or s1.shape != s2.shape:
        raise ValueError(f"plot_score_grid: s1 and s2 must be 1-D of one length, got "
                         f"{s1.shape} and {s2.shape}")
    n = s1.size
    grid = s1[:, None] + s2[None, :]
    _, slots = product_topk(s1[None], s2[None], k)
    a, b = np.divmod(slots[0], n)
    rows, cols = np.argsort(-s1)[:k], np.argsort(-s2)[:k]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    ax = axes[0]
    ax.imshow(grid, cmap="viridis", origin="upper")
    for r in rows:
        ax.axhspan(r - 0.5, r + 0.5, color="white", alpha=0.25, lw=0)
    for c in cols:
        ax.axvspan(c - 0.5, c + 0.5, color="white", alpha=0.25, lw=0)
    ax.plot(b, a, "r.", ms=6, label=f"exact top-{k}")
    ax.set(title=f"scores $s^{{(1)}}_a + s^{{(2)}}_b$ ({n}x{n} slots)",
           xlabel="sub-key $b$ of the second half", ylabel="sub-key $a$ of the first half")
    ax.legend(loc="lower right", fontsize=8)
    ax = axes[1]
    ra, rb = np.argsort(np.argsort(-s1)), np.argsort(np.argsort(-s2))
    im = ax.imshow(grid[np.argsort(-s1)][:, np.argsort(-s2)], cmap="viridis", origin="upper")
    ax.add_patch(plt.Rectangle((-0.5, -0.5), k, k, fill=False, ec="white", lw=2,
                               label=f"{k}x{k} candidate block"))
    ax.plot(rb[b], ra[a], "r.", ms=6, label=f"exact top-{k}")
    ax.set(title="rows and columns sorted by sub-score",
           xlabel="rank of $s^{(2)}_b$", ylabel="rank of $s^{(1)}_a$")
    ax.legend(loc="lower right", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8, label="score")
    return fig, axes


def plot_search_cost(cost):
    """Seconds per query against N (log-log) for the product search and the flat scan, with
    sqrt(N) and N guide lines (``cost`` from :func:`~.lab.search_cost`)."""
    plt = _plt()
    N, prod, flat = (np.asarray(cost[key], dtype=np.float64) for key in ("n_slots", "product",
                                                                         "flat"))
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.loglog(N, prod * 1e6, "o-", label="product keys (k x k candidates)")
    ok = np.isfinite(flat)
    ax.loglog(N[ok], flat[ok] * 1e6, "s-", label="flat scan of all N keys")
    ax.loglog(N, prod[0] * 1e6 * np.sqrt(N / N[0]), "k:", lw=1, label=r"$\propto \sqrt{N}$")
    if ok.any():
        i = int(np.argmax(ok))
        ax.loglog(N, flat[i] * 1e6 * N / N[i], "k--", lw=1, label=r"$\propto N$")
    ax.set(xlabel="memory slots N", ylabel="time per query (us)",
           title="Exact top-k search: cost against memory size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, ax


def plot_lorenz(usages):
    """Lorenz curves of slot weight mass, one per ``{label: MemoryUsage}``; the diagonal is a
    perfectly even use of the slots."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="even use")
    for label, u in usages.items():
        x, y = u.lorenz()
        ax.plot(x, y, label=f"{label}: usage {u.usage:.0%}, KL {u.kl:.2f}")
    ax.set(xlabel="fraction of slots (lightest first)", ylabel="share of the weight mass",
           title="Slot usage (Lorenz curve)", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig, ax


def plot_facts_training(runs):
    """Recall of all facts during training, one curve per :class:`~.lab.FactsRun`."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, r in runs.items():
        ax.plot(r.history["eval_step"], r.history["eval_acc"], "o-",
                label=f"{name} ({r.flops_per_token} MACs/token, {r.n_params} params)")
    ax.set(xlabel="training step", ylabel="facts recalled (accuracy)", ylim=(0, 1.02),
           title="Many-facts lookup at equal compute")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, ax


def plot_slot_hits(hits, n_sub_keys):
    """The weight mass each slot receives, on the n x n product grid (row a, column b of slot
    a n + b), per model (rows) and training step (columns), from
    :func:`~minimem.memory.product_keys.lab.slot_hits_during_training`."""
    plt = _plt()
    from matplotlib.colors import LogNorm

    names = list(hits)
    n_cols = len(hits[names[0]])
    fig, axes = plt.subplots(len(names), n_cols, figsize=(2.3 * n_cols, 2.5 * len(names)),
                             squeeze=False)
    top = max(u.mass.max() for snaps in hits.values() for _, u in snaps)
    for r, name in enumerate(names):
        for col, (step, usage) in enumerate(hits[name]):
            ax = axes[r, col]
            mass = usage.mass.reshape(n_sub_keys, n_sub_keys)
            image = ax.imshow(np.maximum(mass, top * 1e-4), cmap="magma",
                              norm=LogNorm(vmin=top * 1e-4, vmax=top))
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"step {step}: {usage.usage:.0%} used\nKL {usage.kl:.2f}", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{name}\nsub-key a", fontsize=8)
            if r == len(names) - 1:
                ax.set_xlabel("sub-key b", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label="weight mass of the slot")
    fig.suptitle("Slot hits on the product grid during training")
    return fig, axes
