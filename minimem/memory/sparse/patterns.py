r"""Sparse attention patterns: boolean masks ``(T, T)`` and block layouts ``(T/b, T/b)``.

A mask :math:`M` has :math:`M_{ij} = 1` when query i may attend to key j. The patterns
(query i, key j; all 0-based):

* ``causal`` (dense): :math:`j \le i` — row i has :math:`i + 1` keys.
* ``local`` (window ``w``): :math:`0 \le i - j < w` — row i has :math:`\min(i + 1, w)` keys.
* ``strided`` (Child et al. 2019, stride ``l``), the union of two heads
  :math:`A^{(1)} = \{j : 0 \le i - j < l\}` and
  :math:`A^{(2)} = \{j \le i : (i - j) \bmod l = 0\}`. The paper writes
  :math:`A^{(1)} = \{\max(0, i - l), \dots, i\}`, which has :math:`l + 1` keys; we use
  :math:`l` keys so that the window ends where the stride takes over. Row i has
  :math:`\min(i + 1, l) + \lfloor i / l \rfloor` keys.
* ``fixed`` (Child et al. 2019, block length ``l``, summary size ``c``):
  :math:`A^{(1)} = \{j \le i : \lfloor j / l \rfloor = \lfloor i / l \rfloor\}` (your own block)
  and :math:`A^{(2)} = \{j \le i : j \bmod l \ge l - c\}` (the last c positions of every block).
  Row i has :math:`(i \bmod l) + 1 + c \lfloor i / l \rfloor` keys.
* ``longformer`` (Beltagy et al. 2020, window radius ``w``, ``global_tokens``), symmetric:
  :math:`|i - j| \le w`, or i or j is a global token.
* ``bigbird`` (Zaheer et al. 2020) on a grid of blocks: window radius ``w`` blocks, the first
  ``g`` blocks global (rows and columns), and ``r`` random extra blocks per block row
  (drawn with ``seed``); not symmetric, not causal. ``sparse_mask("bigbird", T, block=b, ...)``
  expands the block pattern to tokens.

A block layout is the same rule applied to the grid of blocks (``l``, ``c``, ``w`` counted in
blocks): :func:`block_layout` ``(kind, n_blocks)`` = :func:`sparse_mask` ``(kind, n_blocks)``.
For ``strided`` and ``fixed`` the default ``l`` is :math:`\lceil\sqrt{T}\rceil`, so a row has
:math:`O(\sqrt T)` keys and the pattern :math:`O(T\sqrt T)` pairs.
"""
from __future__ import annotations

import math

import numpy as np

from ...checks import check_int

KINDS = ("causal", "local", "strided", "fixed", "longformer", "bigbird")


def _grid(T):
    i = np.arange(T)[:, None]
    j = np.arange(T)[None, :]
    return i, j


def strided_mask(T, l):
    """Strided pattern: previous ``l`` positions (self included) and every l-th one before."""
    T = check_int("strided_mask", "T", T, low=1)
    l = check_int("strided_mask", "l", l, low=1)
    i, j = _grid(T)
    # Exercise 40.1 (2 pt): the strided mask (Child et al. 2019): True where 0 <= i - j < l, or
    #   j <= i and (i - j) is a multiple of l. Return a boolean (T, T) array named `mask`.
    ### BEGIN SOLUTION
    d = i - j
    mask = (d >= 0) & ((d < l) | (d % l == 0))
    ### END SOLUTION
    return mask


