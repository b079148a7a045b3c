r"""Tasks read segment by segment: associative retrieval across segments, facts in noise.

Each generator returns a list of segments, each a pair ``(x, y)`` of int64 arrays (B, L): the
tokens of the segment and the targets (``-100``, ``IGNORE``, where no loss is taken), the
format of chapter 50's segment loop (:func:`minimem.memory.segment.lab.train_through_time`).

**Associative retrieval across segments** (:func:`associative_retrieval`). ``n_pairs``
key-value pairs :math:`(k_1, v_1), \dots, (k_n, v_n)` (distinct keys) are written
``pairs_per_segment`` to a segment, :math:`\lceil n / p \rceil` write segments of
:math:`L = 2p` tokens ``k v k v ...`` (a last, partial one padded with the filler token); then
``n_gap`` filler segments; then one query segment ``k_{\pi(1)} . k_{\pi(2)} . ...`` with
``n_queries`` of the written keys, the target at a query being its value (the query segment
has :math:`\max(L, 2 \cdot n_{queries})` tokens, so that every written key can be asked at
once). The number of pairs is the knob of capacity; ``n_gap`` the one of distance.

**Facts in noise** (BABILong-style, Kuratov et al. 2024, :func:`facts_in_noise`).
``n_segments - 1`` segments of filler tokens hide ``n_facts`` facts "entity place" (two tokens
at a random even position of a random segment); an entity may move several times. The last
segment asks ``? e`` for distinct entities that were mentioned; the target at ``e`` is the
place of the entity's *latest* fact (a later fact overwrites an earlier one).
"""
from __future__ import annotations

import numpy as np

from ._common import IGNORE, check_int, make_rng, sample_distinct

BLANK, FILLER = 0, 1  # the query's blank and the padding/filler token of retrieval
FIRST_KEY = 2


def associative_retrieval(n_pairs, batch, seed=0, pairs_per_segment=4, n_gap=0, n_keys=16,
                          n_values=16, n_queries=None):
    """Key-value pairs written over the first segments, queried in the last (module docstring).

    Tokens: 0 blank, 1 filler, keys ``2 .. 2 + n_keys - 1``, values the next ``n_values``
    (vocabulary :func:`retrieval_vocab`). Returns the segments ``[(x, y), ...]``, each (B, L)
    with L = 2 * pairs_per_segment; ``n_queries`` (default min(n_pairs, pairs_per_segment), at
    most n_pairs) distinct written keys are asked, in a random order, in a last segment of
    max(L, 2 * n_queries) tokens. Chance accuracy is 1 / n_values.
    """
    fn = "associative_retrieval"
    n = check_int(fn, "n_pairs", n_pairs, 1)
    B = check_int(fn, "batch", batch, 1)
    p = check_int(fn, "pairs_per_segment", pairs_per_segment, 1)
    check_int(fn, "n_gap", n_gap, 0)
    K = check_int(fn, "n_keys", n_keys, 1)
    V = check_int(fn, "n_values", n_values, 2)
    if n > K:
        raise ValueError(f"{fn}: n_pairs must be <= n_keys={K} (distinct keys), got {n}")
    nq = min(n, p) if n_queries is None else check_int(fn, "n_queries", n_queries, 1)
    if nq > n:
        raise ValueError(f"{fn}: n_queries must be <= n_pairs = {n} (distinct written keys), "
                         f"got {nq}")
    rng = make_rng(fn, seed)
    L = 2 * p
    keys = sample_distinct(rng, FIRST_KEY, FIRST_KEY + K, B, n)
    values = rng.integers(FIRST_KEY + K, FIRST_KEY + K + V, size=(B, n))
    blank_targets = np.full((B, L), IGNORE, dtype=np.int64)
    segments = []
    for start in range(0, n, p):
        x = np.full((B, L), FILLER, dtype=np.int64)
        stop = min(start + p, n)
        x[:, 0:2 * (stop - start):2] = keys[:, start:stop]
        x[:, 1:2 * (stop - start):2] = values[:, start:stop]
        segments.append((x, blank_targets.copy()))
    for _ in range(n_gap):
        segments.append((np.full((B, L), FILLER, dtype=np.int64), blank_targets.copy()))
    asked = np.argsort(rng.random((B, n)), axis=1)[:, :nq]
    L_query = max(L, 2 * nq)
    x = np.full((B, L_query), BLANK, dtype=np.int64)
    y = np.full((B, L_query), IGNORE, dtype=np.int64)
    x[:, 0:2 * nq:2] = np.take_along_axis(keys, asked, axis=1)
    y[:, 0:2 * nq:2] = np.take_along_axis(values, asked, axis=1)
    segments.append((x, y))
    return segments


