"""Plots for training runs and attention: the curves of ``fit``'s history, attention maps.

Each function draws on a given matplotlib ``ax`` (or a new figure) and returns the Figure, with
a title and labelled axes.
"""
from __future__ import annotations

import numpy as np

from .autograd.function import no_grad
from .backend import to_numpy


def _axes(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _smooth(values, window):
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) < window:
        return v
    kernel = np.ones(window) / window
    head = np.cumsum(v[:window - 1]) / np.arange(1, window)   # a shorter window at the start
    return np.concatenate([head, np.convolve(v, kernel, mode="valid")])


def plot_history(history, ax=None, title="training curve", smooth=10):
    """Training loss (left axis, log scale) and training / held-out accuracy (right axis)."""
    for key in ("step", "loss", "train_acc", "eval_step", "eval_acc"):
        if key not in history:
            raise ValueError(f"plot_history: history has no '{key}' (expected fit's output)")
    fig, ax = _axes(ax, (7, 4))
    ax.plot(history["step"], _smooth(history["loss"], smooth), color="tab:blue",
            label="training loss")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss", color="tab:blue")
    ax.set_title(title)
    acc_ax = ax.twinx()
    acc_ax.plot(history["step"], _smooth(history["train_acc"], smooth), color="tab:orange",
                alpha=0.6, label="training accuracy")
    if history["eval_step"]:
        acc_ax.plot(history["eval_step"], history["eval_acc"], "o-", color="tab:green",
                    markersize=3, label="held-out accuracy")
    acc_ax.set_ylim(0, 1.02)
    acc_ax.set_ylabel("accuracy")
    lines = ax.get_lines() + acc_ax.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="center right")
    fig.tight_layout()
    return fig


def attention_maps(model, tokens):
    """Attention weights of every layer of a ``TransformerLM`` on one sequence.

    ``tokens``: (T,) or (1, T) integers. Returns an array (n_layers, n_heads, T, T) read from
    each block's ``mixer.last_weights`` (run in eval mode under ``no_grad``).
    """
    ids = np.asarray(tokens)
    ids = ids[None] if ids.ndim == 1 else ids
    if ids.ndim != 2 or ids.shape[0] != 1:
        raise ValueError(f"attention_maps: tokens must be one sequence (T,) or (1, T), "
                         f"got shape {np.asarray(tokens).shape}")
    blocks = getattr(model, "blocks", None)
    if blocks is None or not all(hasattr(b.mixer, "last_weights") for b in blocks):
        raise TypeError("attention_maps: model must have .blocks whose mixers record "
                        "last_weights (a TransformerLM with attention)")
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(ids)
    finally:
        model.train(was_training)
    return np.stack([to_numpy(b.mixer.last_weights.data)[0] for b in blocks])


def plot_attention(weights, tokens=None, query=None, ax=None, title="attention weights"):
    """Heat map of one head's weights (T, S): row i = query position, column j = key position.

    ``tokens`` labels the axes; ``query`` (a row index) is outlined.
    """
    w = np.asarray(weights)
    if w.ndim != 2:
        raise ValueError(f"plot_attention: weights must be (T, S), got shape {w.shape}")
    fig, ax = _axes(ax, (6, 5))
    im = ax.imshow(w, cmap="viridis", vmin=0, vmax=max(float(w.max()), 1e-12), aspect="auto")
    fig.colorbar(im, ax=ax, label="weight")
    if tokens is not None:
        tokens = [str(t) for t in np.asarray(tokens).ravel()]
        ax.set_xticks(range(w.shape[1]), tokens[:w.shape[1]], fontsize=6, rotation=90)
        ax.set_yticks(range(w.shape[0]), tokens[:w.shape[0]], fontsize=6)
    if query is not None:
        ax.axhline(query - 0.5, color="red", lw=1)
        ax.axhline(query + 0.5, color="red", lw=1)
    ax.set_xlabel("key position (token)")
    ax.set_ylabel("query position (token)")
    ax.set_title(title)
    return fig
