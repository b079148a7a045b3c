r"""Recall tasks: multi-query associative recall (MQAR), passkey retrieval, induction heads.

Every generator returns ``(inputs, targets)``, two int64 arrays of shape ``(n_examples,
seq_len)``, next-token style: ``targets[b, t]`` is the token a causal model must output after
reading ``inputs[b, :t+1]``, and ``-100`` (``cross_entropy``'s ``ignore_index``) where no loss
is taken.

**MQAR** (Arora et al., 2023, *Zoology*). With vocabulary size :math:`V`, length :math:`T`
and :math:`n` key-value pairs, an example is

.. math:: \underbrace{k_1\,v_1\,k_2\,v_2 \cdots k_n\,v_n}_{\text{context, } 2n \text{ tokens}}
   \;\underbrace{\cdots\, k_{\pi(1)} \,\cdot\, \cdots \, k_{\pi(n)} \,\cdot\, \cdots}_{\text{queries}}

with distinct keys :math:`k_i \in [1, V/2)`, distinct values :math:`v_i \in [V/2, V)`. The
query region has :math:`S = \lfloor (T - 2n)/2 \rfloor` slots at even offsets
:math:`2n + 2g`; key :math:`k_i` is queried once, at slot :math:`g_i`, the :math:`g_i`
distinct and drawn without replacement with :math:`P(g) \propto a\,(g+1)^{a-1}` (``power_a``
:math:`= a = 0.01`: a power law favouring short gaps). The target at the query position
:math:`2n + 2g_i` is :math:`v_i`; every other position is filler (token 0, or with
``random_fill`` a uniform random token, as in Zoology) with target -100.
"""
from __future__ import annotations

import numbers

import numpy as np

from ._common import IGNORE, check_int, make_rng, sample_distinct, sample_distinct_weighted


