"""Tour step: sparse patterns, block-sparse attention equals its dense-masked reference."""
TITLE = "sparse: block-sparse attention"


def run(out_dir) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    import minimem as mm

    from ..memory import (
        block_layout,
        density,
        layout_mask,
        sparse_attention,
        sparse_attention_dense,
        sparse_mask,
    )
    from ..memory.sparse.plots import plot_masks

    T = 64
    masks = {kind: sparse_mask(kind, T, **p) for kind, p in (
        ("local", {"w": 8}), ("strided", {"l": 8}), ("fixed", {"l": 8, "c": 2}),
        ("longformer", {"w": 4, "global_tokens": (0, 32)}),
        ("bigbird", {"block": 8, "w": 1, "g": 1, "r": 1}))}
    fig = plot_masks(masks)
    fig.savefig(f"{out_dir}/sparse_masks.png", dpi=80)
    plt.close(fig)
    T, b = 256, 16
    layout = block_layout("fixed", T // b, l=2, c=1)
    q, k, v = (mm.randn(1, 2, T, 16, seed=s).astype(np.float64) for s in range(3))
    err = np.abs(sparse_attention(q, k, v, layout, b).numpy()
                 - sparse_attention_dense(q, k, v, layout, b).numpy()).max()
    rho = density(layout_mask(layout, b, T))
    return (f"fixed T={T}, b={b}: density {rho:.2f}, |sparse - dense| = {err:.1e}; "
            f"masks in sparse_masks.png")
