"""The serial/parallel twin policy of ``minimem.kernels._jit``, checked on every kernel file."""
import importlib
import inspect
import pkgutil

import numba
import pytest

import minimem.kernels
from minimem.kernels import _jit


def _kernel_modules():
    return [importlib.import_module(f"minimem.kernels.{m.name}")
            for m in pkgutil.iter_modules(minimem.kernels.__path__)]


def _twins():
    for module in _kernel_modules():
        for name, serial in vars(module).items():
            if name.endswith("_serial") and getattr(serial, "__module__", None) == \
                    module.__name__:
                yield module, name[:-len("_serial")], serial


def _arguments(kernel):
    return list(inspect.signature(getattr(kernel, "py_func", kernel)).parameters)


def test_every_serial_twin_has_a_parallel_twin_with_the_same_arguments():
    pairs = list(_twins())
    assert len(pairs) >= 9  # the discovery works (topk, product_topk, sparse_rows, ...)
    for module, stem, serial in pairs:
        parallel = getattr(module, stem + "_parallel")
        extra = _arguments(parallel)[len(_arguments(serial)):]
        assert _arguments(parallel)[:len(_arguments(serial))] == _arguments(serial) and \
            extra in ([], ["n_threads"]), f"{module.__name__}.{stem}: twins' arguments differ"
        if hasattr(serial, "targetoptions"):  # compiled (not NUMBA_DISABLE_JIT=1)
            assert not serial.targetoptions.get("parallel", False)
            assert parallel.targetoptions.get("parallel", False)


def test_jit_refuses_to_compile_one_function_both_ways(monkeypatch):
    monkeypatch.setattr(_jit, "_BUILDS", {})

    def body(x):
        return x + 1

    _jit.jit(body)
    _jit.jit(body)  # the same build again (a module reload) is fine
    with pytest.raises(TypeError, match=r"jit: .*body is already compiled with parallel=False"
                                        r".*numba issue 6845"):
        _jit.jit(parallel=True)(body)


def test_pick_kernel_switches_at_the_work_threshold(monkeypatch):
    monkeypatch.setattr(_jit, "PARALLEL_MIN_WORK", 100)
    assert _jit.pick_kernel("s", "p", 99) == "s"
    assert _jit.pick_kernel("s", "p", 100) == "p"
    per_thread = _jit.pick_kernel("s", lambda a, n_threads: (a, n_threads), 100, per_thread=True)
    assert per_thread("a") == ("a", numba.get_num_threads())
    assert _jit.pick_kernel("s", "p", 99, per_thread=True) == "s"

