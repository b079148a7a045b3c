"""Memformer: slot-write mask, biased memory normalization, writer, reader, step, gradchecks."""
import numpy as np
import pytest
from _helpers import check_gradients, leaf

import minimem as mm
from minimem.autograd.registry import cases
from minimem.memory import Memformer, MemoryWriter, biased_memory_normalization, slot_write_mask
from minimem.nn.cases import perturbed


# ---- exercise 50.2: the slot-write mask ----------------------------------------------------
@pytest.mark.exercise("50.2", points=1)
@pytest.mark.parametrize("K,T", [(1, 1), (3, 4), (5, 0), (4, 2)])
def test_slot_write_mask_matches_the_definition(K, T):
    mask = slot_write_mask(K, T)
    assert mask.shape == (K, K + T) and mask.dtype == bool
    for i in range(K):
        for j in range(K + T):
            assert mask[i, j] == (j == i or j >= K)


@pytest.mark.exercise("50.2", points=1)
def test_writer_slots_never_see_each_other():
    """d m^i_{t+1} / d m^j_t = 0 for i != j, with the encodings held fixed."""
    rng = np.random.default_rng(0)
    K, d = 4, 6
    writer = perturbed(MemoryWriter(d, 2, K, seed=1), rng)
    memory = leaf(rng, 2, K, d)
    enc = mm.tensor(rng.standard_normal((2, 5, d)))
    for i in range(K):
        memory.grad = None
        new = writer(memory, enc)
        new[:, i].sum().backward()
        g = memory.grad.numpy()
        for j in range(K):
            if j == i:
                assert np.abs(g[:, j]).max() > 1e-6
            else:
                assert np.abs(g[:, j]).max() == 0.0


# ---- exercise 50.3: biased memory normalization --------------------------------------------
@pytest.mark.exercise("50.3", points=1)
def test_biased_memory_normalization_values():
    rng = np.random.default_rng(1)
    m, b = rng.standard_normal((2, 3, 5)), rng.standard_normal((3, 5))
    out = biased_memory_normalization(mm.tensor(m), mm.tensor(b), eps=0.0).numpy()
    expected = np.empty_like(m)
    for n in range(2):
        for i in range(3):
            u = m[n, i] + b[i]
            expected[n, i] = u / np.sqrt(np.sum(u ** 2))
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, rtol=1e-12)
    eps = biased_memory_normalization(mm.tensor(m), mm.tensor(b), eps=1.0).numpy()
    u = m + b
    np.testing.assert_allclose(eps, u / np.sqrt((u ** 2).sum(-1, keepdims=True) + 1.0), rtol=1e-12)


@pytest.mark.exercise("50.3", points=1)
def test_biased_memory_normalization_gradient():
    rng = np.random.default_rng(2)
    check_gradients(biased_memory_normalization, (leaf(rng, 2, 3, 4), leaf(rng, 3, 4)))


# ---- the writer: masked attention == per-slot loop -----------------------------------------
def test_writer_masked_equals_per_slot_reference_forward_and_backward():
    rng = np.random.default_rng(3)
    writer = perturbed(MemoryWriter(8, 2, 3, seed=0), rng)
    memory, enc = leaf(rng, 2, 3, 8), leaf(rng, 2, 5, 8)
    seed = rng.standard_normal((2, 3, 8))
    results = []
    for fn in (writer.forward, writer.forward_reference):
        writer.zero_grad()
        memory.grad = enc.grad = None
        out = fn(memory, enc)
        (out * mm.tensor(seed)).sum().backward()
        results.append([out.numpy(), memory.grad.numpy(), enc.grad.numpy()] +
                       [p.grad.numpy() for p in writer.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(np.linalg.norm(results[0][0], axis=-1), 1.0, rtol=1e-10)


# ---- the model ------------------------------------------------------------------------------
def test_step_shapes_unit_slots_and_the_reader_reads_memory():
    model = Memformer(11, 8, 2, 2, 3, 6, seed=0)
    x = np.random.default_rng(0).integers(0, 11, (2, 6))
    m0 = model.init_memory(2)
    assert m0.shape == (2, 3, 8) and m0.dtype == np.float32
    logits, m1 = model.step(x, m0)
    assert logits.shape == (2, 6, 11) and m1.shape == (2, 3, 8)
    np.testing.assert_allclose(np.linalg.norm(m1.numpy(), axis=-1), 1.0, rtol=1e-5)
    other = mm.tensor(np.random.default_rng(1).standard_normal((2, 3, 8)).astype(np.float32))
    logits2, _ = model.step(x, other)
    assert np.abs(logits2.numpy() - logits.numpy()).max() > 1e-4
    outs, last = model([x, x[:, :4]])
    assert [o.shape for o in outs] == [(2, 6, 11), (2, 4, 11)] and last.shape == (2, 3, 8)


def test_step_accepts_embeddings_and_is_causal():
    rng = np.random.default_rng(4)
    model = perturbed(Memformer(5, 4, 1, 2, 2, 4, d_ff=6, seed=0), rng)
    x = leaf(rng, 1, 4, 4)
    logits, _ = model.step(x, model.init_memory(1))
    logits[:, 1].sum().backward()
    g = x.grad.numpy()
    assert np.abs(g[:, :2]).max() > 0 and np.abs(g[:, 2:]).max() == 0.0


def test_memformer_errors():
    model = Memformer(5, 4, 1, 2, 2, 4, seed=0)
    with pytest.raises(ValueError, match=r"Memformer.step: memory must be a Tensor \(B=1, 2, 4\)"):
        model.step(np.zeros((1, 3), dtype=np.int64), mm.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="Memformer: segment length 5 exceeds max_len=4"):
        model.step(np.zeros((1, 5), dtype=np.int64), model.init_memory(1))
    with pytest.raises(ValueError, match="Memformer: n_slots must be an int >= 1, got 0"):
        Memformer(5, 4, 1, 2, 0, 4)
    with pytest.raises(ValueError, match="slot_write_mask: n_slots must be an int >= 1"):
        slot_write_mask(0, 3)
    with pytest.raises(ValueError, match="biased_memory_normalization: bias of shape"):
        biased_memory_normalization(mm.zeros(2, 3, 4), mm.zeros(2, 4))


def test_gradchecks_of_the_chapter_are_registered():  # run in tests/apps/test_gradcheck_cases.py
    names = [c.name for c in cases("mrbp")]
    assert {"biased_memory_normalization", "Memformer memory writer",
            "Memformer step (logits, memory)", "RMT step (logits, memory)",
            "TransformerXL step (with cache)"} <= set(names)
