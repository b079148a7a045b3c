"""Block-sparse attention (Numba) vs dense masked attention (NumPy, PyTorch) on the same mask.

Workload: one head, D = 64, blocks of 64, the ``fixed`` pattern in its block form (groups of
l = 2 blocks = 128 tokens, the last c = 1 block of each group is the summary; causal). The
ideal speed-up over a dense computation is 1 / density of the token mask.
"""
from __future__ import annotations

import numpy as np

from ..kernels.block_sparse_attention import (
    block_sparse_attention_backward,
    block_sparse_attention_backward_reference,
    block_sparse_attention_forward,
    block_sparse_attention_forward_reference,
)
from ..memory.sparse.patterns import block_layout, density, expand_layout
from ._util import Row, timeit, torch_or_none, with_ratios

DESCRIPTION = "block-sparse attention (fixed pattern) vs dense masked NumPy and PyTorch"

BLOCK, D = 64, 64
SPARSE, DENSE, TORCH = "minimem sparse (numba)", "numpy dense masked", "torch sdpa dense mask"


def _inputs(T, seed=0):
    rng = np.random.default_rng(seed)
    q, k, v, do = (rng.standard_normal((1, 1, T, D)).astype(np.float32) for _ in range(4))
    layout = block_layout("fixed", T // BLOCK, l=2, c=1)
    return q, k, v, do, layout


def _torch_rows(torch, T, q, k, v, do, mask, with_backward, repeat):
    tq, tk, tv, tdo = (torch.from_numpy(x) for x in (q, k, v, do))
    tmask = torch.from_numpy(mask)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    rows = []
    with torch.no_grad():
        t = timeit(lambda: sdpa(tq, tk, tv, attn_mask=tmask), repeat=repeat)
    rows.append(Row(f"forward T={T}", TORCH, t))
    if with_backward:
        leaves = [x.clone().requires_grad_(True) for x in (tq, tk, tv)]

        def fwd_bwd():
            sdpa(*leaves, attn_mask=tmask).backward(tdo)

        rows.append(Row(f"forward+backward T={T}", TORCH, timeit(fwd_bwd, repeat=repeat)))
    return rows


def _one_length(T, torch, dense_backward=True, repeat=3):
    q, k, v, do, layout = _inputs(T)
    mask = expand_layout(layout, BLOCK, T, causal=True)
    rho = density(mask)
    o, lse = block_sparse_attention_forward(q, k, v, layout, BLOCK)
    rows = [
        Row(f"forward T={T}", SPARSE,
            timeit(lambda: block_sparse_attention_forward(q, k, v, layout, BLOCK), repeat=repeat)),
        Row(f"forward T={T}", DENSE,
            timeit(lambda: block_sparse_attention_forward_reference(q, k, v, layout, BLOCK),
                   repeat=repeat)),
        Row(f"forward+backward T={T}", SPARSE,
            timeit(lambda: block_sparse_attention_backward(
                q, k, v, *block_sparse_attention_forward(q, k, v, layout, BLOCK), do, layout,
                BLOCK), repeat=repeat)),
    ]
    if dense_backward:
        def dense_fwd_bwd():
            block_sparse_attention_forward_reference(q, k, v, layout, BLOCK)
            block_sparse_attention_backward_reference(q, k, v, do, layout, BLOCK)

        rows.append(Row(f"forward+backward T={T}", DENSE, timeit(dense_fwd_bwd, repeat=repeat)))
    if torch is not None:
        rows += _torch_rows(torch, T, q, k, v, do, mask, dense_backward, repeat)
    del o, lse
    for r in rows:
        r.extra["density"] = rho
    return rows, rho


def _annotate(rows):
    """Ratios vs NumPy dense; notes with the ideal speed-up and the ratio vs PyTorch."""
    with_ratios(rows, DENSE)
    torch_t = {r.workload: r.seconds for r in rows if r.impl == TORCH}
    for r in rows:
        if r.impl != SPARSE:
            continue
        ideal = 1.0 / r.extra["density"]
        parts = [f"density {r.extra['density']:.3f}, ideal {ideal:.1f}x"]
        if r.ratio is not None:
            r.extra["fraction_of_ideal"] = r.ratio / ideal
            parts.append(f"{r.ratio / ideal:.2f} of ideal")
        if r.workload in torch_t:
            r.extra["vs_torch"] = torch_t[r.workload] / r.seconds
            parts.append(f"{r.extra['vs_torch']:.2f}x vs torch")
        r.note = "; ".join(parts)
    return rows


def run(quick=False):
    torch = torch_or_none()
    rows = []
    if quick:
        rows += _one_length(1024, torch, repeat=2)[0]
    else:
        for T in (2048, 8192):
            rows += _one_length(T, torch)[0]
        # T = 16384: the dense backward needs several 1 GiB (T x T) arrays; forward only there
        rows += _one_length(16384, torch, dense_backward=False, repeat=2)[0]
    return _annotate(rows)
