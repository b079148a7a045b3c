r"""Chapter 25: learning to memorize at test time, Titans and ATLAS (mechanisms and layers).

* :mod:`.neural_memory`: Titans' memory, gradient descent with momentum and decay on
  :math:`\|\mathcal{M}(k_t) - v_t\|^2` at test time, token by token and in chunks (the parallel
  form); its equivalence with the gated delta rule of chapter 20.
* :mod:`.omega`: ATLAS's Omega rule (a window of tokens, polynomial features) and Muon's
  Newton–Schulz step.
* :mod:`.layers`: ``NeuralMemory``, ``SlidingWindowAttention`` (persistent tokens),
  ``TitansMAC``, ``TitansMAG``, ``TitansMAL`` and the LM ``TitansLM``.

Experiments are in :mod:`.lab`, figures in :mod:`.plots`, gradient-check cases in :mod:`.cases`.
"""
from .layers import (NeuralMemory, SlidingWindowAttention, TitansLM, TitansMAC, TitansMAG,
                     TitansMAL, mac_mask, window_mask)
from .neural_memory import (memory_gradient, neural_memory, neural_memory_reference,
                            read_memory, titans_as_gated_delta)
from .omega import newton_schulz, omega_memory, omega_memory_reference

__all__ = [
    "mac_mask",
    "memory_gradient",
    "neural_memory",
    "neural_memory_reference",
    "NeuralMemory",
    "newton_schulz",
    "omega_memory",
    "omega_memory_reference",
    "read_memory",
    "SlidingWindowAttention",
    "titans_as_gated_delta",
    "TitansLM",
    "TitansMAC",
    "TitansMAG",
    "TitansMAL",
    "window_mask",
]
