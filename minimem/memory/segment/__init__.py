r"""Chapter 50: segment-level recurrent memory (the chapter's mechanisms and layers).

* :mod:`.memformer`: Memformer's memory slots, read by cross-attention and written by a
  slot-attention writer, over a shared segment loop.
* :mod:`.mrbp`: memory replay back-propagation (store the memory at segment boundaries,
  replay each segment backward) against plain back-propagation through time.
* :mod:`.recurrent`: the Recurrent Memory Transformer and Transformer-XL's cache.

Experiments (memory/time profiles, tasks across segments, training) are in :mod:`.lab`,
figures in :mod:`.plots`, gradient-check cases in :mod:`.cases`.
"""
from .memformer import (Memformer, MemformerLayer, MemoryWriter, biased_memory_normalization,
    normalized_norm_gradient, slot_write_mask)
from .mrbp import (MRBPStats, bptt, mrbp, random_generators, restore_rng, snapshot_rng,
    store_boundaries)
from .recurrent import (RecurrentMemoryTransformer, TransformerXL, XLAttention, XLBlock,
    xl_attention_mask)

__all__ = [
    "biased_memory_normalization",
    "bptt",
    "Memformer",
    "MemformerLayer",
    "MemoryWriter",
    "mrbp",
    "normalized_norm_gradient",
    "MRBPStats",
    "random_generators",
    "RecurrentMemoryTransformer",
    "restore_rng",
    "slot_write_mask",
    "snapshot_rng",
    "store_boundaries",
    "TransformerXL",
    "xl_attention_mask",
    "XLAttention",
    "XLBlock",
]
