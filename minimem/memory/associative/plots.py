"""Figures of chapter 55 (matplotlib, labelled): the four memories as diagrams, the write's
capacity, pairs recalled (per seed, and the training losses), length generalization, the
associative matrix over segments."""
from __future__ import annotations

import numpy as np

KIND_LABELS = {"rmt": "RMT", "memformer": "Memformer", "armt": "ARMT", "lm2": "LM2",
               "fam": "TransformerFAM", "cached": "Cached Transformer"}


def _box(ax, x, y, w, h, text, color):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", fc=color, ec="k",
                                lw=0.8))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8)


def _arrow(ax, xy, to, color="k", text=None):
    ax.annotate("", xy=to, xytext=xy, arrowprops={"arrowstyle": "->", "color": color, "lw": 1})
    if text:
        ax.text((xy[0] + to[0]) / 2, (xy[1] + to[1]) / 2 + 0.04, text, fontsize=7,
                ha="center", color=color)


def plot_diagrams():
    """The four memories of the chapter, one panel each: what is carried from segment t to
    t + 1 (red), what reads it (blue). Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 6))
    mem, tok, blk = "#f4b6b6", "#d9e6f5", "#eeeeee"
    titles = ("ARMT: memory tokens + associative matrix per layer",
              "LM2: a gated memory bank read by every layer",
              "TransformerFAM: feedback memory per layer",
              "Cached Transformer: a gated cache per layer")
    for ax, title in zip(axes.flat, titles):
        ax.set(xlim=(0, 1), ylim=(0, 1), title=title)
        ax.title.set_fontsize(9)
        ax.axis("off")
    a = axes[0, 0]
    _box(a, 0.02, 0.1, 0.14, 0.2, "$M_t$", mem)
    _box(a, 0.2, 0.1, 0.4, 0.2, "segment $x_t$", tok)
    _box(a, 0.64, 0.1, 0.14, 0.2, "$M_t$", mem)
    _box(a, 0.02, 0.45, 0.76, 0.2, "layer $l$ (causal block)", blk)
    _box(a, 0.82, 0.45, 0.16, 0.2, "$A^l, z^l$", mem)
    _arrow(a, (0.82, 0.55), (0.78, 0.42), "tab:blue", "read")
    _arrow(a, (0.4, 0.3), (0.4, 0.45))
    _box(a, 0.64, 0.8, 0.14, 0.15, "$M_{t+1}$", mem)
    _arrow(a, (0.71, 0.65), (0.71, 0.8))
    _arrow(a, (0.76, 0.7), (0.88, 0.66), "tab:red", "write")
    a = axes[0, 1]
    _box(a, 0.05, 0.1, 0.55, 0.2, "segment $x_t$", tok)
    _box(a, 0.05, 0.45, 0.55, 0.2, "layers: self-attn, gated read", blk)
    _box(a, 0.72, 0.45, 0.24, 0.2, "bank $M_t$", mem)
    _arrow(a, (0.72, 0.55), (0.6, 0.55), "tab:blue", r"$\sigma(\cdot)\odot E^{mem}$")
    _arrow(a, (0.32, 0.3), (0.32, 0.45))
    _box(a, 0.72, 0.8, 0.24, 0.15, r"$M_{t+1} = g^{in}\odot\tanh U + g^{f}\odot M_t$", mem)
    _arrow(a, (0.6, 0.65), (0.72, 0.85), "tab:red", "update")
    a = axes[1, 0]
    for i, y in enumerate((0.1, 0.45)):
        _box(a, 0.05, y, 0.16, 0.2, f"$F^{i + 1}_t$", mem)
        _box(a, 0.25, y, 0.45, 0.2, f"layer {i + 1}: [F; h]", blk)
        _box(a, 0.8, y, 0.16, 0.2, f"$F^{i + 1}_{{t+1}}$", mem)
        _arrow(a, (0.7, y + 0.1), (0.8, y + 0.1), "tab:red")
    _arrow(a, (0.47, 0.3), (0.47, 0.45))
    a.text(0.47, 0.85, "FAM queries see the block and themselves;\ntokens see FAM + the past",
           ha="center", fontsize=8)
    a = axes[1, 1]
    _box(a, 0.05, 0.1, 0.5, 0.2, "layer input $\\hat h$", tok)
    _box(a, 0.05, 0.45, 0.5, 0.2, r"$(1-\sigma(\lambda))$SA $+\ \sigma(\lambda)$CA", blk)
    _arrow(a, (0.3, 0.3), (0.3, 0.45))
    _box(a, 0.7, 0.45, 0.26, 0.2, "cache $C_{t-1}$", mem)
    _arrow(a, (0.7, 0.55), (0.55, 0.55), "tab:blue", "CA")
    _box(a, 0.7, 0.1, 0.26, 0.2, r"$\bar X_t$ (pooled)", tok)
    _arrow(a, (0.55, 0.2), (0.7, 0.2))
    _box(a, 0.7, 0.8, 0.26, 0.15, r"$C_t = (1-g)C + g\bar X$", mem)
    _arrow(a, (0.83, 0.3), (0.83, 0.8), "tab:red")
    fig.subplots_adjust(left=0.02, right=0.98, top=0.94, bottom=0.02, wspace=0.08, hspace=0.15)
    return fig


def _errorbars(ax, x, table, label, **kw):
    table = np.asarray(table, dtype=float)
    ax.errorbar(x, table.mean(axis=1), yerr=table.std(axis=1), marker="o", capsize=3,
                label=label, **kw)


def _summary_lines(ax, summary, kinds, xs):
    """One errorbar line per kind from ``summary[kind, x] = (mean, std, seeds)``."""
    for kind in kinds:
        mean, std, _ = zip(*(summary[kind, x] for x in xs))
        ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=KIND_LABELS[kind])


def plot_write_capacity(results, n_pairs, d_phi=None):
    """``results``: ``{title: {rule: (len(n_pairs), seeds) array}}`` of
    :func:`~minimem.memory.associative.lab.write_capacity`, one panel per title."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.5), squeeze=False)
    names = {"armt": "ARMT write (delta + $\\gamma$)", "sum": "sum (linear attention)"}
    for ax, (title, table) in zip(axes[0], results.items()):
        for rule, acc in table.items():
            _errorbars(ax, n_pairs, acc, names.get(rule, rule))
        if d_phi:
            ax.axvline(d_phi, color="grey", ls=":", label=f"$d_\\phi$ = {d_phi}")
        ax.set(xscale="log", xlabel="pairs written", ylabel="share read back (nearest value)",
               ylim=(0, 1.02), title=title)
        ax.minorticks_off()
        ax.set_xticks(list(n_pairs), [str(n) for n in n_pairs])
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_pairs_recalled(summary, kinds, n_pairs, chance=None):
    """``summary``: ``{(kind, n): (mean, std, seeds)}`` of pairs recalled; one line per kind."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    _summary_lines(ax, summary, kinds, n_pairs)
    ax.plot(n_pairs, n_pairs, color="grey", ls=":", label="all recalled")
    if chance:
        ax.plot(n_pairs, np.asarray(n_pairs) * chance, color="grey", ls="--", label="chance")
    ax.set(xlabel="pairs written", ylabel="pairs recalled (accuracy x pairs)",
           title="associative retrieval across segments")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_curriculum_losses(rows, kinds, stages, window=25, chance=None):
    """Training loss through the curriculum of
    :func:`~minimem.memory.associative.lab.pairs_recalled`: one thin line per seed (moving
    mean over ``window`` steps), one colour per kind, a dashed line where a stage of
    ``stages`` (pairs written) begins; ``chance``: the loss of a uniform guess, drawn grey."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for color, kind in zip(("C0", "C1", "C2", "C3", "C4", "C5"), kinds):
        runs = {r["seed"]: r["losses"] for r in rows if r["kind"] == kind}
        for i, losses in enumerate(runs.values()):
            smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
            ax.plot(np.arange(len(smooth)) + window, smooth, color=color, lw=1, alpha=0.8,
                    label=f"{KIND_LABELS[kind]} ({len(runs)} seeds)" if i == 0 else None)
    steps = len(rows[0]["losses"]) // len(stages)
    for j, n in enumerate(stages):
        ax.axvline(j * steps, color="grey", ls="--", lw=0.8)
        ax.text(j * steps + steps / 2, 1.0, f"{n} pairs", transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=8)
    if chance:
        ax.axhline(chance, color="grey", ls=":", label="uniform guess")
    ax.set(xlabel="training step", ylabel="loss (moving mean)")
    ax.set_title("training through the curriculum", pad=16)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_seed_accuracies(bars, seeds, chance=None, title="accuracy per seed"):
    """Grouped bars: ``bars`` is ``{label: [accuracy per seed]}``, one group per seed of
    ``seeds`` and a last group with the mean (error bar: std over the seeds)."""
    import matplotlib.pyplot as plt

    if any(len(accs) != len(seeds) for accs in bars.values()):
        raise ValueError(f"plot_seed_accuracies: every entry of bars must hold one accuracy "
                         f"per seed ({len(seeds)}), got lengths "
                         f"{[len(a) for a in bars.values()]}")
    fig, ax = plt.subplots(figsize=(7.5, 3.3))
    width = 0.8 / len(bars)
    x = np.arange(len(seeds) + 1)
    for i, (label, accs) in enumerate(bars.items()):
        accs = np.asarray(accs, dtype=float)
        heights = np.append(accs, accs.mean())
        errors = np.append(np.zeros(len(accs)), accs.std())
        ax.bar(x + (i - (len(bars) - 1) / 2) * width, heights, width, yerr=errors, capsize=3,
               label=label)
    if chance:
        ax.axhline(chance, color="grey", ls=":", label="chance")
    ax.set_xticks(x, [f"seed {s}" for s in seeds] + ["mean ± std"])
    ax.set(ylabel="accuracy", ylim=(0, 1.05), title=title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def plot_length_generalization(summary, kinds, n_segments, trained=None, chance=None):
    """Facts-in-noise accuracy vs the number of segments read, one line per kind (mean ±
    std over the seeds). ``summary``: ``{(kind, S): (mean, std, seeds)}`` of
    :func:`~minimem.memory.associative.lab.summarize` with ``by="n_segments"``;
    ``trained``: the segment counts seen in training (shaded)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    _summary_lines(ax, summary, kinds, n_segments)
    if trained:
        ax.axvspan(min(trained) - 0.2, max(trained) + 0.2, color="grey", alpha=0.15,
                   label="trained")
    if chance:
        ax.axhline(chance, color="grey", ls="--", label="chance")
    ax.set(xlabel="segments read (the same facts in more filler)", ylabel="accuracy",
           ylim=(0, 1.02), title="facts in noise: beyond the trained length")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_matrix_trace(As, zs, title="the associative matrix after each segment"):
    """Heat maps of :math:`A_t` (d_phi x d), and of :math:`z_t` as a column beside it, one
    panel per segment (one colour scale for every A, one for every z)."""
    import matplotlib.pyplot as plt

    T = len(As)
    fig, axes = plt.subplots(1, 2 * T, figsize=(2.4 * T, 3.4), squeeze=False,
                             gridspec_kw={"width_ratios": [6, 1] * T})
    lim = max(float(np.abs(a).max()) for a in As) or 1.0
    z_max = max(float(np.max(z)) for z in zs) or 1.0
    for t, (A, z) in enumerate(zip(As, zs)):
        ax_a, ax_z = axes[0, 2 * t], axes[0, 2 * t + 1]
        ax_a.imshow(A, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax_a.set(title=f"A after segment {t}", xlabel="value dim",
                 ylabel="feature" if not t else None)
        ax_z.imshow(np.asarray(z)[:, None], cmap="Reds", vmin=0, vmax=z_max, aspect="auto")
        ax_z.set(title="z", xticks=[], yticks=[])
    fig.suptitle(title)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.8, bottom=0.15, wspace=0.25)
    return fig
