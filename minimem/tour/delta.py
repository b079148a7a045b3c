"""Tour step: the delta rule vs linear attention as an associative memory (capacity plot)."""
TITLE = "delta rule: capacity vs linear attention"


def run(out_dir) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    from ..memory.delta.lab import capacity_curve
    from ..memory.delta.plots import plot_capacity

    d_k = 64
    n = (16, 32, 64, 128, 256)
    results = {"random keys": capacity_curve(d_k, n, orthogonal=False, seed=0),
               "orthogonal keys": capacity_curve(d_k, n, orthogonal=True, seed=0)}
    ax = plot_capacity(results, d_k=d_k, methods=("linear", "delta"))
    ax.figure.savefig(f"{out_dir}/20_delta_capacity.png", dpi=100, bbox_inches="tight")
    plt.close(ax.figure)
    rnd, orth = results["random keys"], results["orthogonal keys"]
    i = int(np.where(np.asarray(n) == d_k)[0][0])
    return (f"N=d_k={d_k} pairs: random keys error linear {rnd['linear']['error'][i]:.2f} vs "
            f"delta {rnd['delta']['error'][i]:.2f}; orthonormal keys delta error "
            f"{orth['delta']['error'][i]:.0e}")
