"""Fixtures shared by the kernel tests."""
from pathlib import Path

import pytest

from minimem.kernels import _jit


@pytest.fixture(params=["serial", "parallel"])
def path(request, monkeypatch):
    """Run a kernel test through both twins (see ``minimem.kernels._jit``): the serial loop,
    then the ``prange`` loop forced by a zero work threshold."""
    if request.param == "parallel":
        monkeypatch.setattr(_jit, "PARALLEL_MIN_WORK", 0)
    return request.param


def pytest_collection_modifyitems(items):
    # A kernel that Numba cannot cache (one that reads a dynamic global, such as a call to
    # numba.get_num_threads() inside it) recompiles in every process, with only a warning:
    # here the warning fails the kernel test that compiled it.
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.filterwarnings("error:Cannot cache compiled function"))
