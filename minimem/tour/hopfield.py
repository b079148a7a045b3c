"""Tour step: classical capacity (overlap vs load) and one-step retrieval in a modern network."""
TITLE = "hopfield: capacity and retrieval"


def run(out_dir) -> str:
    import numpy as np

    from ..memory import hopfield_retrieve
    from ..memory.hopfield.lab import capacity_curve, make_image_patterns, mask_half
    from ..memory.hopfield.plots import plot_capacity

    N, alphas = 400, np.array([0.05, 0.1, 0.125, 0.15, 0.2, 0.25])
    m = capacity_curve(N, alphas, n_probes=8, seed=0)
    fig, _ = plot_capacity(alphas, m, N)
    fig.savefig(f"{out_dir}/hopfield_capacity.png", dpi=80)
    X, _ = make_image_patterns(6, 16, seed=0)
    err = np.abs(hopfield_retrieve(mask_half(X, 16), X, beta=2.0).numpy() - X).max()
    return (f"N={N}: overlap {m[0]:.2f} at alpha=0.05, {m[-1]:.2f} at alpha=0.25; "
            f"half-masked image retrieved in one step, max error {err:.1e}")
