"""The figures of the product-key memory chapter (matplotlib is imported only when drawing).

Each function draws one labelled figure from numbers the library computed and returns
``(fig, ax)`` or ``(fig, axes)``.
"""
from __future__ import annotations

import math

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


def _per_seed(value):
    """A value of one run, or a list of them (one per seed), as a list."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


# one colour per model in every figure of the chapter
_COLORS = {"mlp": "tab:blue", "pkm (batch norm)": "tab:orange", "pkm (no norm)": "tab:green"}


def _band(ax, x, ys, label, color=None):
    """The mean of the rows of ``ys`` as a line and, for several rows, their range as a band;
    returns the line's colour."""
    ys = np.asarray(ys, dtype=np.float64)
    (line,) = ax.plot(x, ys.mean(axis=0), label=label, color=color)
    if len(ys) > 1:
        ax.fill_between(x, ys.min(axis=0), ys.max(axis=0), color=line.get_color(), alpha=0.2,
                        lw=0)
    return line.get_color()


def _seeds_note(n):
    return f"mean over {n} seeds, band: their range" if n > 1 else "one seed"


def plot_lorenz(usages):
    """Lorenz curves of slot weight mass, one per ``{label: MemoryUsage}``; a list of
    MemoryUsage (one per seed, one memory size) gives the mean curve and the seeds' range as
    a band. The diagonal is a perfectly even use of the slots."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="even use")
    n_seeds = 1
    for label, value in usages.items():
        per_seed = _per_seed(value)
        sizes = {u.mass.size for u in per_seed}
        if len(sizes) != 1:
            raise ValueError(f"plot_lorenz: the seeds of {label!r} have memories of different "
                             f"sizes {sorted(sizes)}")
        n_seeds = max(n_seeds, len(per_seed))
        curves = [u.lorenz() for u in per_seed]
        use = np.array([u.usage for u in per_seed])
        kl = np.array([u.kl for u in per_seed])
        text = (f"usage {use.mean():.0%}, KL {kl.mean():.2f}" if len(per_seed) == 1 else
                f"usage {use.mean():.0%} ± {use.std():.0%}, KL {kl.mean():.2f} ± {kl.std():.2f}")
        _band(ax, curves[0][0], [y for _, y in curves], f"{label}: {text}",
              _COLORS.get(label))
    ax.set(xlabel="fraction of slots (lightest first)", ylabel="share of the weight mass",
           title=f"Slot usage (Lorenz curve, {_seeds_note(n_seeds)})", xlim=(0, 1),
           ylim=(0, 1))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig, ax


def plot_facts_training(runs):
    """Recall of all facts during training, one curve per model of ``{name: FactsRun}``; a
    list of FactsRun (one per seed, the same evaluation steps) gives the mean curve and the
    seeds' range as a band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    n_seeds = 1
    for name, value in runs.items():
        per_seed = _per_seed(value)
        steps = [tuple(r.history["eval_step"]) for r in per_seed]
        if any(s != steps[0] for s in steps):
            raise ValueError(f"plot_facts_training: the seeds of {name!r} were evaluated at "
                             f"different steps")
        n_seeds = max(n_seeds, len(per_seed))
        r = per_seed[0]
        color = _band(ax, steps[0], [q.history["eval_acc"] for q in per_seed],
                      f"{name} ({r.flops_per_token} MACs/token, {r.n_params} params)",
                      _COLORS.get(name))
        ax.plot(steps[0], np.mean([q.history["eval_acc"] for q in per_seed], axis=0), "o",
                ms=3, color=color)
    ax.set(xlabel="training step", ylabel="facts recalled (accuracy)", ylim=(0, 1.02),
           title=f"Many-facts lookup at equal compute ({_seeds_note(n_seeds)})")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig, ax


def plot_slot_hits(runs, seed=None):
    """The weight mass each slot receives, on the n x n product grid (row a, column b of slot
    a n + b), per memory (rows) at each checkpoint (columns): the ``snapshots`` of
    ``{name: FactsRun}`` from :func:`~minimem.memory.product_keys.lab.compare_pkm_mlp`. For
    lists of runs (one per seed) it draws the run of ``seed`` (default: the first); models
    without snapshots (the MLP) are left out."""
    plt = _plt()
    from matplotlib.colors import LogNorm

    chosen = {}
    for name, value in runs.items():
        per_seed = _per_seed(value)
        pick = [r for r in per_seed if seed is None or r.seed == seed][:1]
        if not pick:
            raise ValueError(f"plot_slot_hits: no run of {name!r} has seed {seed!r}, got "
                             f"seeds {[r.seed for r in per_seed]}")
        if pick[0].snapshots:
            chosen[name] = pick[0]
    if not chosen:
        raise ValueError("plot_slot_hits: no run holds snapshots (pass checkpoints= to "
                         "compare_pkm_mlp)")
    names = list(chosen)
    n_cols = max(len(r.snapshots) for r in chosen.values())
    fig, axes = plt.subplots(len(names), n_cols, figsize=(2.3 * n_cols, 2.5 * len(names)),
                             squeeze=False)
    top = max(u.mass.max() for r in chosen.values() for _, u in r.snapshots)
    for row, name in enumerate(names):
        for col, (step, usage) in enumerate(chosen[name].snapshots):
            ax = axes[row, col]
            n = math.isqrt(usage.mass.size)     # N = n^2 slots
            image = ax.imshow(np.maximum(usage.mass.reshape(n, n), top * 1e-4), cmap="magma",
                              norm=LogNorm(vmin=top * 1e-4, vmax=top))
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"step {step}: {usage.usage:.0%} used\nKL {usage.kl:.2f}", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{name}\nsub-key a", fontsize=8)
            if row == len(names) - 1:
                ax.set_xlabel("sub-key b", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label="weight mass of the slot")
    fig.suptitle(f"Slot hits on the product grid during training "
                 f"(seed {chosen[names[0]].seed})")
    return fig, axes
