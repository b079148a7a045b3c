"""Gradient-check cases of the segment-recurrence chapter (key ``mrbp``), in float64.

One segment step of each model, as a function of its input, its memory (or cache) and every
parameter. Registered when :func:`minimem.chapters.load_cases` imports this module.
"""
from __future__ import annotations

from ...autograd.gradcheck import leaf
from ...autograd.registry import register
from ...nn.cases import perturbed
from ...nn.module import Module, functional_call
from .memformer import Memformer, MemoryWriter, biased_memory_normalization
from .recurrent import RecurrentMemoryTransformer, TransformerXL

_case = {}  # the module of each case, built by its make_inputs


class _Stepper(Module):
    """Wraps ``model.step`` as ``forward`` so functional_call can swap the parameters."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, memory):
        return self.model.step(x, memory)


class _XLStepper(Module):
    """Transformer-XL's step with its cache kept in the graph (``detach=False``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, cache):
        logits, (new,) = self.model.step(x, (cache,), detach=False)
        return logits, new


def _model_inputs(key, model, rng, x_shape, memory_shape):
    _case[key] = perturbed(model, rng)
    return (leaf(rng, *x_shape), leaf(rng, *memory_shape), *_case[key].parameters())


register("biased_memory_normalization", lambda r: (leaf(r, 2, 3, 4), leaf(r, 3, 4)),
         chapter="mrbp")(biased_memory_normalization)
register("Memformer memory writer",
         lambda r: _model_inputs("writer", MemoryWriter(4, 2, 3, seed=r), r, (1, 3, 4), (1, 2, 4)),
         chapter="mrbp")(lambda m, h, *p: functional_call(_case["writer"], p, m, h))
register("Memformer step (logits, memory)",
         lambda r: _model_inputs("step", Memformer(5, 4, 1, 2, 2, 3, d_ff=6, seed=r), r,
                                 (1, 3, 4), (1, 2, 4)),
         chapter="mrbp", fast=True)(
    lambda x, m, *p: functional_call(_Stepper(_case["step"]), p, x, m))
register("RMT step (logits, memory)",
         lambda r: _model_inputs("rmt", RecurrentMemoryTransformer(5, 4, 1, 2, 2, 3, d_ff=6,
                                                                   seed=r), r,
                                 (1, 3, 4), (1, 2, 4)),
         chapter="mrbp", fast=True)(
    lambda x, m, *p: functional_call(_Stepper(_case["rmt"]), p, x, m))
register("TransformerXL step (with cache)",
         lambda r: _model_inputs("xl", TransformerXL(5, 4, 1, 2, 2, 3, d_ff=6, seed=r), r,
                                 (1, 2, 4), (1, 3, 4)),
         chapter="mrbp", fast=True)(
    lambda x, c, *p: functional_call(_XLStepper(_case["xl"]), p, x, c))