def retrieval_vocab(n_keys=16, n_values=16):
    """The vocabulary size :func:`associative_retrieval` needs: 2 + n_keys + n_values."""
    return FIRST_KEY + check_int("retrieval_vocab", "n_keys", n_keys, 1) + \
        check_int("retrieval_vocab", "n_values", n_values, 2)


QUESTION, FIRST_ENTITY = 1, 2  # "?" in facts_in_noise; entities, then places, then filler


def facts_vocab(n_entities=4, n_places=4, n_noise=8):
    """The vocabulary size of :func:`facts_in_noise`: 2 + n_entities + n_places + n_noise."""
    fn = "facts_vocab"
    return FIRST_ENTITY + check_int(fn, "n_entities", n_entities, 1) + check_int(
        fn, "n_places", n_places, 2) + check_int(fn, "n_noise", n_noise, 1)


def facts_in_noise(n_facts, n_segments, seg_len, batch, seed=0, n_entities=4, n_places=4,
                   n_noise=8, n_questions=1):
    """Facts "entity place" hidden in filler; questions about the latest place at the end.

    Tokens: 0 blank, 1 question mark, entities ``2 ..``, places after them, then ``n_noise``
    filler tokens (vocabulary :func:`facts_vocab`). Facts go to random even positions of the
    first ``n_segments - 1`` segments (distinct positions); the last segment is
    ``? e_1 ? e_2 ...`` (blanks after), the target at ``e_j`` the place of e_j's latest fact.
    Chance accuracy is 1 / n_places.
    """
    fn = "facts_in_noise"
    F = check_int(fn, "n_facts", n_facts, 1)
    S = check_int(fn, "n_segments", n_segments, 2)
    L = check_int(fn, "seg_len", seg_len, 2)
    B = check_int(fn, "batch", batch, 1)
    E = check_int(fn, "n_entities", n_entities, 1)
    P = check_int(fn, "n_places", n_places, 2)
    N = check_int(fn, "n_noise", n_noise, 1)
    Q = check_int(fn, "n_questions", n_questions, 1)
    slots = (S - 1) * (L // 2)
    if F > slots:
        raise ValueError(f"{fn}: n_facts must be <= (n_segments - 1) * (seg_len // 2) = {slots} "
                         f"(two tokens each, in the segments before the question), got {F}")
    if Q > min(F, E) or 2 * Q > L:
        raise ValueError(f"{fn}: n_questions must be <= min(n_facts, n_entities, seg_len // 2) "
                         f"= {min(F, E, L // 2)}, got {Q}")
    rng = make_rng(fn, seed)
    first_place, first_noise = FIRST_ENTITY + E, FIRST_ENTITY + E + P
    stream = rng.integers(first_noise, first_noise + N, size=(B, (S - 1) * L))
    where = np.sort(sample_distinct(rng, 0, slots, B, F), axis=1) * 2   # in reading order
    who = rng.integers(0, E, size=(B, F))
    # the first Q facts are about Q distinct entities, so every question has an answer
    who[:, :Q] = sample_distinct(rng, 0, E, B, Q)
    who = np.take_along_axis(who, np.argsort(rng.random((B, F)), axis=1), axis=1)
    place = rng.integers(0, P, size=(B, F))
    rows = np.arange(B)[:, None]
    stream[rows, where] = FIRST_ENTITY + who
    stream[rows, where + 1] = first_place + place
    latest = np.full((B, E), -1, dtype=np.int64)
    for f in range(F):                        # reading order: a later fact overwrites
        latest[np.arange(B), who[:, f]] = place[:, f]
    mentioned = latest >= 0
    asked = np.argsort(np.where(mentioned, rng.random((B, E)), 2.0), axis=1)[:, :Q]
    x = np.full((B, L), BLANK, dtype=np.int64)
    y = np.full((B, L), IGNORE, dtype=np.int64)
    x[:, 0:2 * Q:2] = QUESTION
    x[:, 1:2 * Q:2] = FIRST_ENTITY + asked
    y[:, 1:2 * Q:2] = first_place + np.take_along_axis(latest, asked, axis=1)
    blank = np.full((B, L), IGNORE, dtype=np.int64)
    segments = [(stream[:, s * L:(s + 1) * L].copy(), blank.copy()) for s in range(S - 1)]
    segments.append((x, y))
    return segments
