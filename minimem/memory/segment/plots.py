"""Figures of the segment-recurrence chapter: memory and time of BPTT vs MRBP, accuracy."""
from __future__ import annotations


def plot_memory_sweep(rows, axes=None):
    """Two panels: peak tape MiB and seconds per gradient vs T, BPTT and MRBP."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    Ts = [r["T"] for r in rows]
    for name, style in (("bptt", "o-"), ("mrbp", "s-")):
        axes[0].plot(Ts, [r[f"peak_{name}"] / 2**20 for r in rows], style, label=name.upper())
        axes[1].plot(Ts, [r[f"seconds_{name}"] for r in rows], style, label=name.upper())
    axes[0].set(title="peak tape memory", xlabel="segments T", ylabel="MiB")
    axes[1].set(title="time per gradient", xlabel="segments T", ylabel="seconds")
    for ax in axes:
        ax.legend()
    return axes



def plot_accuracy(histories, chance=None, ax=None, title="accuracy across segments"):
    """Accuracy vs training step for each ``{label: history}``."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for label, h in histories.items():
        ax.plot(h["step"], h["accuracy"], "o-", label=label, markersize=3)
    if chance is not None:
        ax.axhline(chance, color="gray", ls="--", label="chance")
    ax.set(title=title, xlabel="training step", ylabel="accuracy", ylim=(0, 1.05))
    ax.legend()
    return ax


def plot_seed_accuracy(runs_by_label, chance=None, ax=None, title="accuracy over seeds"):
    """Held-out accuracy vs training step, ``{label: runs of lab.train_seeds}``: each seed as a
    thin line, the mean over seeds as a thick one."""
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.5))
    for k, (label, runs) in enumerate(runs_by_label.items()):
        color = f"C{k}"
        steps = runs[0]["history"]["step"]
        accs = np.array([r["history"]["accuracy"] for r in runs])
        for a in accs:
            ax.plot(steps, a, color=color, alpha=0.35, lw=0.8)
        ax.plot(steps, accs.mean(0), "o-", color=color, markersize=3, lw=2,
                label=f"{label} (mean of {len(runs)})")
    if chance is not None:
        ax.axhline(chance, color="gray", ls="--", label="chance")
    ax.set(title=title, xlabel="training step", ylabel="held-out accuracy", ylim=(0, 1.05))
    ax.legend(fontsize=8)
    return ax


def plot_memory_trace(traces, axes=None, chance=None, mark=None):
    """Memory over time, one row per ``{label: (change, probe)}``: left, how much each write
    moved each slot (``lab.slot_change``, slots x segments); right, how well each slot (and the
    whole memory) tells the cue apart at each boundary (``lab.probe_slots``). ``mark``: a
    boundary to outline in red (e.g. the memory the query's segment reads)."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    n = len(traces)
    if axes is None:
        _, axes = plt.subplots(n, 2, figsize=(10, 2.7 * n + 0.4), squeeze=False,
                               gridspec_kw={"width_ratios": [1, 1.25]})
    for row, (label, (change, probe)) in zip(axes, traces.items()):
        change, probe = np.asarray(change), np.asarray(probe)
        T, K = change.shape
        ax = row[0]
        im = ax.imshow(change.T, cmap="Oranges", vmin=0, vmax=max(1.0, change.max()),
                       aspect="auto")
        for (i, t), v in np.ndenumerate(change.T):
            ax.text(t, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
        ax.set(title=f"{label}\nhow far segment t's write moved each slot", xlabel="segment t",
               xticks=range(T), yticks=range(K), yticklabels=[f"slot {i}" for i in range(K)])
        ax.figure.colorbar(im, ax=ax, label=r"$1-\cos(m^i_{t+1}, m^i_t)$")
        ax = row[1]
        im = ax.imshow(probe.T, cmap="Blues", vmin=chance if chance is not None else 0,
                       vmax=1, aspect="auto")
        for (i, t), v in np.ndenumerate(probe.T):
            ax.text(t, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if v > 0.85 else "black")
        ax.axhline(K - 0.5, color="k", lw=0.8)
        if mark is not None:
            ax.add_patch(Rectangle((mark - 0.5, -0.5), 1, K + 1, fill=False, ec="tab:red",
                                   lw=2))
        ax.set(title=f"{label}\nthe cue read out of the memory $M_t$",
               xlabel="boundary t" + ("" if mark is None else f" (red: $M_{{{mark}}}$)"),
               xticks=range(T + 1), yticks=range(K + 1),
               yticklabels=[f"slot {i}" for i in range(K)] + ["all slots"])
        ax.figure.colorbar(im, ax=ax, label="probe accuracy")
    return axes


def plot_slot_contents(probe, ax=None, chance=None, title="which slot holds which token"):
    """Heatmap of ``lab.probe_positions``: rows the copied positions, columns the slots (and
    all slots together), colour = probe accuracy."""
    import matplotlib.pyplot as plt
    import numpy as np

    probe = np.asarray(probe)
    P, K1 = probe.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.7 * K1, 0.6 + 0.55 * P))
    im = ax.imshow(probe, cmap="Blues", vmin=chance if chance is not None else 0, vmax=1,
                   aspect="auto")
    for (p, i), v in np.ndenumerate(probe):
        ax.text(i, p, f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="white" if v > 0.85 else "black")
    ax.axvline(K1 - 1.5, color="k", lw=0.8)
    ax.set(title=title, xticks=range(K1), yticks=range(P),
           xticklabels=[f"slot {i}" for i in range(K1 - 1)] + ["all"],
           yticklabels=[f"token {p}" for p in range(P)])
    ax.figure.colorbar(im, ax=ax, label="probe accuracy")
    return ax
