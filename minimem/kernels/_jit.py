"""The one place where kernels are compiled, so the options stay the same everywhere.

Serial and parallel twins
-------------------------
Numba's on-disk cache key ignores the ``parallel`` option (numba issue 6845): the cache file
of a function is named by its module, name and line only. One body compiled twice with
``cache=True``, once with ``parallel=True`` and once without, therefore shares one cache entry,
and a later process can load the wrong build (threads where one thread was asked for, or the
reverse). So a kernel that needs both builds is written as two named twins that share one
``@jit`` inner body::

    @jit
    def _x_row(a, out, m):            # the work, written once
        ...

    @jit
    def _x_serial(a, out):            # range
        for m in range(a.shape[0]):
            _x_row(a, out, m)

    @jit(parallel=True)
    def _x_parallel(a, out):          # prange
        for m in prange(a.shape[0]):
            _x_row(a, out, m)

and the caller runs ``pick_kernel(_x_serial, _x_parallel, work)(a, out)``. The twins take the
same arguments, and neither takes one it ignores. One exception, by name: a parallel twin that
splits the work into one block per thread (each block with its own scratch) takes the thread
count as one more, last argument ``n_threads``, which ``pick_kernel(..., per_thread=True)``
supplies. (It cannot ask ``numba.get_num_threads()`` itself: a kernel that does is not
cached.) A kernel that exists in one build only (serial, or ``parallel=True`` only) needs no
twin. :func:`jit` refuses to compile one function both ways, so the mistake cannot come back
unnoticed.
"""
import numba

PARALLEL_MIN_WORK = 1 << 18  # elements touched; below this one thread is faster

# (file, line, name) -> the `parallel` flag it was compiled with: Numba's own cache key
_BUILDS = {}


def _remember_build(f, parallel):
    key = (f.__code__.co_filename, f.__code__.co_firstlineno, f.__qualname__)
    if _BUILDS.setdefault(key, parallel) != parallel:
        raise TypeError(f"jit: {f.__qualname__} is already compiled with parallel="
                        f"{not parallel}; Numba's cache cannot hold both builds (numba issue "
                        f"6845): write a _serial and a _parallel twin (see minimem.kernels._jit)")


def jit(fn=None, *, parallel=False, reassoc=False, numpy_division=False):
    """``numba.njit`` with ``cache=True`` and no fast-math (results match NumPy's).

    ``reassoc=True`` allows only re-association of floating-point sums, which lets LLVM
    vectorize a reduction such as a dot product (the order of the partial sums changes, as in
    BLAS); NaN, infinity and signed-zero semantics stay IEEE. ``numpy_division=True``: a float
    division by zero gives inf or nan, as in NumPy, instead of raising ``ZeroDivisionError``
    (Numba's ``error_model="numpy"``); without the check per element, a loop that divides can
    vectorize.
    """
    def wrap(f):
        _remember_build(f, parallel)
        return numba.njit(cache=True, parallel=parallel,
                          fastmath={"reassoc"} if reassoc else False,
                          error_model="numpy" if numpy_division else "python")(f)

    return wrap(fn) if fn is not None else wrap


def pick_kernel(serial, parallel, work, per_thread=False):
    """The ``prange`` twin of a kernel when ``work`` is large enough to pay the threads' start.

    ``per_thread=True``: the parallel twin takes ``n_threads`` as its last argument, and the
    returned callable passes the current ``numba.get_num_threads()``.
    """
    if work < PARALLEL_MIN_WORK:
        return serial
    if per_thread:
        return lambda *args: parallel(*args, numba.get_num_threads())
    return parallel
