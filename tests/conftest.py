"""Shared fixtures: the backends to parametrize over, an rng, the hypothesis profile."""
import os

# Tiny matrices everywhere: BLAS threads only contend (10-100x slower measured on 2 busy cores).
# Set before NumPy loads; notebook kernels started by nbmake inherit it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import minimem as mm
from minimem.chapters import load_cases

load_cases()  # every chapter's gradcheck cases, for the tests that run them

settings.register_profile(
    "ci", deadline=None, derandomize=True, max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def pytest_collection_modifyitems(config, items):
    if mm.cupy_available():
        return
    skip = pytest.mark.skip(reason="CuPy or a CUDA GPU is not available")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=BACKENDS)
def device(request):
    """Run a test on every available device ('cpu', and 'cuda' when CuPy sees a GPU)."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)

