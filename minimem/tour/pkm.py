"""Tour step: product-key memory, the exact search at a fraction of the flat scan's cost."""
TITLE = "pkm: product-key search vs flat scan"


def run(out_dir) -> str:
    import numpy as np

    from ..memory.product_keys.lab import search_cost
    from ..memory.product_keys.plots import plot_score_grid, plot_search_cost

    cost = search_cost(n_sub_keys=(32, 64, 128, 256), n_queries=64, d_key=64, k=32,
                       flat_max_slots=2 ** 16, repeat=2)
    fig, _ = plot_search_cost(cost)
    fig.savefig(f"{out_dir}/pkm_search_cost.png", dpi=100)
    rng = np.random.default_rng(0)
    fig, _ = plot_score_grid(rng.standard_normal(32), rng.standard_normal(32), 16)
    fig.savefig(f"{out_dir}/pkm_score_grid.png", dpi=100)
    i = int(np.flatnonzero(np.isfinite(cost["flat"]))[-1])
    speedup = cost["flat"][i] / cost["product"][i]
    return (f"exact top-32 of N={cost['n_slots'][i]} slots {speedup:.0f}x faster than the flat "
            f"scan; N={cost['n_slots'][-1]}: {cost['product'][-1] * 1e6:.1f} us/query")
