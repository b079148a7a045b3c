"""Figures of the delta-rule chapter (matplotlib, labelled).

The capacity curves (:func:`plot_capacity`, and as small multiples :func:`plot_capacity_panels`),
the read-out of every key over time (:func:`plot_overwrite_trace`), one chunk's UT/WY matrices
(:func:`plot_chunk_matrices`), the headline recall experiment over seeds
(:func:`plot_pair_recall`), a state matrix (:func:`plot_state`) and MQAR learning curves
(:func:`plot_mqar`).
"""
from __future__ import annotations

import numpy as np

from ...autograd.tensor import Tensor


def plot_capacity(results, ax=None, d_k=None, methods=("linear", "delta", "softmax")):
    """Log-log plot of the SNR against the number of stored pairs (and ``d_k / N``).

    ``results``: ``{label: capacity_curve(...)}``; one line per label and method.
    """
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 4))[1]
    markers = {"linear": "o", "delta": "s", "softmax": "^"}
    for i, (label, result) in enumerate(results.items()):
        n = result["n_pairs"]
        for m in methods:
            snr = np.minimum(np.maximum(result[m]["snr"], 1e-1), 1e6)
            ax.loglog(n, snr, marker=markers[m], ls="-" if i == 0 else "--",
                      label=f"{m} ({label})")
    if d_k:
        ax.loglog(n, d_k / n, "k--", label=r"$d_k / N$")
        ax.axvline(d_k, color="gray", lw=0.8)
    ax.set(xlabel="stored pairs N", ylabel="SNR = |V|^2 / |V_hat - V|^2 (clipped)",
           title="Associative recall from one memory")
    ax.legend()
    return ax



def plot_state(S, ax=None, title="state S (d_k x d_v)"):
    """Heat map of one state matrix."""
    import matplotlib.pyplot as plt

    S = S.numpy() if isinstance(S, Tensor) else np.asarray(S)
    ax = ax or plt.subplots(figsize=(4, 4))[1]
    lim = np.abs(S).max() or 1.0
    im = ax.imshow(S, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set(title=title, xlabel="value dim", ylabel="key dim")
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    return ax



def plot_mqar(results, ax=None):
    """Held-out MQAR accuracy against training steps, one line per mixer."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 4))[1]
    for mixer, r in results.items():
        h = r["history"]
        ax.plot(h["eval_step"], h["eval_acc"], marker="o",
                label=f"{mixer} (final {r['accuracy']:.2f})")
    ax.set(xlabel="training step", ylabel="held-out accuracy", ylim=(0, 1.02),
           title="MQAR: DeltaNet vs linear attention (same model, seed, steps)")
    ax.legend()
    return ax


def plot_capacity_panels(results, d_k=None, methods=("linear", "delta", "softmax"),
                         axes=None):
    """The capacity curves as small multiples: one panel per key setting, one line per method.

    ``results``: ``{label: capacity_curve(...)}``. Each panel plots the SNR (clipped to
    [0.1, 1e6]; 1e6 means exact) against the number of stored pairs, with :math:`d_k / N`
    (dashed) and :math:`N = d_k` (grey) for reference. Returns the axes.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.6),
                               sharey=True, squeeze=False)
        axes = axes[0]
    # linear last, open markers: where it equals the delta rule both stay visible
    style = {"linear": {"color": "C0", "marker": "o", "mfc": "none", "ms": 8, "ls": "--",
                        "zorder": 3},
             "delta": {"color": "C3", "marker": "s", "ms": 5},
             "softmax": {"color": "C2", "marker": "^", "ms": 5}}
    order = sorted(methods, key=lambda m: m == "linear")
    for ax, (label, result) in zip(axes, results.items()):
        n = result["n_pairs"]
        for m in order:
            snr = np.clip(result[m]["snr"], 1e-1, 1e6)
            ax.loglog(n, snr, label=m, **style.get(m, {}))
        if d_k:
            ax.loglog(n, d_k / n, "k:", lw=1, label=r"$d_k / N$")
            ax.axvline(d_k, color="gray", lw=0.8, label=r"$N = d_k$")
        ax.axhline(1e6, color="gray", lw=0.5, ls=":")
        ax.set(title=label, xlabel="stored pairs N", ylim=(5e-2, 5e6))
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("SNR $= \\|V\\|^2 / \\|\\hat V - V\\|^2$ (1e6: exact)")
    axes[0].legend(fontsize=8, loc="lower left")
    return axes


