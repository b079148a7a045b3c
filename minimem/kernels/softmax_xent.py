r"""Fused softmax cross-entropy, forward and backward in one pass over each row.

For logits :math:`z` and target class :math:`y`:
:math:`\ell = \log\sum_j e^{z_j} - z_y` and :math:`\partial\ell/\partial z = \mathrm{softmax}(z) - e_y`.
Rows whose target is ``ignore_index`` get zero loss and zero gradient.
"""
import numpy as np

from ..backend import get_xp
from ..checks import (
    check_array,
    check_dtype,
    check_float_array,
    check_index_bounds,
    check_int,
    check_shape,
)
from ._jit import jit


@jit
def _xent_kernel(logits, targets, ignore_index, losses, grad):
    n, c = logits.shape
    count = 0
    for i in range(n):
        t = targets[i]
        if t == ignore_index:
            continue  # losses and grad rows stay zero
        count += 1
        m = logits[i, 0]
        for j in range(1, c):
            m = max(m, logits[i, j])
        s = 0.0
        for j in range(c):
            e = np.exp(logits[i, j] - m)
            grad[i, j] = e
            s += e
        for j in range(c):
            grad[i, j] /= s
        grad[i, t] -= 1.0
        losses[i] = np.log(s) + (m - logits[i, t])  # m - z_t first: exact, no cancellation
    return count


def _check_xent(fn, logits, targets, ignore_index):
    check_float_array(fn, "logits", logits, ndim=2)
    check_array(fn, "targets", targets)
    check_dtype(fn, "targets", targets, "iu")
    check_shape(fn, "targets", targets, (logits.shape[0],), names="N")
    ignore_index = check_int(fn, "ignore_index", ignore_index)
    counted = targets[targets != ignore_index]
    # before the kernel reads logits[i, t]: a class out of range there reads past the row
    check_index_bounds(fn, "targets (other than ignore_index)", counted, logits.shape[1])
    return ignore_index


def softmax_cross_entropy_reference(logits, targets, ignore_index=-100):
    """NumPy/CuPy twin: (per-row losses, d loss_i / d logits, number of counted rows)."""
    ignore_index = _check_xent("softmax_cross_entropy_reference", logits, targets, ignore_index)
    xp = get_xp(logits)
    valid = targets != ignore_index
    safe_t = xp.where(valid, targets, 0)
    m = logits.max(axis=1, keepdims=True)
    e = xp.exp(logits - m)
    s = e.sum(axis=1, keepdims=True)
    p = e / s
    rows = xp.arange(logits.shape[0])
    losses = (xp.log(s[:, 0]) + (m[:, 0] - logits[rows, safe_t])) * valid
    grad = p
    grad[rows, safe_t] -= 1
    grad *= valid[:, None]
    return losses.astype(logits.dtype), grad.astype(logits.dtype), int(valid.sum())


def softmax_cross_entropy(logits, targets, ignore_index=-100):
    """Per-row losses, their gradient w.r.t. the logits, and the count of non-ignored rows.

    ``logits`` (N, C) float32/float64, ``targets`` (N,) integers in ``[0, C)`` or equal to
    ``ignore_index``."""
    ignore_index = _check_xent("softmax_cross_entropy", logits, targets, ignore_index)
    if get_xp(logits) is not np:
        return softmax_cross_entropy_reference(logits, targets, ignore_index)
    logits = np.ascontiguousarray(logits)
    losses = np.zeros(logits.shape[0], dtype=logits.dtype)
    grad = np.zeros_like(logits)
    count = _xent_kernel(logits, np.ascontiguousarray(targets, dtype=np.int64),
                         int(ignore_index), losses, grad)
    return losses, grad, int(count)
