r"""Block-sparse attention: compute only the blocks a layout keeps.

Cut the T queries and the S keys of each head into blocks of ``b`` rows. A boolean block layout
:math:`L \in \{0,1\}^{\lceil T/b\rceil \times \lceil S/b\rceil}` keeps block :math:`(I, J)` when
:math:`L_{IJ} = 1`; the token mask is

.. math:: M_{ij} = L_{\lfloor i/b \rfloor \lfloor j/b \rfloor}\;\wedge\;
          (\text{causal} \Rightarrow j \le i + S - T),

and the output is dense attention under that mask,

.. math:: o_i = \sum_{j : M_{ij}} \frac{e^{s_{ij}}}{\sum_{j' : M_{ij'}} e^{s_{ij'}}}\, v_j,
          \qquad s_{ij} = \tau\, q_i \cdot k_j,\ \tau = d^{-1/2},

with :math:`o_i = 0` when row i keeps no key. The cost is the number of kept blocks times
:math:`b^2 d` instead of :math:`T S d`. The forward (``minimem.kernels.block_sparse_attention``)
walks the kept key blocks of each query block with the online softmax and saves the row
log-sum-exp :math:`\mathrm{lse}_i`; the backward recomputes the probabilities from it.

Two formulations that must agree: :func:`sparse_attention` (the Numba kernels) and
:func:`sparse_attention_dense` (the mask above fed to
``minimem.nn.scaled_dot_product_attention``).
"""
from __future__ import annotations


import numpy as np

from ...autograd import Function, Tensor
from ...backend import get_xp
from ...checks import check_bool, check_float_tensor, check_int, check_nonempty, check_real
from ...kernels.block_sparse_attention import (
    block_sparse_attention_backward,
    block_sparse_attention_forward,
)
from ...nn.attention import (
    scaled_dot_product_attention,
)
from .patterns import expand_layout


class _BlockSparseAttention(Function):
    """Autograd wrapper of the block-sparse kernels (saves q, k, v, o and the row lse)."""

    @staticmethod
    def forward(ctx, q, k, v, layout=None, block_size=None, causal=True, scale=None):
        o, lse = block_sparse_attention_forward(q, k, v, layout, block_size, causal, scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.params = (layout, block_size, causal, scale)
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        layout, block_size, causal, scale = ctx.params
        dq, dk, dv = block_sparse_attention_backward(q, k, v, o, lse, do, layout, block_size,
                                                     causal, scale)
        return dq, dk, dv


def _check_inputs(fn, q, k, v, layout, block_size, scale=None, causal=True):
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{fn}: {name} must be a Tensor, got {type(t).__name__}")
        # the kernels compute in float32/float64 only: an int q would be read as zeros
        check_float_tensor(fn, name, t, float16=False)
        if t.ndim != 4:
            raise ValueError(f"{fn}: {name} must be (B, H, T, D), got shape {t.shape}")
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{fn}: expected q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv); got "
                         f"q {q.shape}, k {k.shape}, v {v.shape}")
    check_int(fn, "block_size", block_size, low=1)
    if scale is not None:
        check_real(fn, "scale", scale)  # NaN would give zeros in one path, NaN in the other
    check_bool(fn, "causal", causal)
    check_nonempty(fn, "q", q)
    check_nonempty(fn, "k", k)
    check_nonempty(fn, "v", v)
    layout = np.asarray(layout.numpy() if isinstance(layout, Tensor) else layout)
    if layout.dtype != bool:
        raise TypeError(f"{fn}: layout must be a boolean array, got dtype {layout.dtype}")
    want = (-(-q.shape[2] // block_size), -(-k.shape[2] // block_size))
    if layout.shape != want:
        raise ValueError(f"{fn}: layout must have shape {want} (ceil(T/b), ceil(S/b)) for "
                         f"T={q.shape[2]}, S={k.shape[2]}, block_size={block_size}; got "
                         f"{layout.shape}")
    return layout


def sparse_attention(q, k, v, layout, block_size, scale=None, causal=True):
    """Block-sparse attention over (B, H, T, D) computing only the blocks ``layout`` keeps.

    ``layout``: boolean (ceil(T/b), ceil(S/b)); ``causal`` applies ``j <= i + S - T`` on top.
    Equal to :func:`sparse_attention_dense`; a row with no allowed key returns zeros.
    """
    layout = _check_inputs("sparse_attention", q, k, v, layout, block_size, scale, causal)
    dt = np.result_type(q.dtype, k.dtype, v.dtype)  # promote as the dense reference does
    q, k, v = (t if t.dtype == dt else t.astype(dt) for t in (q, k, v))
    return _BlockSparseAttention.apply(q, k, v, layout=layout, block_size=int(block_size),
                                       causal=bool(causal), scale=scale)


def layout_mask(layout, block_size, T, S=None, causal=True):
    """The token mask (T, S) of a block layout (see the module docstring)."""
    S = T if S is None else S
    if S == T:
        return expand_layout(layout, block_size, T, causal)
    layout = np.asarray(layout, dtype=bool)
    mask = layout[(np.arange(T) // block_size)[:, None], (np.arange(S) // block_size)[None, :]]
    return mask & np.tri(T, S, S - T, dtype=bool) if causal else mask


def sparse_attention_dense(q, k, v, layout, block_size, scale=None, causal=True):
    """The reference: dense attention with the token mask of ``layout`` (O(T S) memory)."""
    layout = _check_inputs("sparse_attention_dense", q, k, v, layout, block_size, scale, causal)
    mask = layout_mask(layout, block_size, q.shape[2], k.shape[2], causal)
    return scaled_dot_product_attention(q, k, v, mask=get_xp(q.data).asarray(mask), scale=scale)