def mqar(vocab_size, seq_len, n_kv, n_examples, seed=0, power_a=0.01, random_fill=True):
    """Multi-query associative recall: ``(inputs, targets)`` of shape (n_examples, seq_len).

    Convention: ``inputs[b, t]`` is a queried key exactly where ``targets[b, t]`` is not -100,
    and then ``targets[b, t]`` is the value paired with that key in the context
    ``inputs[b, :2*n_kv]`` (keys at even, values at odd positions). See the module docstring.

    Constraints: ``4*n_kv <= seq_len`` (n_kv distinct query slots after the 2*n_kv context
    tokens), ``vocab_size//2 - 1 >= n_kv`` (distinct keys from [1, vocab_size//2)) and
    ``vocab_size - vocab_size//2 >= n_kv`` (distinct values from [vocab_size//2, vocab_size)).
    """
    fn = "mqar"
    V = check_int(fn, "vocab_size", vocab_size, 4)
    T = check_int(fn, "seq_len", seq_len, 4)
    n = check_int(fn, "n_kv", n_kv, 1)
    N = check_int(fn, "n_examples", n_examples, 1)
    if 4 * n > T:
        raise ValueError(f"{fn}: needs 4*n_kv <= seq_len (2*n_kv context tokens, then n_kv "
                         f"query slots of 2 tokens), got 4*{n} = {4 * n} > seq_len={T}")
    if V // 2 - 1 < n:
        raise ValueError(f"{fn}: vocab too small: n_kv={n} distinct keys come from "
                         f"[1, vocab_size//2) = [1, {V // 2}), so needs vocab_size//2 - 1 >= "
                         f"n_kv, got vocab_size={V}")
    if not (isinstance(power_a, numbers.Real) and 0 < power_a <= 1):
        raise ValueError(f"{fn}: power_a must be in (0, 1], got {power_a!r}")
    rng = make_rng(fn, seed)
    keys = sample_distinct(rng, 1, V // 2, N, n)
    values = sample_distinct(rng, V // 2, V, N, n)
    S = (T - 2 * n) // 2
    g = np.arange(S)
    p = power_a * (g + 1.0) ** (power_a - 1)
    gaps = sample_distinct_weighted(rng, p / p.sum(), N, n)      # slot of key i in the queries

    inputs = np.zeros((N, T), dtype=np.int64)
    if random_fill:
        inputs[:] = rng.integers(0, V, size=(N, T))
    targets = np.full((N, T), IGNORE, dtype=np.int64)
    inputs[:, 0:2 * n:2] = keys
    inputs[:, 1:2 * n:2] = values
    query_pos = 2 * n + 2 * gaps
    np.put_along_axis(inputs, query_pos, keys, axis=1)
    np.put_along_axis(targets, query_pos, values, axis=1)
    return inputs, targets


KEY_MARK, QUERY = 0, 1  # passkey's special tokens


def passkey(vocab_size, seq_len, n_examples, seed=0, key_pos=None):
    """Passkey retrieval: a marked key early, filler, and the query at the very end.

    Tokens: ``0`` marks the key, ``1`` is the query, filler is uniform in [2, vocab_size//2)
    and the passkey uniform in [vocab_size//2, vocab_size). Example b has ``0`` at position
    ``p_b``, the passkey at ``p_b + 1``, and ``1`` at ``seq_len - 1``, whose target is the
    passkey (the only target). ``key_pos``: a fixed ``p`` in [0, seq_len - 3], or None for
    ``p_b`` uniform in the first quarter, [0, (seq_len - 2)//4].

    Constraints: ``seq_len >= 3``; ``vocab_size >= 6`` (two special tokens, then at least one
    filler and one key token).
    """
    fn = "passkey"
    V = check_int(fn, "vocab_size", vocab_size, 1)
    T = check_int(fn, "seq_len", seq_len, 3)
    N = check_int(fn, "n_examples", n_examples, 1)
    if V < 6:
        raise ValueError(f"{fn}: vocab too small: needs vocab_size >= 6 (tokens 0 and 1 are "
                         f"special, filler from [2, vocab_size//2), keys from "
                         f"[vocab_size//2, vocab_size)), got vocab_size={V}")
    rng = make_rng(fn, seed)
    if key_pos is None:
        pos = rng.integers(0, (T - 2) // 4 + 1, size=N)
    else:
        p = check_int(fn, "key_pos", key_pos, 0)
        if p > T - 3:
            raise ValueError(f"{fn}: needs key_pos <= seq_len - 3 (marker, key, ..., query), "
                             f"got key_pos={p}, seq_len={T}")
        pos = np.full(N, p)
    key = rng.integers(V // 2, V, size=N)
    inputs = rng.integers(2, V // 2, size=(N, T)).astype(np.int64)
    rows = np.arange(N)
    inputs[rows, pos] = KEY_MARK
    inputs[rows, pos + 1] = key
    inputs[:, -1] = QUERY
    targets = np.full((N, T), IGNORE, dtype=np.int64)
    targets[:, -1] = key
    return inputs, targets


def induction_heads(vocab_size, seq_len, n_examples, seed=0, n_tokens=None):
    r"""Induction heads: a random segment of distinct tokens, then the same segment again.

    With :math:`L` = ``n_tokens`` (default ``seq_len // 2``) distinct tokens
    :math:`x_1 \dots x_L` uniform from [1, vocab_size), the input is
    :math:`x_1 \dots x_L\, x_1 \dots x_L` (then padding 0 up to ``seq_len``). Each bigram
    :math:`(x_j, x_{j+1})` of the first copy repeats in the second, so in the second copy the
    target at input :math:`x_j` is :math:`x_{j+1}` (:math:`j < L`), found by an induction head:
    attend to the token after the previous occurrence of the current token. Elsewhere -100.

    Constraints: ``2 <= n_tokens``, ``2*n_tokens <= seq_len``, ``vocab_size - 1 >= n_tokens``
    (the tokens of a segment are distinct, so every bigram is unambiguous).
    """
    fn = "induction_heads"
    V = check_int(fn, "vocab_size", vocab_size, 2)
    T = check_int(fn, "seq_len", seq_len, 4)
    N = check_int(fn, "n_examples", n_examples, 1)
    L = T // 2 if n_tokens is None else check_int(fn, "n_tokens", n_tokens, 2)
    if 2 * L > T:
        raise ValueError(f"{fn}: needs 2*n_tokens <= seq_len, got 2*{L} > {T}")
    if V - 1 < L:
        raise ValueError(f"{fn}: vocab too small: n_tokens={L} distinct tokens come from "
                         f"[1, vocab_size), so needs vocab_size - 1 >= n_tokens, "
                         f"got vocab_size={V}")
    rng = make_rng(fn, seed)
    x = sample_distinct(rng, 1, V, N, L)
    inputs = np.zeros((N, T), dtype=np.int64)
    inputs[:, :L] = x
    inputs[:, L:2 * L] = x
    targets = np.full((N, T), IGNORE, dtype=np.int64)
    targets[:, L:2 * L - 1] = x[:, 1:]
    return inputs, targets
