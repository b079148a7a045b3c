"""Tour step: Titans' chunked memory equals its loop definition; polynomial features raise
the capacity of a linear memory."""
TITLE = "titans: chunked neural memory, Omega rule capacity"


def run(out_dir) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    from ..autograd import Tensor
    from ..memory import neural_memory, neural_memory_reference
    from ..memory.titans.lab import capacity_experiment
    from ..memory.titans.plots import plot_capacity

    rng = np.random.default_rng(0)
    T = 24
    args = [Tensor(rng.standard_normal((1, 2, T, 4)) / 2) for _ in range(3)]
    args += [Tensor(np.full((1, 2, T), x)) for x in (0.2, 0.5, 0.05)]
    M0 = (Tensor(np.zeros((1, 2, 4, 4))),)
    err = np.abs(neural_memory(*args, M0, chunk_size=8)[0].numpy()
                 - neural_memory_reference(*args, M0, chunk_size=8)[0].numpy()).max()
    r = capacity_experiment(n_pairs=(6, 12), seeds=(0, 1, 2))
    fig = plot_capacity(r)
    fig.savefig(f"{out_dir}/25_titans_capacity.png", dpi=80)
    plt.close(fig)
    raw, poly = r["recall"]["raw keys"][1].mean(), r["recall"]["poly 2, window 4"][1].mean()
    return (f"|chunked - loop| (C=8) = {err:.1e}; 12 pairs on d_k=6: recall raw keys "
            f"{raw:.2f}, poly 2 + window 4 {poly:.2f}")
