r"""Chapter 45: attention as a reduction (Aaren, ring attention, blockwise transformers,
split-KV decoding, landmark attention).

Every mechanism here rests on one fact of chapter 40: partial softmax attentions
:math:`(m, \ell, O)` merge exactly and associatively (``minimem.memory.sparse.merge_partials``).

* :mod:`.prefix`: one query over every prefix, as an RNN and as a parallel scan (Aaren).
* :mod:`.ring`: ring attention over MPI processes, and the same schedule simulated.
* :mod:`.split_kv`: one decoding step with the cache split into parts (flash-decoding).
* :mod:`.bpt`: a transformer block computed query block by query block (BPT).
* :mod:`.landmark`: landmark attention's grouped softmax, and top-k block retrieval.
* :mod:`.layers`: ``Aaren`` (a mixer with a learned query), ``LandmarkAttention`` and
  ``LandmarkLM``.

Experiments are in :mod:`.lab`, figures in :mod:`.plots`, gradient-check cases in
:mod:`.cases`; :mod:`.ring_mpi` is the program ``mpiexec`` runs.
"""
from .bpt import blockwise_block
from .landmark import landmark_attention, landmark_decode
from .layers import Aaren, LandmarkAttention, LandmarkLM
from .prefix import prefix_attention
from .ring import causal_block_counts, ring_attention, ring_attention_simulated, ring_schedule
from .split_kv import split_kv_decode

__all__ = [
    "Aaren",
    "blockwise_block",
    "causal_block_counts",
    "landmark_attention",
    "LandmarkAttention",
    "landmark_decode",
    "LandmarkLM",
    "prefix_attention",
    "ring_attention",
    "ring_attention_simulated",
    "ring_schedule",
    "split_kv_decode",
]
