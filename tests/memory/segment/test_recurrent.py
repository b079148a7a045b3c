"""RMT and the Transformer-XL cache: references, gradient flow, errors."""
import numpy as np
import pytest

import minimem as mm
from minimem.memory import RecurrentMemoryTransformer, TransformerXL, bptt, mrbp, xl_attention_mask
from minimem.nn import TransformerLM
from minimem.nn.cases import perturbed


# ---- RMT -------------------------------------------------------------------------------------
def test_rmt_without_memory_tokens_is_a_transformer_on_each_segment():
    rng = np.random.default_rng(0)
    rmt = perturbed(RecurrentMemoryTransformer(9, 8, 2, 2, 0, 5, d_ff=12, seed=0), rng)
    lm = TransformerLM(9, 8, 2, 2, 5, d_ff=12, seed=3).double()
    lm.load_state_dict(rmt.state_dict())  # same parameter names, strict
    segs = [rng.integers(0, 9, (2, 5)) for _ in range(3)]
    outs, memory = rmt(segs)
    assert memory.shape == (2, 0, 8)
    for x, y in zip(segs, outs):
        np.testing.assert_allclose(y.numpy(), lm(x).numpy(), rtol=1e-12, atol=1e-13)


def test_rmt_memory_is_the_final_state_at_the_write_positions():
    rng = np.random.default_rng(1)
    rmt = perturbed(RecurrentMemoryTransformer(9, 8, 2, 2, 3, 4, d_ff=12, seed=0), rng)
    x, m = rng.integers(0, 9, (2, 4)), mm.tensor(rng.standard_normal((2, 3, 8)))
    logits, new = rmt.step(x, m)
    seq = mm.concatenate([m, rmt.tok(x) + rmt.pos(np.arange(4)), m], axis=1)
    for block in rmt.blocks:
        seq = block(seq)
    np.testing.assert_allclose(new.numpy(), seq.numpy()[:, 7:], rtol=1e-12)
    np.testing.assert_allclose(logits.numpy(), rmt.head(rmt.ln_f(seq[:, 3:7])).numpy(),
                               rtol=1e-12)


def test_rmt_carries_information_and_gradient_across_segments():
    rng = np.random.default_rng(2)
    rmt = perturbed(RecurrentMemoryTransformer(9, 8, 1, 2, 2, 4, d_ff=12, seed=0), rng)
    x1 = mm.tensor(rng.standard_normal((1, 4, 8)), requires_grad=True)
    _, m = rmt.step(x1, rmt.init_memory(1))
    y2, _ = rmt.step(rng.integers(0, 9, (1, 4)), m)
    y2.sum().backward()
    assert np.abs(x1.grad.numpy()).max() > 1e-6
    assert np.abs(rmt.mem_init.grad.numpy()).max() > 1e-6


def test_mrbp_equals_bptt_on_rmt():
    rng = np.random.default_rng(3)
    rmt = perturbed(RecurrentMemoryTransformer(9, 8, 2, 2, 2, 4, d_ff=12, dropout=0.2, seed=0),
                    rng)
    segs = [(rng.integers(0, 9, (2, 4)), rng.integers(0, 9, (2, 4))) for _ in range(3)]
    cell = lambda seg, m: rmt.step(seg[0], m)
    loss = lambda out, seg: mm.cross_entropy(out, seg[1])
    grads = []
    for method in (bptt, mrbp):
        rmt.zero_grad()
        for i, g in enumerate(m.rng for m in rmt.modules() if hasattr(m, "rng")):
            g.bit_generator.state = np.random.default_rng(i).bit_generator.state
        kw = {"modules": rmt} if method is mrbp else {}
        method(cell, rmt.init_memory(2), segs, loss, **kw)
        grads.append([p.grad.numpy().copy() for p in rmt.parameters()])
    for a, b in zip(*grads):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)


