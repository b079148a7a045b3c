"""ring_attention on real MPI processes (mpiexec of the distributed extra) = dense attention."""
import pytest

from minimem.memory.reduction.ring_mpi import have_mpi, launch_ring, launch_ring_sweep

pytestmark = pytest.mark.skipif(
    not have_mpi(), reason="the distributed extra (mpi4py + an MPI) is not installed: "
                           "pip install 'minimem[distributed]' (make test installs it)")


def test_ring_attention_on_2_and_4_processes_equals_dense_forward_and_backward():
    # one mpiexec of 4 ranks: P = 2 on its first two ranks, then P = 4; causal and not
    reports = launch_ring_sweep((2, 4), per_process=6, heads=2, dim=8, causal="both",
                                batch=2, seed=3)
    assert [(r["processes"], r["causal"], r["seq_len"]) for r in reports] == \
        [(2, True, 12), (2, False, 12), (4, True, 24), (4, False, 24)]
    for rep in reports:
        assert set(rep["max_diff"]) == {"output", "dq", "dk", "dv"}
        for name, gap in rep["max_diff"].items():
            assert gap <= 1e-12, (rep["processes"], rep["causal"], name, gap)
        assert len(rep["peak_bytes"]) == rep["processes"]
        assert all(p > 0 for p in rep["peak_bytes"])


def test_launchers_check_their_arguments():
    with pytest.raises(ValueError, match="launch_ring: seq_len = 10 must be divisible by "
                                         "processes = 4"):
        launch_ring(4, 10)
    with pytest.raises(ValueError, match="launch_ring: dtype must be one of"):
        launch_ring(2, 8, dtype="float16")
    with pytest.raises(ValueError, match="launch_ring: timeout must be"):
        launch_ring(2, 8, timeout=0)
    with pytest.raises(TypeError, match="launch_ring_sweep: causal must be True or False"):
        launch_ring_sweep((2,), causal="yes")
