r"""State-tracking tasks: parity, modular counting and the word problem of a small group.

The regular-language tasks of the Chomsky-hierarchy benchmark (Delétang et al. 2023): a
finite automaton solves each, but only a model whose state can *change sign or rotate* does
so at every length. Each example is a random string :math:`x_1 \dots x_T` and, at every
position (``targets="all"``) or only at the last one (``targets="last"``), the state of the
automaton after reading :math:`x_{1..t}`:

* :func:`modular_counting`: bits :math:`x_t \in \{0, 1\}`, target
  :math:`y_t = (\sum_{i \le t} x_i) \bmod m` (counting modulo :math:`m`; the group
  :math:`\mathbb{Z}_m` acting on a cycle);
* :func:`parity`: :func:`modular_counting` with :math:`m = 2`, :math:`y_t = x_1 \oplus \dots
  \oplus x_t`;
* :func:`permutation_word`: tokens :math:`x_t \in \{0..n!-1\}` naming permutations of
  :math:`n` items (:math:`S_3`: 6, :math:`S_5`: 120), target the index of the product
  :math:`x_t \circ \dots \circ x_1` (a non-abelian group: no counting solves it).

The length-generalization protocol trains on short strings and tests on longer ones: the
inputs of different lengths come from the same generator with different ``seq_len``.
Next-token convention of :mod:`minimem.tasks`: ``targets[b, t]`` is the answer after reading
``inputs[b, :t+1]``; ``-100`` marks positions without a loss.
"""
from __future__ import annotations

import itertools

import numpy as np

from ._common import IGNORE, check_int, make_rng

TARGETS = ("all", "last")


def _check_targets(fn, targets):
    if targets not in TARGETS:
        raise ValueError(f"{fn}: targets must be one of {TARGETS}, got {targets!r}")


def _keep(y, targets):
    if targets == "last":
        out = np.full_like(y, IGNORE)
        out[:, -1] = y[:, -1]
        return out
    return y


def modular_counting(n_examples, seq_len, modulus=3, seed=0, targets="all"):
    """Random bits and their running count modulo ``modulus``: ``(inputs, targets)`` int64
    arrays of shape ``(n_examples, seq_len)`` (see the module docstring)."""
    fn = "modular_counting"
    N = check_int(fn, "n_examples", n_examples, 1)
    T = check_int(fn, "seq_len", seq_len, 1)
    m = check_int(fn, "modulus", modulus, 2)
    _check_targets(fn, targets)
    rng = make_rng(fn, seed)
    x = rng.integers(0, 2, size=(N, T)).astype(np.int64)
    return x, _keep(np.cumsum(x, axis=1) % m, targets)


def parity(n_examples, seq_len, seed=0, targets="all"):
    """Random bits and their running parity (:func:`modular_counting` with modulus 2)."""
    fn = "parity"
    check_int(fn, "n_examples", n_examples, 1)
    check_int(fn, "seq_len", seq_len, 1)
    _check_targets(fn, targets)
    return modular_counting(n_examples, seq_len, 2, seed, targets)


def permutations(n):
    """The :math:`n!` permutations of ``range(n)`` in lexicographic order, ``(n!, n)``;
    token ``i`` of :func:`permutation_word` names row ``i``."""
    n = check_int("permutations", "n", n, 1)
    return np.array(list(itertools.permutations(range(n))), dtype=np.int64)


def permutation_word(n_examples, seq_len, n=3, seed=0, targets="all"):
    r"""The word problem of the symmetric group :math:`S_n`: random permutations
    :math:`x_t` and the running product :math:`p_t = x_t \circ p_{t-1}` (:math:`p_0` the
    identity), as token indices into :func:`permutations`."""
    fn = "permutation_word"
    N = check_int(fn, "n_examples", n_examples, 1)
    T = check_int(fn, "seq_len", seq_len, 1)
    n = check_int(fn, "n", n, 2)
    if n > 6:
        raise ValueError(f"{fn}: n must be <= 6 (n! tokens), got {n}")
    _check_targets(fn, targets)
    perms = permutations(n)
    index = {tuple(p): i for i, p in enumerate(perms)}
    rng = make_rng(fn, seed)
    x = rng.integers(0, len(perms), size=(N, T)).astype(np.int64)
    y = np.empty_like(x)
    state = np.tile(np.arange(n), (N, 1))                 # p_0 = identity, per example
    for t in range(T):
        state = np.take_along_axis(perms[x[:, t]], state, axis=1)   # (x_t o p)(i) = x_t[p(i)]
        y[:, t] = [index[tuple(row)] for row in state]
    return x, _keep(y, targets)
