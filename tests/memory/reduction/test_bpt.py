"""The blockwise transformer block = the plain block; its peak memory grows slower."""
import numpy as np
import pytest

from minimem.autograd import Tensor
from minimem.memory import blockwise_block
from minimem.memory.reduction.bpt import peak_forward_bytes
from minimem.nn import TransformerBlock


@pytest.mark.parametrize("T, qb, kb, causal", [(7, 3, 2, True), (8, 8, 8, True),
                                               (9, 4, 5, False), (1, 2, 2, True)])
def test_blockwise_block_equals_the_plain_block_forward_and_backward(T, qb, kb, causal):
    block = TransformerBlock(8, 2, d_ff=12, causal=causal, seed=0).double()
    x = np.random.default_rng(T).standard_normal((2, T, 8))
    do = np.random.default_rng(1).standard_normal((2, T, 8))
    res = []
    for fn in (block, lambda x: blockwise_block(block, x, qb, kb)):
        block.zero_grad()
        xt = Tensor(x, requires_grad=True)
        y = fn(xt)
        y.backward(Tensor(do))
        res.append([y.data, xt.grad.data] + [p.grad.data.copy() for p in block.parameters()])
    for a, b in zip(*res):
        assert np.abs(a - b).max() <= 1e-12


def test_blockwise_peak_memory_is_below_the_plain_block_and_grows_slower():
    block = TransformerBlock(16, 2, seed=0)
    rng = np.random.default_rng(0)
    peak_forward_bytes(block, Tensor(rng.standard_normal((1, 32, 16)).astype(np.float32)))
    peaks = {}
    for T in (256, 1024):
        x = Tensor(rng.standard_normal((1, T, 16)).astype(np.float32))
        peaks[T] = (peak_forward_bytes(block, x)[0],
                    peak_forward_bytes(lambda x: blockwise_block(block, x, 64, 64), x)[0])
    assert peaks[1024][1] < peaks[1024][0] / 4
    # quadrupling T: the plain peak grows by more than 4x (the T x T scores), blockwise less
    assert peaks[1024][0] / peaks[256][0] > 4 > peaks[1024][1] / peaks[256][1]


def test_blockwise_block_rejects_bad_inputs():
    block = TransformerBlock(8, 2, seed=0)
    x = Tensor(np.zeros((1, 4, 8), np.float32))
    with pytest.raises(ValueError, match="blockwise_block: query_block must be an int >= 1"):
        blockwise_block(block, x, 0)
    with pytest.raises(TypeError, match="blockwise_block: block must be a TransformerBlock"):
        blockwise_block("block", x)
    with pytest.raises(ValueError, match=r"blockwise_block: expected x of shape \(B, T, 8\)"):
        blockwise_block(block, Tensor(np.zeros((1, 4, 6), np.float32)))
    with pytest.raises(ValueError, match="blockwise_block: dropout must be off"):
        blockwise_block(TransformerBlock(8, 2, dropout=0.1, seed=0), x)
