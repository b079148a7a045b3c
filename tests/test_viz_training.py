"""Plot helpers of training runs: they draw what they are given, labelled."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from minimem.nn import TransformerLM
from minimem.viz_training import attention_maps, plot_attention, plot_history


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
