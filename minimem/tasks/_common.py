"""Argument checks and small helpers shared by the task generators."""
from __future__ import annotations

import numbers

import numpy as np

from .. import checks

IGNORE = -100  # the target of a position that takes no loss (cross_entropy's ignore_index)


def check_int(fn, name, value, low=1):
    """``value`` must be a Python/NumPy int >= ``low`` (a size or a count: >= 1 unless said)."""
    return checks.check_int(fn, name, value, low=low)


def make_rng(fn, seed):
    """A fresh generator from an int seed (or the Generator itself)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise TypeError(f"{fn}: seed must be a non-negative int or a numpy Generator, "
                        f"got {seed!r}")
    return np.random.default_rng(int(seed))


def sample_distinct(rng, low, high, n_rows, k):
    """(n_rows, k) ints from ``[low, high)``, distinct within each row, uniformly at random."""
    order = rng.random((n_rows, high - low)).argsort(axis=1)[:, :k]
    return (low + order).astype(np.int64)


def sample_distinct_weighted(rng, p, n_rows, k):
    """(n_rows, k) indices into ``p``, distinct within each row, drawn without replacement
    with probabilities proportional to ``p`` (one draw after another).

    Gumbel-top-k: the k largest of :math:`\\log p_i + G_i` with :math:`G_i` standard Gumbel are
    distributed exactly as k sequential draws without replacement.
    """
    gumbel = rng.gumbel(size=(n_rows, len(p)))
    keys = np.log(p)[None, :] + gumbel
    return np.argsort(-keys, axis=1)[:, :k].astype(np.int64)
