"""Indices out of range never reach a Numba kernel: with and without the JIT, the kernels that
index memory reject them with a ValueError (an IndexError too) instead of reading or writing
out of bounds. Each case runs in a child process, so a segfault fails the test instead of
killing the run."""
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import numpy as np
from minimem.kernels.async_sweeps import async_sweeps
from minimem.kernels.softmax_xent import softmax_cross_entropy
from minimem.kernels.weighted_read import gather_weighted_rows
from minimem.kernels.sparse_rows import adam_rows
from minimem.kernels.block_sparse_attention import block_sparse_attention_forward
N = 4
calls = {
    "async_sweeps": lambda: async_sweeps(np.eye(N), np.zeros(N), np.ones(N),
                                         np.array([[0, 1, 2, 10**6]])),
    "softmax_cross_entropy": lambda: softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 10**6])),
    "gather_weighted_rows": lambda: gather_weighted_rows(np.zeros((3, 2)),
                                                         np.array([[0, -10**6]]), np.ones((1, 2))),
    "adam_rows": lambda: adam_rows(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((3, 2)),
                                   np.array([10**6]), np.ones((1, 2)), 1, 1e-3),
    "block_sparse": lambda: block_sparse_attention_forward(
        np.zeros((1, 1, 4, 2)), np.zeros((1, 1, 4, 2)), np.zeros((1, 1, 4, 2)),
        np.ones((1, 8), bool), 4),
}
for name, call in calls.items():
    try:
        call()
    except ValueError as e:
        print(name, "rejected:", e)
    else:
        print(name, "ACCEPTED")
"""


@pytest.mark.parametrize("jit", ["0", "1"], ids=["jit", "no-jit"])
def test_out_of_range_indices_are_rejected_before_the_kernels(jit):
    env = dict(os.environ, NUMBA_DISABLE_JIT=jit, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 5 and all(" rejected: " in line for line in lines), proc.stdout
