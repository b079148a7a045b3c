"""The one place where kernels are compiled, so the options stay the same everywhere."""
import numba


def jit(fn=None, *, parallel=False):
    """``numba.njit`` with ``cache=True`` (and ``fastmath=False``: results match NumPy)."""
    def wrap(f):
        return numba.njit(cache=True, parallel=parallel)(f)

    return wrap(fn) if fn is not None else wrap
