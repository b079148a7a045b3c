"""Tour step: ARMT's associative write (matrix form = per-pair loop) and MRBP == BPTT."""
TITLE = "armt: associative memory across segments"


def run(out_dir) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    from ..autograd.tensor import Tensor
    from ..memory import ARMT, associative_write, associative_write_reference, bptt, mrbp
    from ..memory.associative.plots import plot_diagrams
    from ..memory.segment.lab import segment_cell, segment_loss
    from ..tasks import associative_retrieval, retrieval_vocab

    r = np.random.default_rng(0)
    args = [Tensor(a) for a in (r.standard_normal((2, 12, 4)), r.uniform(0, .3, (2, 12)),
                                r.uniform(0, 1, (2, 5, 12)), r.standard_normal((2, 5, 4)),
                                r.uniform(0, 1, (2, 5)))]
    fast, ref = associative_write(*args), associative_write_reference(*args)
    write_gap = max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(fast, ref))
    model = ARMT(retrieval_vocab(6, 6), 16, 2, 2, 2, 4, seed=0).double()
    segs = associative_retrieval(4, 2, seed=0, pairs_per_segment=2, n_gap=1, n_keys=6,
                                 n_values=6)
    grads = []
    for method in (bptt, mrbp):
        model.zero_grad()
        method(segment_cell(model), model.init_memory(2), segs, segment_loss)
        grads.append([p.grad.numpy().copy() for p in model.parameters()])
    grad_gap = max(float(np.abs(a - b).max()) for a, b in zip(*grads))
    fig = plot_diagrams()
    fig.savefig(f"{out_dir}/armt_diagrams.png", dpi=80)
    plt.close(fig)
    return (f"|write matrix - per pair| = {write_gap:.1e}; ARMT |g_MRBP - g_BPTT| = "
            f"{grad_gap:.1e}; diagrams in armt_diagrams.png")
