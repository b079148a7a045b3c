"""Gradient-check cases of chapter 55 (key ``armt``), in float64.

The associative write (both formulations), its normalizer gain and read; one segment step of
each model as a function of its input, its memory and every parameter. Registered when
:func:`minimem.chapters.load_cases` imports this module.
"""
from __future__ import annotations

from ...autograd.gradcheck import leaf
from ...autograd.registry import register
from ...nn.cases import perturbed
from ...nn.module import Module, functional_call
from .associative import (
    associative_read,
    associative_write,
    associative_write_reference,
    normalizer_gain,
)
from .feedback import TransformerFAM
from .gated import LM2, CachedTransformer, GatedRecurrentCache
from .layers import ARMT

_case = {}  # the module of each case, built by its make_inputs
B, N, D_PHI, D_V = 2, 3, 6, 4


def _write_inputs(rng):
    # keys and normalizer positive (DPFP features are), z small so that gamma stays inside
    # (0, 1), away from the clip's kinks
    return (leaf(rng, B, D_PHI, D_V), leaf(rng, B, D_PHI, between=(0.05, 0.3)),
            leaf(rng, B, N, D_PHI, between=(0.1, 1.0)), leaf(rng, B, N, D_V),
            leaf(rng, B, N, between=(0.1, 0.9)))


register("normalizer_gain", lambda r: _write_inputs(r)[1:3], chapter="armt")(normalizer_gain)
register("associative_write (matrix form)", _write_inputs, chapter="armt")(
    lambda A, z, k, v, b: associative_write(A, z, k, v, b))
register("associative_write_reference (per pair)", _write_inputs, chapter="armt")(
    lambda A, z, k, v, b: associative_write_reference(A, z, k, v, b))
register("associative_read",
         lambda r: (leaf(r, B, D_PHI, D_V), leaf(r, B, D_PHI, between=(0.1, 1.0)),
                    leaf(r, B, 5, D_PHI, between=(0.1, 1.0))), chapter="armt")(associative_read)


class _Stepper(Module):
    """``model.step`` as ``forward``, the memory given flat (so every leaf is an input)."""

    def __init__(self, model, pack):
        super().__init__()
        self.model, self.pack = model, pack

    def forward(self, x, *memory):
        logits, new = self.model.step(x, self.pack(memory))
        return (logits, *_flat(new))


def _flat(memory):
    if isinstance(memory, tuple):
        return [t for m in memory for t in _flat(m)]
    return [memory]


def _model_inputs(key, model, rng, x_shape, memory_shapes, positive=()):
    _case[key] = perturbed(model, rng)
    memory = [leaf(rng, *s, between=(0.05, 0.3)) if i in positive else leaf(rng, *s)
              for i, s in enumerate(memory_shapes)]
    return (leaf(rng, *x_shape), *memory, *_case[key].parameters())


def _step_case(key, n_memory, pack):
    def fn(x, *rest):
        memory, params = rest[:n_memory], rest[n_memory:]
        return functional_call(_Stepper(_case[key], pack), params, x, *memory)
    return fn


# ARMT with d_model 4, 1 layer, 2 memory tokens, d_key 2 (d_phi = 2 * 2 * 3 = 12)
register("ARMT step (logits, tokens, A, z)",
         lambda r: _model_inputs("armt", ARMT(5, 4, 1, 2, 2, 3, d_key=2, d_ff=6, seed=r), r,
                                 (1, 3, 4), [(1, 2, 4), (1, 12, 4), (1, 12)], positive=(2,)),
         chapter="armt", fast=True)(
    _step_case("armt", 3, lambda m: (m[0], ((m[1], m[2]),))))
register("LM2 step (logits, bank)",
         lambda r: _model_inputs("lm2", LM2(5, 4, 1, 2, 2, 3, d_ff=6, seed=r), r, (1, 3, 4),
                                 [(1, 2, 4)]),
         chapter="armt", fast=True)(_step_case("lm2", 1, lambda m: m[0]))
register("CachedTransformer step (logits, cache)",
         lambda r: _model_inputs("cached", CachedTransformer(5, 4, 1, 2, 2, 3, d_ff=6, seed=r),
                                 r, (1, 3, 4), [(1, 2, 4)]),
         chapter="armt", fast=True)(_step_case("cached", 1, lambda m: tuple(m)))
register("TransformerFAM step (logits, FAM)",
         lambda r: _model_inputs("fam", TransformerFAM(5, 4, 1, 2, 2, 3, d_ff=6, seed=r), r,
                                 (1, 3, 4), [(1, 2, 4)]),
         chapter="armt", fast=True)(_step_case("fam", 1, lambda m: tuple(m)))
def _grc_inputs(rng):
    _case["grc"] = perturbed(GatedRecurrentCache(4, 2, seed=rng), rng)
    return (leaf(rng, 2, 2, 4), leaf(rng, 2, 3, 4), *_case["grc"].parameters())


register("GatedRecurrentCache update", _grc_inputs, chapter="armt")(
    lambda c, x, *p: functional_call(_case["grc"], p, c, x))
