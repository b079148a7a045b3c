r"""Chapter 55: memory that associates across segments (the chapter's mechanisms and layers).

* :mod:`.associative`: ARMT's associative write (the delta rule with a normalizer that counts
  each key once) and its normalized read; a per-pair reference and the matrix form.
* :mod:`.layers`: the Associative Recurrent Memory Transformer on chapter 50's segment loop.
* :mod:`.gated`: LM2's gated memory bank and the Cached Transformer's gated recurrent cache.
* :mod:`.feedback`: TransformerFAM's feedback attention memory (a working memory per layer).

Experiments are in :mod:`.lab`, figures in :mod:`.plots`, gradient-check cases in
:mod:`.cases`.
"""
from .associative import (
    associative_read,
    associative_write,
    associative_write_reference,
    normalizer_gain,
)
from .feedback import TransformerFAM, fam_mask
from .gated import (
    LM2,
    CachedLayer,
    CachedTransformer,
    GatedRecurrentCache,
    LM2Layer,
    LM2MemoryUpdate,
)
from .layers import ARMT, AssociativeMemory

__all__ = [
    "ARMT",
    "LM2",
    "AssociativeMemory",
    "CachedLayer",
    "CachedTransformer",
    "GatedRecurrentCache",
    "LM2Layer",
    "LM2MemoryUpdate",
    "TransformerFAM",
    "associative_read",
    "associative_write",
    "associative_write_reference",
    "fam_mask",
    "normalizer_gain",
]
