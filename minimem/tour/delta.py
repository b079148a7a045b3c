"""Tour step: the delta rule vs linear attention as an associative memory (capacity plot), and
parity solved by the delta rule with beta = 2 (a reflection: eigenvalue -1)."""
TITLE = "delta rule: capacity vs linear attention; parity with beta = 2"


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
            f"{orth['delta']['error'][i]:.0e}; {_parity_line()}")


def _parity_line():
    """One fixed key written with beta_t = 2 x_t: the read-out is 2 x parity at every bit."""
    import numpy as np

    from .. import tensor
    from ..memory import delta_rule
    from ..tasks import parity

    bits, target = parity(4, 500, seed=0)
    key = np.zeros((4, 1, 500, 2))
    key[..., 0] = 1.0
    o, _ = delta_rule(tensor(key), tensor(key), tensor(np.ones((4, 1, 500, 1))),
                      tensor(2.0 * bits[:, None]), scale=1.0)
    right = float((np.round(o.numpy()[:, 0, :, 0] / 2) == target).mean())
    return f"parity of 500 bits by the beta = 2 delta rule: {right:.0%} of positions right"
