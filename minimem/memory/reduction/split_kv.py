r"""Split-KV decoding (flash-decoding, Lean attention): one query, the cache cut into parts.

At a decoding step the single query :math:`q` attends to a cache of :math:`S` keys and values.
Cut the cache into :math:`n` contiguous parts :math:`\mathcal{J}_1, \dots, \mathcal{J}_n`
(sizes differ by at most one), compute each part's partial result
:math:`(m_p, \ell_p, O_p)` independently (in parallel on a GPU: one thread block per part,
which keeps every core busy even with batch 1), and reduce them with the merge
:math:`\oplus` of chapter 40 in a balanced tree:

.. math:: (m, \ell, O) = \bigoplus_{p=1}^{n} (m_p, \ell_p, O_p), \qquad o = O / \ell,

equal to dense decoding :math:`o = \mathrm{softmax}(\tau K^\top q)^\top V` because
:math:`\oplus` is associative.
"""
from __future__ import annotations

import numpy as np

from ...autograd import ops
from ...checks import check_int
from ..sparse import finish_partial, merge_partials, partial_attention
from .prefix import check_qkv, check_scale


def split_bounds(S, n_splits):
    """The (start, stop) of each of ``n_splits`` contiguous parts of S keys."""
    edges = np.linspace(0, S, n_splits + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def tree_reduce(parts):
    """Merge a non-empty list of partials pairwise, level by level (ceil(log2 n) levels)."""
    # Exercise 45.2 (2 pt): reduce the list with merge_partials as a balanced tree: at each
    #   level merge neighbours (0, 1), (2, 3), ...; an odd one out goes up unchanged; stop
    #   when one partial is left and return it.
    # Needs: 40.3
    ### BEGIN SOLUTION
    while len(parts) > 1:
        pairs = [merge_partials(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        parts = pairs + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0]
    ### END SOLUTION


def split_kv_decode(q, k_cache, v_cache, n_splits, scale=None):
    """One decoding step: q (B, H, D_k) over a cache k_cache (B, H, S, D_k), v_cache
    (B, H, S, D_v) cut into ``n_splits`` parts (1 <= n_splits <= S). Returns (B, H, D_v)."""
    fn = "split_kv_decode"
    _, _, S, D = check_qkv(fn, q, k_cache, v_cache, one_query=True,
                           names=("q", "k_cache", "v_cache"), T="S")
    n = check_int(fn, "n_splits", n_splits, low=1, high=max(S, 1))
    if S < 1:
        raise ValueError(f"{fn}: the cache must hold at least one key, got {k_cache.shape}")
    scale = check_scale(fn, scale, D)
    q1 = ops.expand_dims(q, 2)                         # (B, H, 1, D_k)
    parts = [partial_attention(q1, k_cache[:, :, a:b], v_cache[:, :, a:b], None, scale)
             for a, b in split_bounds(S, n)]
    return ops.squeeze(finish_partial(tree_reduce(parts)), 2)
