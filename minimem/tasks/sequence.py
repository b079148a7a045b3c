r"""Sequence-to-sequence memory tasks: copy and reverse.

An example holds :math:`L` = ``n_tokens`` random tokens :math:`x_1 \dots x_L` from
[1, vocab_size), the separator ``0``, then the answer :math:`y_1 \dots y_L` fed back one step
late (teacher forcing), padded with 0 up to ``seq_len``:

.. math:: \text{inputs} = x_1 \cdots x_L \; 0 \; y_1 \cdots y_{L-1}, \qquad
   \text{targets} = \underbrace{-100 \cdots -100}_{L} \; y_1 \cdots y_L

so the model must emit :math:`y_1` on reading the separator and :math:`y_{i+1}` on reading
:math:`y_i`. Copy: :math:`y = x`; reverse: :math:`y_i = x_{L+1-i}`.
"""
from __future__ import annotations

import numpy as np

from ._common import IGNORE, check_int, make_rng

SEP = 0


def _seq2seq(fn, vocab_size, seq_len, n_examples, seed, n_tokens, answer):
    V = check_int(fn, "vocab_size", vocab_size, 2)
    T = check_int(fn, "seq_len", seq_len, 2)
    N = check_int(fn, "n_examples", n_examples, 1)
    L = T // 2 if n_tokens is None else check_int(fn, "n_tokens", n_tokens, 1)
    if 2 * L > T:
        raise ValueError(f"{fn}: needs 2*n_tokens <= seq_len (the tokens, the separator and "
                         f"the answer less its last token), got 2*{L} > seq_len={T}")
    rng = make_rng(fn, seed)
    x = rng.integers(1, V, size=(N, L)).astype(np.int64)
    y = answer(x)
    inputs = np.zeros((N, T), dtype=np.int64)
    inputs[:, :L] = x
    inputs[:, L] = SEP
    inputs[:, L + 1:2 * L] = y[:, :-1]
    targets = np.full((N, T), IGNORE, dtype=np.int64)
    targets[:, L:2 * L] = y
    return inputs, targets


def copy_task(vocab_size, seq_len, n_examples, seed=0, n_tokens=None):
    """Copy: read ``n_tokens`` (default ``seq_len//2``) tokens, then repeat them after ``0``.

    Constraints: ``vocab_size >= 2``, ``2*n_tokens <= seq_len``. See the module docstring.
    """
    return _seq2seq("copy_task", vocab_size, seq_len, n_examples, seed, n_tokens,
                    lambda x: x)


def reverse_task(vocab_size, seq_len, n_examples, seed=0, n_tokens=None):
    """Reverse: read ``n_tokens`` (default ``seq_len//2``) tokens, then emit them backwards.

    Constraints: ``vocab_size >= 2``, ``2*n_tokens <= seq_len``. See the module docstring.
    """
    return _seq2seq("reverse_task", vocab_size, seq_len, n_examples, seed, n_tokens,
                    lambda x: x[:, ::-1].copy())