# ---- Transformer-XL ---------------------------------------------------------------------------
@pytest.mark.parametrize("N,S,M", [(7, 3, 2), (6, 2, 4), (5, 5, 0)])
def test_xl_mask_matches_a_loop(N, S, M):
    mask = xl_attention_mask(N, S, M)
    for i in range(N):
        for j in range(N):
            assert mask[i, j] == (j <= i and j >= (i // S) * S - M)


@pytest.mark.parametrize("mem_len", [0, 3, 5, 12])
def test_xl_recurrent_equals_the_masked_full_pass(mem_len):
    rng = np.random.default_rng(4)
    xl = perturbed(TransformerXL(9, 8, 2, 2, 4, mem_len, max_distance=20, d_ff=12, seed=0), rng)
    x = rng.integers(0, 9, (2, 11))  # segments of 4, 4 and 3 tokens
    memory, outs = xl.init_memory(2), []
    for s in range(0, 11, 4):
        y, memory = xl.step(x[:, s:s + 4], memory)
        outs.append(y.numpy())
    assert all(c.shape == (2, min(mem_len, 11), 8) for c in memory)
    np.testing.assert_allclose(np.concatenate(outs, axis=1), xl(x).numpy(), rtol=1e-11,
                               atol=1e-12)


def test_xl_attached_cache_gives_the_full_pass_gradients():
    """With detach=False, MRBP through the caches reproduces the full pass's gradients."""
    rng = np.random.default_rng(5)
    xl = perturbed(TransformerXL(9, 8, 2, 2, 3, 4, d_ff=12, seed=0), rng)
    x, y = rng.integers(0, 9, (2, 9)), rng.integers(0, 9, (2, 9))
    xl.zero_grad()
    mm.cross_entropy(xl(x), y, reduction="sum").backward()
    ref = [p.grad.numpy().copy() for p in xl.parameters()]
    xl.zero_grad()
    segs = [(x[:, s:s + 3], y[:, s:s + 3]) for s in (0, 3, 6)]
    mrbp(lambda seg, m: xl.step(seg[0], m, detach=False), xl.init_memory(2), segs,
         lambda out, seg: mm.cross_entropy(out, seg[1], reduction="sum"))
    for a, p in zip(ref, xl.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), a, rtol=1e-11, atol=1e-13)


def test_xl_cache_gets_no_gradient_but_is_read():
    rng = np.random.default_rng(6)
    xl = perturbed(TransformerXL(9, 8, 1, 2, 3, 3, d_ff=12, seed=0), rng)
    x1 = mm.tensor(rng.standard_normal((1, 3, 8)), requires_grad=True)
    _, cache = xl.step(x1, xl.init_memory(1))
    assert all(not c.requires_grad for c in cache)
    x2 = rng.integers(0, 9, (1, 3))
    y2, _ = xl.step(x2, cache)
    y2.sum().backward()
    assert x1.grad is None  # nothing flows back into the earlier segment
    x1b = mm.tensor(x1.data + rng.standard_normal(x1.shape))
    y2b, _ = xl.step(x2, xl.step(x1b, xl.init_memory(1))[1])
    assert np.abs(y2b.numpy() - y2.numpy()).max() > 1e-4  # but the cache is read


def test_recurrent_errors():
    rmt = RecurrentMemoryTransformer(5, 4, 1, 2, 2, 4, seed=0)
    with pytest.raises(ValueError, match=r"RecurrentMemoryTransformer.step: memory must be"):
        rmt.step(np.zeros((1, 3), dtype=np.int64), mm.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="RecurrentMemoryTransformer: n_mem must be an int >= 0"):
        RecurrentMemoryTransformer(5, 4, 1, 2, -1, 4)
    xl = TransformerXL(5, 4, 2, 2, 3, 2, seed=0)
    with pytest.raises(ValueError, match="TransformerXL.step: memory must be a tuple of 2"):
        xl.step(np.zeros((1, 3), dtype=np.int64), (mm.zeros(1, 0, 4),))
    with pytest.raises(ValueError, match="TransformerXL.step: segment length 4 exceeds seg_len=3"):
        xl.step(np.zeros((1, 4), dtype=np.int64), xl.init_memory(1))
    with pytest.raises(ValueError, match="xl_attention_mask: seg_len must be an int >= 1"):
        xl_attention_mask(4, 0, 2)
