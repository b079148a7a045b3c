"""Plots for training runs and attention: the curves of ``fit``'s histories, attention maps,
and how strongly each head performs the two steps of the MQAR circuit.

Each ``plot_*`` function draws on the given matplotlib axes (or a new figure) and returns the
Figure, with a title and labelled axes; ``attention_maps`` and ``induction_scores`` return
arrays.
"""
from __future__ import annotations

import numpy as np

from .autograd.function import no_grad
from .backend import to_numpy
from .checks import check_dtype, check_int
from .tasks import IGNORE


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


def plot_histories(histories, labels=None, axes=None, title="training curves", smooth=10):
    """Several runs side by side, one colour per run: the training loss (left panel, log
    scale), the held-out accuracy (right panel, dots) and, faint behind it, the training
    accuracy (both curves of the training batches smoothed over ``smooth`` steps).

    ``histories``: a list of ``fit`` outputs; ``labels``: one string per run (default
    ``run 0``, ``run 1``, ...); ``axes``: two matplotlib axes (default: a new figure)."""
    histories = list(histories)
    if not histories:
        raise ValueError("plot_histories: histories is empty (expected a list of fit outputs)")
    for i, history in enumerate(histories):
        for key in ("step", "loss", "eval_step", "eval_acc"):
            if key not in history:
                raise ValueError(f"plot_histories: histories[{i}] has no '{key}' "
                                 f"(expected fit's output)")
    labels = [f"run {i}" for i in range(len(histories))] if labels is None else list(labels)
    if len(labels) != len(histories):
        raise ValueError(f"plot_histories: {len(histories)} histories but {len(labels)} "
                         f"labels")
    if axes is None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    loss_ax, acc_ax = axes
    for i, (history, label) in enumerate(zip(histories, labels)):
        color = f"C{i % 10}"
        loss_ax.plot(history["step"], _smooth(history["loss"], smooth), color=color,
                     label=label)
        if "train_acc" in history:
            acc_ax.plot(history["step"], _smooth(history["train_acc"], smooth), color=color,
                        alpha=0.3, lw=1)
        acc_ax.plot(history["eval_step"], history["eval_acc"], "o-", color=color,
                    markersize=3, label=label)
    loss_ax.set(yscale="log", xlabel="step", ylabel="training loss (cross-entropy)",
                title=f"{title}: loss")
    acc_ax.set(ylim=(0, 1.02), xlabel="step",
               ylabel="accuracy (dots: held-out, faint: training)",
               title=f"{title}: accuracy")
    loss_ax.legend()
    acc_ax.legend(loc="lower right")
    fig = loss_ax.figure
    fig.tight_layout()
    return fig


