"""The ring schedule and ring_attention_simulated (one process) against dense attention."""
import numpy as np
import pytest

from minimem.autograd import Tensor
from minimem.memory import (
    causal_block_counts,
    ring_attention,
    ring_attention_simulated,
    ring_schedule,
)
from minimem.memory.reduction.ring import DIAGONAL, FULL, SKIP
from minimem.nn import scaled_dot_product_attention


def _grads(fn, arrays, do):
    leaves = [Tensor(a, requires_grad=True) for a in arrays]
    o = fn(*leaves)
    o.backward(Tensor(do))
    return [o.data] + [t.grad.data for t in leaves]


@pytest.mark.parametrize("P", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("causal", [True, False])
def test_simulated_ring_equals_dense_forward_and_backward(P, causal):
    rng = np.random.default_rng(P)
    arrays = [rng.standard_normal((2, 2, 12, 4)) for _ in range(2)] + \
        [rng.standard_normal((2, 2, 12, 3))]
    do = rng.standard_normal((2, 2, 12, 3))
    ring = _grads(lambda q, k, v: ring_attention_simulated(q, k, v, P, causal), arrays, do)
    dense = _grads(lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=causal),
                   arrays, do)
    for a, b in zip(ring, dense):
        assert np.abs(a - b).max() <= 1e-12


def test_schedule_every_device_sees_every_block_once_and_skips_the_future():
    for P in (1, 2, 5):
        held, kind = ring_schedule(P, causal=True)
        for r in range(P):
            assert sorted(held[:, r]) == list(range(P))
            for s in range(P):
                j = held[s, r]
                assert kind[s, r] == (DIAGONAL if j == r else SKIP if j > r else FULL)
        # the block a device holds is the one its left neighbour held a step earlier
        assert (held[1:] == np.roll(held[:-1], 1, axis=1)).all()
        assert (ring_schedule(P, causal=False)[1] == FULL).all()


def test_ring_inputs_are_checked():
    q = Tensor(np.zeros((1, 2, 6, 4)))
    with pytest.raises(ValueError, match="divisible by n_devices = 4"):
        ring_attention_simulated(q, q, q, 4)
    with pytest.raises(ValueError, match=r"ring_attention_simulated: k must have shape"):
        ring_attention_simulated(q, Tensor(np.zeros((1, 2, 6, 3))), q, 2)
    with pytest.raises(TypeError, match="ring_attention_simulated: causal must be True or"):
        ring_attention_simulated(q, q, q, 2, causal=1)
    with pytest.raises(TypeError, match="ring_attention_simulated: q and k and v must have "
                                        "the same dtype"):
        ring_attention_simulated(q, Tensor(np.zeros((1, 2, 6, 4), np.float32)), q, 2)
    with pytest.raises(TypeError, match="ring_attention: comm must be an mpi4py"):
        ring_attention(q, q, q, comm="world")
    with pytest.raises(ValueError, match="ring_schedule: n_devices must be an int >= 1"):
        ring_schedule(0)


@pytest.mark.exercise("45.3", points=2)
def test_causal_block_counts_match_a_count_of_the_schedule():
    for P in (1, 2, 3, 8):
        counts, imbalance = causal_block_counts(P)
        expected = [sum(1 for s in range(P) if (r - s) % P <= r) for r in range(P)]
        assert list(counts) == expected
        assert imbalance == pytest.approx(max(expected) / np.mean(expected))
