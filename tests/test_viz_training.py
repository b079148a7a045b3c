"""Plot helpers of training runs: they draw what they are given, labelled."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

import minimem as mm
from minimem import tasks
from minimem.nn import TransformerLM
from minimem.viz_training import (
    attention_maps,
    induction_scores,
    plot_attention,
    plot_histories,
    plot_history,
)


def test_plot_history():
    hist = {"step": [1, 2, 3, 4], "loss": [4.0, 3.0, 2.0, 1.0], "train_acc": [0, .5, .5, 1],
            "eval_step": [2, 4], "eval_acc": [0.25, 0.75]}
    fig = plot_history(hist, smooth=1, title="mqar")
    ax, acc_ax = fig.axes
    assert ax.get_title() == "mqar" and ax.get_xlabel() == "step"
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), hist["loss"])
    np.testing.assert_array_equal(acc_ax.get_lines()[1].get_xydata(), [[2, 0.25], [4, 0.75]])
    plt.close(fig)
    fig = plot_history(hist, smooth=2)
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [4, 3.5, 2.5, 1.5])
    plt.close(fig)
    with pytest.raises(ValueError, match="plot_history: history has no 'eval_acc'"):
        plot_history({k: v for k, v in hist.items() if k != "eval_acc"})


def test_plot_histories_draws_every_run_in_both_panels():
    runs = [{"step": [1, 2, 3], "loss": [4.0, 2.0, 1.0], "train_acc": [0, .5, 1],
             "eval_step": [3], "eval_acc": [0.5]},
            {"step": [1, 2], "loss": [3.0, 1.5], "eval_step": [1, 2], "eval_acc": [.25, 1.]}]
    fig = plot_histories(runs, labels=["seed 0", "seed 1"], smooth=1, title="mqar")
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_yscale() == "log" and acc_ax.get_title() == "mqar: accuracy"
    np.testing.assert_array_equal(loss_ax.get_lines()[1].get_ydata(), [3.0, 1.5])
    # run 0: its training accuracy (faint), then its held-out dots; run 1 has no train_acc
    train0, eval0, eval1 = acc_ax.get_lines()
    np.testing.assert_array_equal(train0.get_ydata(), [0, .5, 1])
    np.testing.assert_array_equal(eval1.get_xydata(), [[1, .25], [2, 1.]])
    assert [t.get_text() for t in acc_ax.get_legend().get_texts()] == ["seed 0", "seed 1"]
    # the curves of one run share its colour
    assert loss_ax.get_lines()[0].get_color() == train0.get_color() == eval0.get_color()
    assert loss_ax.get_lines()[0].get_color() != loss_ax.get_lines()[1].get_color()
    plt.close(fig)
    fig = plot_histories(runs[:1], smooth=2)
    np.testing.assert_allclose(fig.axes[1].get_lines()[0].get_ydata(), [0, .25, .75])
    plt.close(fig)
    fig, axes = plt.subplots(1, 2)
    assert plot_histories(runs, axes=axes) is fig
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["run 0", "run 1"]
    plt.close(fig)
    with pytest.raises(ValueError, match=r"plot_histories: histories\[1\] has no 'eval_acc'"):
        plot_histories([runs[0], {"step": [], "loss": [], "eval_step": []}])
    with pytest.raises(ValueError, match="plot_histories: 2 histories but 1 labels"):
        plot_histories(runs, labels=["a"])
    with pytest.raises(ValueError, match="plot_histories: histories is empty"):
        plot_histories([])


def test_attention_maps_and_plot():
    lm = TransformerLM(10, 8, 2, 2, 6, seed=0)
    tokens = np.array([1, 2, 3, 4, 5])
    w = attention_maps(lm, tokens)
    assert w.shape == (2, 2, 5, 5) and lm.training
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.triu(w, 1) == 0)                  # causal
    fig = plot_attention(w[1, 0], tokens=tokens, query=3, title="layer 2 head 1")
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), w[1, 0])
    assert ax.get_title() == "layer 2 head 1" and ax.get_ylabel().startswith("query")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4", "5"]
    plt.close(fig)
    with pytest.raises(ValueError, match="attention_maps: tokens must be one sequence"):
        attention_maps(lm, np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"plot_attention: weights must be \(T, S\)"):
        plot_attention(w[0])


def test_induction_circuit_draws_one_arrow_per_strong_attention_weight():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.patches import FancyArrowPatch

    from minimem import viz_training

    T, query = 10, 9
    w = np.full((2, 2, T, T), 0.01)
    for v in (1, 3, 5, 7):                       # layer 1, head 1: value reads its key
        w[0, 1, v, v - 1] = 0.9
    w[1, 0, query, 5] = 0.8                      # layer 2, head 0: the query reads value 5
    w[1, 0, query, 3] = 0.2                      # below the threshold: not drawn
    tokens = np.arange(T)
    fig = viz_training.plot_induction_circuit(w, tokens, query=query, prev_head=1,
                                              retrieval_head=0, n_context=8)
    arrows = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == 5
    with pytest.raises(ValueError, match="layers, heads, T, T"):
        viz_training.plot_induction_circuit(w[0], tokens, query, 1, 0, 8)


class _Recorded:
    """A stand-in for a trained model: its 'attention' is a given (layers, heads, T, T)
    array, the same for every example (what induction_scores reads from .blocks)."""

    class _Block:
        def __init__(self, w):
            self.mixer = type("Mixer", (), {"last_weights": None})()
            self.w = w

    def __init__(self, w):
        self.blocks = [self._Block(w_l) for w_l in w]
        self.training = True

    def eval(self):
        self.training = False

    def train(self, mode=True):
        self.training = mode

    def __call__(self, ids):
        for blk in self.blocks:
            blk.mixer.last_weights = mm.tensor(np.broadcast_to(blk.w, (len(ids),) + blk.w.shape))


def test_induction_scores_known_values():
    # context k1 v1 k2 v2 (positions 0-3), then the queries of k2 (position 4) and k1 (6)
    x = np.array([[5, 9, 6, 8, 6, 0, 5, 0]])
    y = np.full_like(x, tasks.IGNORE)
    y[0, 4], y[0, 6] = 8, 9
    T = x.shape[1]
    w = np.zeros((2, 2, T, T))
    w[0, 1, 1, 0] = w[0, 1, 3, 2] = 1.0        # layer 1 head 1: each value reads its key
    w[0, 0, 1, 0], w[0, 0, 3, 2] = 0.5, 0.25    # layer 1 head 0: half of it, a quarter
    w[1, 0, 4, 3], w[1, 0, 6, 1] = 1.0, 0.5     # layer 2 head 0: query -> value 2i + 1
    w[1, 1, 4, 2] = 1.0                         # layer 2 head 1: reads the key, not the value
    model = _Recorded(w)
    s = induction_scores(model, x, y, n_kv=2)
    np.testing.assert_allclose(s["previous_token"], [[0.375, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(s["retrieval"], [[0.0, 0.0], [0.75, 0.0]])
    assert model.training                       # the mode is restored
    s1 = induction_scores(model, np.repeat(x, 3, 0), np.repeat(y, 3, 0), 2, batch_size=2)
    np.testing.assert_allclose(s1["retrieval"], s["retrieval"])


def test_induction_scores_match_a_loop_over_attention_maps():
    V, T, n = 16, 12, 3
    x, y = tasks.mqar(V, T, n, 5, seed=3)
    lm = TransformerLM(V, 8, 3, 2, T, seed=1, emb_std=1.0)
    s = induction_scores(lm, x, y, n_kv=n, batch_size=2)
    prev, retr, n_queries = np.zeros((3, 2)), np.zeros((3, 2)), 0
    for b in range(len(x)):
        w = attention_maps(lm, x[b])
        for i in range(n):
            prev += w[:, :, 2 * i + 1, 2 * i] / (n * len(x))
        for t in range(T):
            if y[b, t] != tasks.IGNORE:
                i = [x[b, 2 * k] for k in range(n)].index(x[b, t])
                retr += w[:, :, t, 2 * i + 1]
                n_queries += 1
    np.testing.assert_allclose(s["previous_token"], prev, rtol=1e-5)
    np.testing.assert_allclose(s["retrieval"], retr / n_queries, rtol=1e-5)


def test_induction_scores_bad_inputs():
    x, y = tasks.mqar(16, 12, 3, 4, seed=0)
    lm = TransformerLM(16, 8, 2, 2, 12, seed=0)
    with pytest.raises(ValueError, match=r"induction_scores: inputs and targets must both be"):
        induction_scores(lm, x, y[:, :-1], 3)
    with pytest.raises(TypeError, match="induction_scores: inputs must be integer"):
        induction_scores(lm, x.astype(float), y, 3)
    with pytest.raises(ValueError, match=r"induction_scores: n_kv must be an int in \[1, 6\]"):
        induction_scores(lm, x, y, 7)
    with pytest.raises(ValueError, match="induction_scores: the token of each query must "
                                         "occur exactly once among the keys"):
        induction_scores(lm, x, y, 2)           # the third key is not in the context
    with pytest.raises(ValueError, match="induction_scores: targets has no query"):
        induction_scores(lm, x, np.full_like(y, tasks.IGNORE), 3)
    with pytest.raises(TypeError, match="induction_scores: model must have .blocks"):
        induction_scores(object(), x, y, 3)
    with pytest.raises(TypeError, match="attention_maps: model must have .blocks"):
        attention_maps(object(), x[0])