def _attention_weights(fn, model, ids):
    """Every block's attention weights on the batch ``ids`` (B, T): (layers, B, heads, T, T)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None or not all(hasattr(b.mixer, "last_weights") for b in blocks):
        raise TypeError(f"{fn}: model must have .blocks whose mixers record last_weights "
                        f"(a TransformerLM with attention), got {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(ids)
    finally:
        model.train(was_training)
    return np.stack([to_numpy(b.mixer.last_weights.data) for b in blocks])


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
    return _attention_weights("attention_maps", model, ids)[:, 0]


def _mqar_value_positions(fn, inputs, targets, n_kv):
    """The queries (b, t) of MQAR data and the position 2i - 1 of each one's value, where
    the query holds the key k_i = x_{2i-2} of pair i = 1, ..., n_kv."""
    x, y = np.asarray(inputs), np.asarray(targets)
    check_dtype(fn, "inputs", x, "iu")
    check_dtype(fn, "targets", y, "iu")
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"{fn}: inputs and targets must both be (N, T), got shapes "
                         f"{x.shape} and {y.shape}")
    n = check_int(fn, "n_kv", n_kv, low=1, high=x.shape[1] // 2)
    b, t = np.nonzero(y != IGNORE)
    if b.size == 0:
        raise ValueError(f"{fn}: targets has no query (every entry is {IGNORE})")
    match = x[b, 0:2 * n:2] == x[b, t][:, None]          # (queries, n): which key it holds
    bad = np.nonzero(match.sum(axis=1) != 1)[0]
    if bad.size:
        i = bad[0]
        raise ValueError(f"{fn}: the token of each query must occur exactly once among the "
                         f"keys inputs[:, 0:2*n_kv:2] (MQAR's layout); the query at (example "
                         f"{b[i]}, position {t[i]}) holds {x[b[i], t[i]]}, found "
                         f"{match[i].sum()} times")
    return x, b, t, 2 * match.argmax(axis=1) + 1


def induction_scores(model, inputs, targets, n_kv, batch_size=256):
    r"""How strongly each head of a ``TransformerLM`` performs each step of the MQAR circuit.

    On MQAR data (keys at the even and values at the odd positions of the context
    ``inputs[:, :2*n_kv]``, ``targets != -100`` at the queries), with :math:`A^{(l,h)}` the
    weights of head h of layer l (rows: query positions):

    * ``previous_token[l, h]``: the mean of :math:`A^{(l,h)}_{j,\,j-1}` over the value
      positions :math:`j = 1, 3, \dots, 2 n_{kv} - 1` of every example (1: every value
      reads its key);
    * ``retrieval[l, h]``: the mean of :math:`A^{(l,h)}_{t,\,2i-1}` over the queries t, where
      :math:`x_t = k_i = x_{2i-2}` (1: every query reads the value paired with its key).

    Returns ``{"previous_token": (layers, heads), "retrieval": (layers, heads)}``; the model
    runs in eval mode under ``no_grad``, ``batch_size`` examples at a time.
    """
    fn = "induction_scores"
    x, b, t, value_pos = _mqar_value_positions(fn, inputs, targets, n_kv)
    batch_size = check_int(fn, "batch_size", batch_size, low=1)
    j = np.arange(1, 2 * n_kv, 2)                        # the value positions of the context
    prev_sum = retrieval_sum = 0.0
    for start in range(0, len(x), batch_size):
        w = _attention_weights(fn, model, x[start:start + batch_size])
        w = np.moveaxis(w, (0, 2), (-2, -1))             # (B, T, T, layers, heads)
        prev_sum = prev_sum + w[:, j, j - 1].sum(axis=(0, 1))
        mine = (b >= start) & (b < start + batch_size)
        retrieval_sum = retrieval_sum + w[b[mine] - start, t[mine], value_pos[mine]].sum(0)
    return {"previous_token": prev_sum / (len(x) * len(j)),
            "retrieval": retrieval_sum / len(b)}


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


def plot_induction_circuit(weights, tokens, query, prev_head, retrieval_head, n_context,
                           ax=None, threshold=0.3,
                           title="the two-layer circuit, read off the trained model"):
    """The MQAR circuit as arrows between token positions, widths = attention weights.

    ``weights`` (layers, heads, T, T) from :func:`attention_maps`; ``n_context`` positions of
    key-value pairs, then the query at ``query``. Bottom row, layer 1 (head ``prev_head``): each
    value position's arrow to the positions it reads (the previous token, its key). Top row,
    layer 2 (head ``retrieval_head``): the query's arrows to the positions it reads. Arrows
    below ``threshold`` weight are not drawn.
    """
    from matplotlib.patches import FancyArrowPatch

    w = np.asarray(weights)
    if w.ndim != 4:
        raise ValueError(f"plot_induction_circuit: weights must be (layers, heads, T, T), "
                         f"got shape {w.shape}")
    tokens = [str(t) for t in np.asarray(tokens).ravel()]
    shown = list(range(n_context)) + [query]
    x_of = {p: i for i, p in enumerate(shown)}
    fig, ax = _axes(ax, (max(6, 0.75 * len(shown)), 3.6))
    for y, label in ((0, "layer 1 input"), (1, "after layer 1"), (2, "after layer 2")):
        for p in shown:
            ax.text(x_of[p], y, tokens[p], ha="center", va="center", fontsize=8,
                    bbox={"boxstyle": "round", "ec": "0.6",
                          "fc": "lightyellow" if p == query else "white"})
        ax.text(-1.2, y, label, ha="right", va="center", fontsize=8)

    def arrow(src, dst, y0, weight, color):
        ax.add_patch(FancyArrowPatch((x_of[src], y0 + 0.15), (x_of[dst], y0 + 0.85),
                                     arrowstyle="-|>", mutation_scale=8, color=color,
                                     lw=0.5 + 3 * weight, alpha=0.4 + 0.6 * weight,
                                     connectionstyle="arc3,rad=0.0"))

    # layer 1: the value positions (odd) read the previous position
    for dst in range(1, n_context, 2):
        for src in range(dst + 1):
            if src in x_of and w[0, prev_head, dst, src] >= threshold:
                arrow(src, dst, 0, w[0, prev_head, dst, src], "tab:blue")
    # layer 2: the query reads the value of its key
    for src in shown:
        if src <= query and w[1, retrieval_head, query, src] >= threshold:
            arrow(src, query, 1, w[1, retrieval_head, query, src], "tab:red")
    ax.set_xlim(-4, len(shown))
    ax.set_ylim(-0.5, 2.5)
    ax.axis("off")
    ax.set_title(f"{title}\nblue: layer 1 head {prev_head} (previous token), "
                 f"red: layer 2 head {retrieval_head} (retrieval); width = weight",
                 fontsize=9)
    return fig
