r"""TransformerFAM: feedback attention memory, a working memory per layer (Hwang et al. 2024).

Every layer l carries f feedback-memory vectors :math:`F^l_t \in \mathbb{R}^{f \times d}` from
block (segment) t to block t + 1. In layer l of block t the sequence :math:`[F^l_t;\ h^l]`
goes through one pre-norm transformer block whose attention is masked by

.. math:: \mathcal{A}_{ij} = \begin{cases} 1 & i < f \quad\text{(FAM: itself and the block)}
          \\ [\,j < f\ \lor\ f \le j \le i\,] & i \ge f
          \quad\text{(a token: the FAM and the tokens before it)} \end{cases}

and its first f outputs are the layer's feedback memory for the next block,

.. math:: [\,F^l_{t+1};\ h^{l+1}\,] = \mathrm{Block}^l_{\mathcal A}\big([\,F^l_t;\ h^l\,]\big).

Unlike RMT (one memory read at the input, written at the output), the memory of layer l is an
activation of layer l: it feeds back into the same layer, a working memory at every depth.
"""
from __future__ import annotations

import numpy as np

from ... import autograd as ag
from ...autograd import ops
from ...backend import get_default_dtype, get_rng, get_xp
from ...checks import check_int
from ...nn import Embedding, LayerNorm, Linear, ModuleList, Parameter, TransformerBlock
from ..segment.memformer import SegmentRecurrent, _embed
from .gated import check_model_sizes


def fam_mask(n_fam, seg_len, xp=np):
    """Boolean (f + T, f + T), True = query i may attend to key j (module docstring)."""
    f = check_int("fam_mask", "n_fam", n_fam, low=0)
    T = check_int("fam_mask", "seg_len", seg_len, low=0)
    mask = xp.ones((f + T, f + T), dtype=bool)
    mask[f:, f:] = xp.tril(xp.ones((T, T), dtype=bool))
    return mask


class TransformerFAM(SegmentRecurrent):
    """A decoder with ``n_fam`` feedback-memory vectors per layer.

    ``init_memory(batch)``: the learned FAM of each layer, a tuple of (B, f, d);
    ``step(x, fams) -> (logits, new_fams)``."""

    def __init__(self, vocab, d_model, n_layers, n_heads, n_fam, max_len, d_ff=None,
                 seed=None):
        super().__init__()
        for name, v in (("vocab", vocab), ("d_model", d_model), ("n_layers", n_layers),
                        ("n_heads", n_heads), ("n_fam", n_fam), ("max_len", max_len)):
            check_int("TransformerFAM", name, v, low=1)
        check_model_sizes("TransformerFAM", d_model, n_heads, d_ff)
        rng = get_rng(seed)
        self.vocab, self.d_model, self.n_fam, self.max_len = vocab, d_model, n_fam, max_len
        self.tok = Embedding(vocab, d_model, seed=rng, std=0.02)
        self.pos = Embedding(max_len, d_model, seed=rng, std=0.02)
        self.blocks = ModuleList([
            TransformerBlock(d_model, n_heads, d_ff, 0.0, False, layer=i, seed=rng)
            for i in range(n_layers)
        ])
        self.ln_f = LayerNorm(d_model)
        self.head = Linear(d_model, vocab, bias=False, seed=rng)
        init = rng.standard_normal((n_layers, n_fam, d_model)).astype(get_default_dtype())
        self.fam_init = Parameter(init)

    def init_memory(self, batch):
        batch = check_int("TransformerFAM.init_memory", "batch", batch, low=1)
        return tuple(ops.broadcast_to(self.fam_init[l], (batch, self.n_fam, self.d_model))
                     for l in range(len(self.blocks)))

    def step(self, x_segment, memory):
        h = _embed("TransformerFAM", self.tok, self.pos, self.max_len, x_segment)
        B, T, d = h.shape
        f = self.n_fam
        ok = isinstance(memory, tuple) and len(memory) == len(self.blocks) and all(
            isinstance(m, ag.Tensor) and m.shape == (B, f, d) for m in memory)
        if not ok:
            raise ValueError(f"TransformerFAM.step: memory must be a tuple of "
                             f"{len(self.blocks)} FAMs (B={B}, {f}, {d}), got "
                             f"{[getattr(m, 'shape', type(m).__name__) for m in memory] if isinstance(memory, tuple) else type(memory).__name__}")
        mask = fam_mask(f, T, get_xp(h.data))
        new = []
        for block, fam in zip(self.blocks, memory):
            seq = block(ops.concatenate([fam, h], axis=1), mask=mask)
            new.append(seq[:, :f])
            h = seq[:, f:]
        return self.head(self.ln_f(h)), tuple(new)

    def extra_repr(self):
        return f"vocab={self.vocab}, d_model={self.d_model}, n_fam={self.n_fam}"