def fixed_mask(T, l, c):
    """Fixed pattern: your own block of length ``l`` and the last ``c`` positions of every block."""
    T = check_int("fixed_mask", "T", T, low=1)
    l = check_int("fixed_mask", "l", l, low=1)
    c = check_int("fixed_mask", "c", c, low=0)
    if c > l:
        raise ValueError(f"fixed_mask: c must be <= l, got c={c}, l={l}")
    i, j = _grid(T)
    # Exercise 40.2 (2 pt): the fixed mask (Child et al. 2019): True where j <= i and either j
    #   is in the same block of length l as i, or j is among the last c positions of its block.
    ### BEGIN SOLUTION
    same_block = (i // l) == (j // l)
    summary = (j % l) >= (l - c)
    mask = (j <= i) & (same_block | summary)
    ### END SOLUTION
    return mask


def factorized_masks(kind, T, **params):
    """The two heads (A1, A2) whose union is the ``strided`` or ``fixed`` pattern."""
    i, j = _grid(check_int("factorized_masks", "T", T, low=1))
    l = _default_l(T, params.get("l"), "factorized_masks")
    if kind == "strided":
        d = i - j
        return (d >= 0) & (d < l), (d >= 0) & (d % l == 0)
    if kind == "fixed":
        c = check_int("factorized_masks", "c", params.get("c", max(1, l // 8)), low=0)
        return (j <= i) & (i // l == j // l), (j <= i) & (j % l >= l - c)
    raise ValueError(f"factorized_masks: kind must be 'strided' or 'fixed', got {kind!r}")


def _default_l(T, l, fn):
    return math.isqrt(T - 1) + 1 if l is None else check_int(fn, "l", l, low=1)


def _bigbird_blocks(n, w, g, r, seed):
    I, J = _grid(n)
    layout = (np.abs(I - J) <= w) | (I < g) | (J < g)
    rng = np.random.default_rng(seed)
    for row in range(g, n):
        free = np.flatnonzero(~layout[row])
        if r and free.size:
            layout[row, rng.choice(free, size=min(r, free.size), replace=False)] = True
    return layout


_PARAMS = {
    "causal": set(), "local": {"w"}, "strided": {"l"}, "fixed": {"l", "c"},
    "longformer": {"w", "global_tokens"}, "bigbird": {"w", "g", "r", "seed", "block"},
}


def sparse_mask(kind, T, **params):
    """Boolean (T, T) mask of a pattern (see the module docstring for each rule and its keys).

    ``local``: ``w`` (default 3); ``strided``: ``l`` (default ceil(sqrt T)); ``fixed``: ``l``,
    ``c`` (default max(1, l // 8)); ``longformer``: ``w`` (default 1), ``global_tokens``
    (default (0,)); ``bigbird``: ``block`` (default 1), ``w`` (1), ``g`` (1), ``r`` (1),
    ``seed`` (0).
    """
    if kind not in _PARAMS:
        raise ValueError(f"sparse_mask: kind must be one of {KINDS}, got {kind!r}")
    extra = set(params) - _PARAMS[kind]
    if extra:
        raise TypeError(f"sparse_mask: unexpected parameter(s) {sorted(extra)} for kind "
                        f"{kind!r}; it takes {sorted(_PARAMS[kind]) or 'none'}")
    T = check_int("sparse_mask", "T", T, low=1)
    i, j = _grid(T)
    if kind == "causal":
        return j <= i
    if kind == "local":
        w = check_int("sparse_mask", "w", params.get("w", 3), low=1)
        return (i - j >= 0) & (i - j < w)
    if kind == "strided":
        return strided_mask(T, _default_l(T, params.get("l"), "sparse_mask"))
    if kind == "fixed":
        l = _default_l(T, params.get("l"), "sparse_mask")
        return fixed_mask(T, l, params.get("c", max(1, l // 8)))
    if kind == "longformer":
        w = check_int("sparse_mask", "w", params.get("w", 1), low=0)
        g = np.asarray(params.get("global_tokens", (0,)), dtype=np.int64).reshape(-1)
        if g.size and (g.min() < 0 or g.max() >= T):
            raise ValueError(f"sparse_mask: global_tokens must lie in [0, {T}), got {g.tolist()}")
        is_global = np.zeros(T, dtype=bool)
        is_global[g] = True
        return (np.abs(i - j) <= w) | is_global[:, None] | is_global[None, :]
    block = check_int("sparse_mask", "block", params.get("block", 1), low=1)
    n = -(-T // block)
    layout = _bigbird_blocks(n, check_int("sparse_mask", "w", params.get("w", 1), low=0),
                             check_int("sparse_mask", "g", params.get("g", 1), low=0),
                             check_int("sparse_mask", "r", params.get("r", 1), low=0),
                             params.get("seed", 0))
    return expand_layout(layout, block, T, causal=False)


def block_layout(kind, n_blocks, **params):
    """Boolean (n_blocks, n_blocks) layout: the pattern on a grid of blocks (sizes in blocks)."""
    n_blocks = check_int("block_layout", "n_blocks", n_blocks, low=1)
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"block_layout: kind must be one of {KINDS}, got {kind!r}")
    if kind == "bigbird" and "block" in params:
        raise TypeError("block_layout: 'block' is not a parameter of a block layout")
    return sparse_mask(kind, n_blocks, **params)


def expand_layout(layout, block_size, T, causal=False):
    """The token mask (T, T) of a block layout, with ``j <= i`` on top when ``causal``."""
    layout = np.asarray(layout)
    if layout.dtype != bool or layout.ndim != 2:
        raise TypeError(f"expand_layout: layout must be a 2-D boolean array, got "
                        f"{layout.dtype} of shape {layout.shape}")
    block_size = check_int("expand_layout", "block_size", block_size, low=1)
    T = check_int("expand_layout", "T", T, low=1)
    n = -(-T // block_size)
    if layout.shape != (n, n):
        raise ValueError(f"expand_layout: layout must be ({n}, {n}) for T={T} and block_size="
                         f"{block_size}, got {layout.shape}")
    blk = np.arange(T) // block_size
    mask = layout[blk[:, None], blk[None, :]]
    return mask & (np.arange(T)[None, :] <= np.arange(T)[:, None]) if causal else mask


def mask_to_layout(mask, block_size):
    """The coarsest layout covering ``mask``: block (I, J) is kept if any of its pairs is."""
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        raise TypeError(f"mask_to_layout: mask must be a square (T, T) boolean array, got "
                        f"{mask.dtype} of shape {mask.shape}")
    block_size = check_int("mask_to_layout", "block_size", block_size, low=1)
    T = mask.shape[0]
    n = -(-T // block_size)
    padded = np.zeros((n * block_size, n * block_size), dtype=bool)
    padded[:T, :T] = mask
    return padded.reshape(n, block_size, n, block_size).any(axis=(1, 3))


def density(mask):
    """Fraction of the (T, S) pairs the mask keeps."""
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"density: mask must be boolean, got {mask.dtype}")
    return float(mask.mean())


def attended_pairs(kind, T, **params):
    """Number of (query, key) pairs the pattern keeps at length T."""
    return int(sparse_mask(kind, T, **params).sum())


def strided_pair_count(T, l):
    """The number of (query, key) pairs of ``strided_mask(T, l)``, in O(1) for any T (a
    length of 10^15 tokens has no mask to count)."""
    T = check_int("strided_pair_count", "T", T, low=1)
    l = check_int("strided_pair_count", "l", l, low=1)
    # Exercise 40.5 (2 pt): derive the closed form of the total, the sum over rows i < T of
    #   min(i + 1, l) + floor(i / l) (the row counts in the module docstring), without a loop
    #   over rows, and return it as an int named `pairs` (exact for T up to 10^15 and beyond).
    ### BEGIN SOLUTION
    m = min(T, l)  # rows i < l: i + 1 keys in the window; rows after: l each
    window = m * (m + 1) // 2 + (T - m) * l
    q, r = divmod(T, l)  # floor(i / l) = k for l rows each, k < q, then q for r rows
    pairs = window + l * q * (q - 1) // 2 + q * r
    ### END SOLUTION
    return int(pairs)


def reachability(mask, hops=2):
    """Boolean (T, T): i reaches j through at most ``hops`` steps of the mask (i -> k -> ... -> j).

    Stacking ``hops`` attention layers with this pattern lets information flow from j to i
    exactly where this is True.
    """
    mask = np.asarray(mask, dtype=bool)
    hops = check_int("reachability", "hops", hops, low=1)
    a = mask.astype(np.int64)
    reach = mask.copy()
    step = mask.copy()
    for _ in range(hops - 1):
        step = (step.astype(np.int64) @ a) > 0
        reach |= step
    return reach
