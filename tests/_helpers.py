"""Helpers for tests (importable as ``from _helpers import ...``)."""
import numpy as np

import minimem as mm


def leaf(rng, *shape, device="cpu", scale=1.0):
    """A float64 leaf tensor requiring grad, standard normal times ``scale``."""
    return mm.tensor(scale * rng.standard_normal(shape), requires_grad=True, dtype=np.float64,
                     device=device)


def to_np(x):
    """A NumPy array from a Tensor, a CuPy array or anything array-like."""
    if isinstance(x, mm.Tensor):
        return x.numpy()
    return np.asarray(x)
