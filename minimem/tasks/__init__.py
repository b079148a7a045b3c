"""Synthetic tasks that probe memory: seeded generators of ``(inputs, targets)``.

Each returns two int64 NumPy arrays of shape ``(n_examples, seq_len)``. Next-token convention:
``targets[b, t]`` is what a causal model should output after reading ``inputs[b, :t+1]``;
``-100`` (``IGNORE``, ``cross_entropy``'s ``ignore_index``) marks positions without a loss.
"""
from __future__ import annotations

import numpy as np

from ._common import IGNORE  # noqa: F401
from .recall import induction_heads, mqar, passkey  # noqa: F401
from .sequence import copy_task, reverse_task  # noqa: F401
from .state_tracking import (modular_counting, parity, permutation_word,  # noqa: F401
                             permutations)
from .segments import (associative_retrieval, facts_in_noise, facts_vocab,  # noqa: F401
                       retrieval_vocab)

TASKS = {"mqar": mqar, "copy": copy_task, "reverse": reverse_task, "passkey": passkey,
         "induction_heads": induction_heads}


def format_example(inputs, targets, index=0, start=0, stop=None):
    """A text table of one example: rows ``pos``, ``input``, ``target`` (``.`` for -100)."""
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    if inputs.ndim != 2 or inputs.shape != targets.shape:
        raise ValueError(f"format_example: inputs and targets must be 2-D of the same shape, "
                         f"got {inputs.shape} and {targets.shape}")
    if not 0 <= index < inputs.shape[0]:
        raise ValueError(f"format_example: index must be in [0, {inputs.shape[0]}), got {index}")
    cols = range(start, inputs.shape[1] if stop is None else min(stop, inputs.shape[1]))
    rows = [("pos", [str(t) for t in cols]),
            ("input", [str(inputs[index, t]) for t in cols]),
            ("target", ["." if targets[index, t] == IGNORE else str(targets[index, t])
                        for t in cols])]
    w = max(len(c) for _, cells in rows for c in cells)
    return "\n".join(f"{name:>6s} | " + " ".join(c.rjust(w) for c in cells)
                     for name, cells in rows)
