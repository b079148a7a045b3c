"""Figures of the attention-as-a-reduction chapter (the notebook and the tour call these)."""
from __future__ import annotations

import numpy as np

from .prefix import scan_rounds
from .ring import DIAGONAL, FULL, SKIP, ring_schedule

_KIND_COLOR = {SKIP: "#dddddd", DIAGONAL: "#f4a261", FULL: "#2a9d8f"}
_KIND_NAME = {SKIP: "skipped (future)", DIAGONAL: "diagonal (causal mask)", FULL: "full"}


def plot_ring_schedule(n_devices=4, causal=True):
    """One panel per step: which key/value block each device holds, and what it does."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    held, kind = ring_schedule(n_devices, causal)
    P = n_devices
    fig, axes = plt.subplots(1, P, figsize=(2.3 * P, 2.6))
    angles = np.pi / 2 - 2 * np.pi * np.arange(P) / P
    xy = np.stack([np.cos(angles), np.sin(angles)], 1)
    for s, ax in enumerate(np.atleast_1d(axes)):
        for r in range(P):
            nxt = xy[(r + 1) % P]
            ax.annotate("", xy=0.8 * nxt + 0.2 * xy[r], xytext=0.8 * xy[r] + 0.2 * nxt,
                        arrowprops={"arrowstyle": "->", "color": "0.6"})
            ax.add_patch(plt.Circle(xy[r], 0.32, color=_KIND_COLOR[kind[s, r]]))
            ax.text(*xy[r], f"Q{r}\nKV{held[s, r]}", ha="center", va="center", fontsize=8)
        ax.set_xlim(-1.5, 1.5)
        ax.set_ylim(-1.5, 1.5)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(f"step {s}")
    fig.legend(handles=[Patch(color=_KIND_COLOR[k], label=_KIND_NAME[k])
                        for k in (FULL, DIAGONAL, SKIP)], loc="lower center", ncol=3,
               fontsize=8, frameon=False)
    fig.suptitle(f"Ring attention on {P} devices ({'causal' if causal else 'non-causal'}): "
                 "device r holds Q_r, KV blocks move to r + 1", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def plot_scan(T=8):
    """The Hillis-Steele scan of the merge: one row per round, arrows t - d -> t."""
    import matplotlib.pyplot as plt

    rounds = scan_rounds(T)
    fig, ax = plt.subplots(figsize=(0.7 * T + 1, 0.9 * len(rounds) + 1.2))
    for level in range(len(rounds) + 1):
        ax.scatter(np.arange(T), np.full(T, -level), color="k", s=18, zorder=3)
    for level, (d, pairs) in enumerate(rounds):
        for src, dst in pairs:
            ax.annotate("", xy=(dst, -level - 1), xytext=(src, -level),
                        arrowprops={"arrowstyle": "->", "color": "C0", "lw": 0.8})
        for t in range(T):  # every position also keeps its own partial
            ax.plot([t, t], [-level, -level - 1], color="0.7", lw=0.8)
        ax.text(T - 0.4, -level - 0.5, f"d = {d}", va="center", fontsize=8)
    for t in range(T):
        ax.text(t, 0.35, f"$x_{{{t + 1}}}$", ha="center", fontsize=8)
        ax.text(t, -len(rounds) - 0.45, f"$y_{{{t + 1}}}$", ha="center", va="top",
                fontsize=8)
    ax.set_xlim(-0.6, T + 0.4)
    ax.set_ylim(-len(rounds) - 0.9, 0.7)
    ax.axis("off")
    ax.set_title(f"Prefix scan of the merge, T = {T}: {len(rounds)} rounds "
                 "(arrow: merge the partial d steps back)", fontsize=10)
    return fig


def plot_memory(bpt_rows, ring_rows=None):
    """Peak bytes vs sequence length: plain vs blockwise block; ring attention per process."""
    import matplotlib.pyplot as plt

    n = 1 if ring_rows is None else 2
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.8))
    axes = np.atleast_1d(axes)
    Ts = [r["T"] for r in bpt_rows]
    for key, label in (("plain_bytes", "plain block"), ("blockwise_bytes", "blockwise (BPT)")):
        axes[0].loglog(Ts, [r[key] / 2**20 for r in bpt_rows], "o-", label=label)
    axes[0].set_xscale("log", base=2)
    axes[0].set_xticks(Ts, [str(T) for T in Ts])
    axes[0].set_xlabel("sequence length T")
    axes[0].set_ylabel("peak forward memory (MiB)")
    axes[0].set_title("Transformer block, one process")
    axes[0].legend()
    if ring_rows is not None:
        ctx = [r["seq_len"] for r in ring_rows]
        axes[1].plot(ctx, [max(r["peak_bytes"]) / 2**20 for r in ring_rows], "o-",
                     label="ring: max over processes")
        axes[1].plot(ctx, [r["dense_peak_bytes"] / 2**20 for r in ring_rows], "s--",
                     label="dense attention, one process")
        for r in ring_rows:
            axes[1].annotate(f"P={r['processes']}", (r["seq_len"], max(r["peak_bytes"]) / 2**20),
                             textcoords="offset points", xytext=(4, 6), fontsize=8)
        axes[1].set_xlabel("context T (= P x per-process block)")
        axes[1].set_ylabel("peak memory, forward + backward (MiB)")
        axes[1].set_title("Ring attention per process")
        axes[1].legend()
    fig.tight_layout()
    return fig


def plot_passkey(result, title="Landmark passkey accuracy vs context length"):
    """Accuracy (mean and spread over seeds) per evaluation length, for every landmark and
    for top-k retrieval; ``result`` is :func:`.lab.landmark_passkey_over_seeds`'s dict."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    lengths = np.asarray(result["lengths"])
    for key, label, marker in (("full", "every landmark", "o-"),
                               ("top_k", "top-k retrieval", "s--")):
        acc = np.asarray(result[key])
        ax.errorbar(lengths, acc.mean(0), yerr=acc.std(0), fmt=marker, capsize=3,
                    label=label)
    ax.axhline(result["chance"], color="0.5", lw=0.8, ls=":", label="chance")
    ax.axvline(lengths[0], color="0.8", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [f"{T}\n({T // lengths[0]}x)" for T in lengths])
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("evaluation length T (x training length)")
    ax.set_ylabel("passkey accuracy")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig
