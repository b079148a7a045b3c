"""Tour step: MRBP gives BPTT's gradients with a flat tape (a small Memformer)."""
TITLE = "mrbp: memory replay back-propagation"


def run(out_dir) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    from ..memory.segment.memformer import Memformer
    from ..memory.segment.lab import memory_sweep
    from ..memory.segment.plots import plot_memory_sweep

    model = Memformer(16, 16, 1, 2, 4, 8, seed=0).double()
    rng = np.random.default_rng(0)

    def segments(T):
        return [(rng.integers(0, 16, (2, 8)), rng.integers(0, 16, (2, 8))) for _ in range(T)]

    rows = memory_sweep(model, segments, (1, 2, 4, 8, 16))
    axes = plot_memory_sweep(rows)
    axes[0].figure.suptitle("Memformer: BPTT vs MRBP")
    axes[0].figure.tight_layout()
    axes[0].figure.savefig(f"{out_dir}/mrbp_memory.png", dpi=80)
    plt.close(axes[0].figure)
    first, last = rows[0], rows[-1]
    return (f"peak tape T=1->16: BPTT {last['peak_bptt'] / first['peak_bptt']:.1f}x, MRBP "
            f"{last['peak_mrbp'] / first['peak_mrbp']:.2f}x; max grad diff "
            f"{max(r['max_grad_diff'] for r in rows):.1e}")