def plot_overwrite_trace(trace, axes=None, vmin=1e-3, vmax=10.0):
    """The read-out error of every key after every token (``lab.overwrite_trace``).

    One heat map per rule (rows: keys, columns: tokens; log colour scale, clipped to
    [``vmin``, ``vmax``]; white: key not yet written) with a dot where a token writes that key,
    and below them the mean error over the written keys against the token. Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    rules = [("linear", "linear attention: adds, so a rewritten key returns the sum"),
             ("delta", rf"delta rule ($\beta = {trace['beta']:g}$): replaces"),
             ("gated_delta", (rf"gated delta rule ($\beta = {trace['beta']:g}$, decay "
                              rf"{trace['decay']:g} per token): replaces, forgets the rest"))]
    if axes is None:
        _, axes = plt.subplots(4, 1, figsize=(9, 9.5), sharex=True,
                               gridspec_kw={"height_ratios": [1, 1, 1, 1.1]})
    key = trace["key"]
    T, n_keys = trace["error"]["linear"].shape
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    im = None
    for ax, (rule, title) in zip(axes[:3], rules):
        e = trace["error"][rule].T                                   # (n_keys, T)
        e = np.where(np.isnan(e), np.nan, np.clip(e, vmin, vmax))
        im = ax.imshow(np.ma.masked_invalid(e), aspect="auto", cmap=cmap,
                       norm=LogNorm(vmin=vmin, vmax=vmax), interpolation="nearest")
        ax.scatter(np.arange(T), key, s=14, c="white", edgecolors="black", lw=0.6)
        final = trace["final"][rule]
        final = f"{final:.2g}" if final > 1e-12 else "0 to rounding"
        ax.set(ylabel="key i", title=f"{title} (final mean {final})", yticks=range(n_keys))
        ax.title.set_fontsize(10)
    fig = axes[0].figure
    cbar = fig.colorbar(im, ax=list(axes), fraction=0.03, pad=0.01, shrink=0.7,
                        anchor=(0.0, 1.0))
    cbar.set_label(r"$\|S_t^\top k_i - v_i\|^2 / \|v_i\|^2$ (latest $v_i$)")
    colors = {"linear": "C0", "delta": "C3", "gated_delta": "C1"}
    names = {"linear": "linear attention", "delta": "delta rule",
             "gated_delta": "gated delta rule"}
    for rule, _ in rules:
        ax = axes[3]
        ax.semilogy(np.arange(T), np.clip(np.nanmean(trace["error"][rule], axis=1), vmin, None),
                    color=colors[rule], label=names[rule])
    axes[3].set(xlabel="token t (a dot above: the key written at t)",
                ylabel="mean error over keys", ylim=(vmin / 2, None),
                title=f"mean over the keys written so far (floor {vmin:g})")
    axes[3].title.set_fontsize(10)
    axes[3].legend(fontsize=8, loc="upper left")
    axes[3].grid(True, alpha=0.3)
    return axes


def plot_chunk_matrices(m, axes=None):
    """One chunk's :math:`A`, :math:`\\mathcal T`, :math:`W`, :math:`U` as matrices
    (``lab.chunk_matrices``); rows are the chunk's tokens. Returns the axes."""
    import matplotlib.pyplot as plt

    panels = [("A", r"$A = \mathrm{tril}(\mathrm{diag}(\beta)KK^\top\odot\Gamma,\,-1)$",
               "token j"),
              ("T", r"$\mathcal{T} = (I + A)^{-1}\,\mathrm{diag}(\beta)$", "token j"),
              ("W", r"$W = \mathcal{T}\,\mathrm{diag}(e^{\gamma})\,K$", "key dim"),
              ("U", r"$U = \mathcal{T}\,V$", "value dim")]
    widths = [m[name].shape[1] for name, _, _ in panels]
    if axes is None:
        _, axes = plt.subplots(1, 4, figsize=(12, 3.6),
                               gridspec_kw={"width_ratios": widths})
    C = m["A"].shape[0]
    for ax, (name, title, xlabel) in zip(axes, panels):
        M = m[name]
        lim = np.abs(M).max() or 1.0
        im = ax.imshow(M, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set(title=title, xlabel=xlabel, xticks=range(M.shape[1]), yticks=range(C))
        ax.title.set_fontsize(10)
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    axes[0].set_ylabel("token t of the chunk")
    return axes


def plot_pair_recall(res, axes=None):
    """The headline experiment (``lab.pair_recall_experiment``) in two panels.

    Left: held-out accuracy against training steps, the mean over seeds (line) and the range
    (band) per mixer, with chance and linear attention's bound :math:`1 - m/n + m/(n r)`
    (``m`` of ``n`` keys rewritten, ``r`` values each). Right: the final accuracy on the keys
    written once and on the rewritten keys (bars: mean; dots: seeds), with the bound
    :math:`1/r` for the rewritten ones. Returns the axes.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4),
                               gridspec_kw={"width_ratios": [1.5, 1]})
    cfg = res["config"]
    n, m, r = cfg["n_pairs"], cfg["n_rewritten"], cfg["rounds"]
    mixers = [k for k in res if isinstance(res[k], dict) and "eval_acc" in res[k]]
    names = {"delta": "DeltaNet", "linear": "linear attention", "gated_delta": "Gated DeltaNet"}
    colors = {"delta": "C3", "linear": "C0", "gated_delta": "C1"}
    steps = res["eval_step"]
    ax = axes[0]
    for mixer in mixers:
        acc = res[mixer]["eval_acc"]
        ax.plot(steps, acc.mean(0), marker="o", color=colors.get(mixer),
                label=f"{names.get(mixer, mixer)} ({acc[:, -1].mean():.2f})")
        ax.fill_between(steps, acc.min(0), acc.max(0), color=colors.get(mixer), alpha=0.2)
    ax.axhline(res["chance"], color="gray", ls=":", lw=1, label="chance")
    if m and r > 1:
        ax.axhline(1 - m / n + m / (n * r), color="C0", ls="--", lw=1,
                   label="linear attention's bound")
    ax.set(xlabel="training step", ylabel="held-out accuracy (all queries)", ylim=(0, 1.02),
           title=f"associative recall: mean of {len(res['seeds'])} seeds (band: min to max)")
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[1]
    groups = [("once", "keys written once")] + ([("rewritten", f"rewritten keys ({r} values)")]
                                                 if m and r > 1 else [])
    width = 0.8 / len(mixers)
    for j, mixer in enumerate(mixers):
        for g, (field, _) in enumerate(groups):
            x = g + (j - (len(mixers) - 1) / 2) * width
            vals = res[mixer][field]
            ax.bar(x, np.nanmean(vals), width * 0.9, color=colors.get(mixer),
                   label=names.get(mixer, mixer) if g == 0 else None)
            ax.scatter(np.full(len(vals), x), vals, color="black", s=10, zorder=3)
    if len(groups) > 1:
        ax.hlines(1 / r, 0.55, 1.45, colors="C0", linestyles="--", lw=1)
        ax.text(1.47, 1 / r, f"1/{r}", color="C0", va="center", fontsize=8)
    ax.set(xticks=range(len(groups)), xticklabels=[label for _, label in groups],
           xlim=(-0.55, len(groups) - 0.35), ylim=(0, 1.22),
           yticks=np.linspace(0, 1, 6), ylabel="final held-out accuracy",
           title="final accuracy by query (bars: mean, dots: seeds)")
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    return axes


def plot_kernels(curves, axes=None, approximations=("taylor2", "poly", "performer")):
    r"""Each feature map's kernel :math:`\phi(q)^\top\phi(k)` against :math:`q^\top k` (from
    :func:`~.lab.kernel_curves`): left the maps that approximate the softmax's
    :math:`e^{q^\top k}` (drawn with it), right the other positive kernels."""
    import matplotlib.pyplot as plt

    if axes is None:
        axes = plt.subplots(1, 2, figsize=(10, 3.8))[1]
    kinds = [k for k in curves if k not in ("dot", "exp")]
    panels = ([k for k in kinds if k in approximations], [k for k in kinds
                                                          if k not in approximations])
    titles = (r"approximations of $e^{q^\top k}$", "other positive kernels")
    for ax, names, title in zip(axes, panels, titles):
        if ax is axes[0]:
            ax.plot(curves["dot"], curves["exp"], "k-", lw=2.5, label=r"$\exp(q^\top k)$")
        for kind in names:
            ax.plot(curves["dot"], curves[kind], ".", ms=3, label=kind)
        ax.set(xlabel=r"$q^\top k$", ylabel=r"$\phi(q)^\top \phi(k)$", title=title)
        ax.legend(fontsize=8)
    return axes


def plot_decay_weights(weights, axes=None):
    r"""Heat maps of :math:`e^{\gamma_t - \gamma_j}` (``{title: (T, T) array}`` from
    :func:`~.lab.decay_weights`), one panel each."""
    import matplotlib.pyplot as plt

    if axes is None:
        axes = plt.subplots(1, len(weights), figsize=(4 * len(weights), 3.6))[1]
    axes = np.atleast_1d(axes)
    for ax, (title, w) in zip(axes, weights.items()):
        im = ax.imshow(w, cmap="viridis", vmin=0, vmax=1)
        ax.set(title=title, xlabel="key position j", ylabel="query position t")
    axes[-1].figure.colorbar(im, ax=list(axes), fraction=0.046)
    return axes


def plot_spectra(spectra, axes=None):
    """Eigenvalues of transitions in the complex plane with the unit circle
    (``{title: complex array}``, e.g. from :func:`~.lab.spectrum_samples`), one panel each."""
    import matplotlib.pyplot as plt

    if axes is None:
        axes = plt.subplots(1, len(spectra), figsize=(3.6 * len(spectra), 3.6))[1]
    axes = np.atleast_1d(axes)
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 200))
    for ax, (title, ev) in zip(axes, spectra.items()):
        ax.plot(circle.real, circle.imag, color="gray", lw=0.8)
        ax.plot(ev.real, ev.imag, ".", ms=3, alpha=0.5)
        ax.plot([-1], [0], "rx", ms=9, label="-1")
        ax.set(title=title, xlabel="Re", ylabel="Im", xlim=(-1.15, 1.15), ylim=(-1.15, 1.15),
               aspect="equal")
        ax.legend(loc="lower left", fontsize=8)
    return axes


def plot_state_tracking(res, ax=None, names=None):
    """Accuracy after the last token against the test length, mean over seeds with a band
    from the worst to the best seed (from :func:`~.lab.state_tracking_experiment`)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 4))[1]
    lens = np.asarray(res["test_lens"])
    for mixer, r in res.items():
        if not isinstance(r, dict) or "accuracy" not in r:
            continue
        acc = np.asarray(r["accuracy"])
        label = (names or {}).get(mixer, mixer)
        line, = ax.plot(lens, acc.mean(0), "o-", label=label)
        ax.fill_between(lens, acc.min(0), acc.max(0), color=line.get_color(), alpha=0.2)
    ax.axhline(res["chance"], color="gray", ls=":", label="chance")
    ax.axvline(res["config"]["train_len"], color="k", lw=0.8, ls="--", label="train length")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="test length T", ylabel="accuracy at the last token", ylim=(0, 1.05),
           title=f"{res['config']['task']}: trained on T = {res['config']['train_len']}")
    ax.legend(fontsize=8)
    return ax
