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
