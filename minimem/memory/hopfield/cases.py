"""Gradient-check cases of the Hopfield chapter (key ``hopfield``), in float64.

Registered with the engine's registry when :func:`minimem.chapters.load_cases` imports this
module; ``minimem gradcheck --chapter hopfield`` runs them.
"""
from __future__ import annotations

from ...autograd.gradcheck import leaf
from ...autograd.registry import register
from ...nn.cases import layer_case
from .layers import Hopfield, HopfieldLayer, HopfieldPooling
from .modern import hopfield_energy, hopfield_retrieve, softmax1

register("softmax1", lambda r: (leaf(r, 3, 5),), chapter="hopfield")(softmax1)
register("hopfield_retrieve (2 steps)", lambda r: (leaf(r, 2, 3, 4), leaf(r, 2, 5, 4)),
         chapter="hopfield")(lambda q, y: hopfield_retrieve(q, y, beta=0.7, steps=2))
register("hopfield_retrieve (softmax1)", lambda r: (leaf(r, 3, 4), leaf(r, 5, 4)),
         chapter="hopfield")(lambda q, y: hopfield_retrieve(q, y, beta=1.3, softmax="softmax1"))
register("hopfield_energy", lambda r: (leaf(r, 3, 4), leaf(r, 5, 4)),
         chapter="hopfield")(lambda q, y: hopfield_energy(q, y, beta=0.9))

# The layers: every parameter and the input.
layer_case("Hopfield (1 step, 2 heads)", lambda r: Hopfield(4, 2, seed=r), (1, 3, 4),
           chapter="hopfield")
layer_case("Hopfield (3 steps)", lambda r: Hopfield(4, 1, beta=0.8, update_steps=3, seed=r),
           (2, 3, 4), chapter="hopfield")
layer_case("HopfieldLayer (2 steps)", lambda r: HopfieldLayer(4, 5, 2, update_steps=2, seed=r),
           (2, 3, 4), chapter="hopfield")
layer_case("HopfieldPooling", lambda r: HopfieldPooling(4, 2, 2, seed=r), (2, 5, 4),
           chapter="hopfield")
