"""The chapter's figures draw, with titles and labelled axes (Agg backend)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from minimem.memory.hopfield import plots as hp
from minimem.memory.hopfield.lab import energy_grid, retrieval_trajectory


def _labelled(ax):
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def test_every_plot_draws_labelled_axes():
    alphas = np.array([0.05, 0.1, 0.2])
    Y = np.array([[1.0, 0.0], [0.0, 1.0]])
    xs, ys, E = energy_grid(Y, beta=3.0, n=11)
    figs = [
        hp.plot_capacity(alphas, [1.0, 0.99, 0.4], 100),
        hp.plot_one_step_error(alphas, np.array([0.0, 1e-3, 0.01]), 100),
        hp.plot_dense_capacity([2, 3], [5, 20], 20),
        hp.plot_beta_regimes([0.1, 1.0, 10.0], [9.0, 3.0, 1.0], 9, cluster_size=3),
        hp.plot_energy_landscape(xs, ys, E, Y, [retrieval_trajectory([0.3, 0.2], Y, 3.0)]),
        hp.plot_error_vs_bound([1.0, 2.0], [0.1, 0.01], [0.5, 0.05]),
    ]
    for fig, ax in figs:
        _labelled(ax)
        fig.canvas.draw()  # renders the mathtext labels too
        plt.close(fig)
    fig, axes = hp.plot_images(np.ones((3, 16)), 4, ["a", "b", "c"], suptitle="demo")
    assert len(axes) == 3 and axes[1].get_title() == "b"
    fig.canvas.draw()
    plt.close(fig)
