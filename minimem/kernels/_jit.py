"""The one place where kernels are compiled, so the options stay the same everywhere."""
import numba


def jit(fn=None, *, parallel=False, reassoc=False):
    """``numba.njit`` with ``cache=True`` and no fast-math (results match NumPy's).

    ``reassoc=True`` allows only re-association of floating-point sums, which lets LLVM
    vectorize a reduction such as a dot product (the order of the partial sums changes, as in
    BLAS); NaN, infinity and signed-zero semantics stay IEEE.
    """
    def wrap(f):
        return numba.njit(cache=True, parallel=parallel,
                          fastmath={"reassoc"} if reassoc else False)(f)

    return wrap(fn) if fn is not None else wrap


PARALLEL_MIN_WORK = 1 << 18  # elements touched; below this one thread is faster


def pick_kernel(serial, parallel, work):
    """The ``prange`` twin of a kernel when ``work`` is large enough to pay the threads' start."""
    return parallel if work >= PARALLEL_MIN_WORK else serial
