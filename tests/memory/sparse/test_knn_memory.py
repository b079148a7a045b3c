"""kNN memory: FIFO store, exact search, knn_attention (gated and exact merge), passkey."""
import numpy as np
import pytest
from _helpers import leaf

import minimem as mm
from minimem.autograd.registry import cases
from minimem.memory import KNNAttention, KNNMemory, knn_attention
from minimem.memory.sparse.lab import passkey_knn_experiment
from minimem.nn import scaled_dot_product_attention


def test_fifo_eviction_and_clear():
    mem = KNNMemory(5, 2, 1, dtype=np.float64)
    keys = np.arange(16, dtype=float).reshape(1, 1, 8, 2)
    vals = np.arange(8, dtype=float).reshape(1, 1, 8, 1)
    mem.add(keys[:, :, :3], vals[:, :, :3])
    mem.add(keys[:, :, 3:], vals[:, :, 3:])          # 8 items into 5 slots: 0, 1, 2 evicted
    assert len(mem) == 5 and mem.n_added == 8
    assert sorted(mem.values[0, 0, :, 0].tolist()) == [3, 4, 5, 6, 7]
    mem.add(keys[:, :, :7], vals[:, :, :7])          # more than capacity at once: newest 5
    assert sorted(mem.values[0, 0, :, 0].tolist()) == [2, 3, 4, 5, 6]
    mem.clear()
    assert len(mem) == 0 and mem.search(np.zeros((1, 1, 2, 2)), 3).keys.shape == (1, 1, 2, 0, 2)


def test_search_is_exact_top_k_per_batch_and_head(rng):
    mem = KNNMemory(40, 3, 2, dtype=np.float64)
    keys, vals = rng.standard_normal((2, 2, 30, 3)), rng.standard_normal((2, 2, 30, 2))
    mem.add(keys, vals)
    q = rng.standard_normal((2, 2, 4, 3))
    res = mem.search(q, 5)
    for b in range(2):
        for h in range(2):
            for t in range(4):
                s = keys[b, h] @ q[b, h, t]
                best = np.argsort(-s, kind="stable")[:5]
                np.testing.assert_allclose(res.values[b, h, t], vals[b, h, best])
                np.testing.assert_allclose(res.scores[b, h, t], s[best])
    np.testing.assert_array_equal(res.positions, res.indices)  # nothing evicted yet


def test_joint_softmax_equals_attention_over_local_and_retrieved(rng):
    mem = KNNMemory(10, 3, 2, dtype=np.float64)
    mk, mv = rng.standard_normal((1, 2, 10, 3)), rng.standard_normal((1, 2, 10, 2))
    mem.add(mk, mv)
    q, k, v = leaf(rng, 1, 2, 4, 3), leaf(rng, 1, 2, 4, 3), leaf(rng, 1, 2, 4, 2)
    out = knn_attention(q, (k, v), mem, topk=10)  # topk = all: the union is everything
    keys = mm.concatenate([mm.tensor(mk), k], axis=2)
    values = mm.concatenate([mm.tensor(mv), v], axis=2)
    mask = np.concatenate([np.ones((4, 10), bool), np.tri(4, dtype=bool)], axis=1)
    ref = scaled_dot_product_attention(q, keys, values, mask=mask)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-12)


def test_gated_output_mixes_local_and_memory_per_head(rng):
    mem = KNNMemory(6, 3, 2, dtype=np.float64)
    mk, mv = rng.standard_normal((1, 2, 6, 3)), rng.standard_normal((1, 2, 6, 2))
    mem.add(mk, mv)
    q, k, v = leaf(rng, 1, 2, 3, 3), leaf(rng, 1, 2, 3, 3), leaf(rng, 1, 2, 3, 2)
    gate = mm.tensor(np.array([-1.0, 2.0]), requires_grad=True)
    out = knn_attention(q, (k, v), mem, topk=2, gate=gate).numpy()
    local = scaled_dot_product_attention(q, k, v, causal=True).numpy()
    for h in range(2):
        g = 1 / (1 + np.exp(-gate.numpy()[h]))
        for t in range(3):
            s = mk[0, h] @ q.numpy()[0, h, t]
            top = np.argsort(-s)[:2]
            w = np.exp(s[top] / np.sqrt(3) - (s[top] / np.sqrt(3)).max())
            o_mem = w @ mv[0, h, top] / w.sum()
            np.testing.assert_allclose(out[0, h, t], g * o_mem + (1 - g) * local[0, h, t],
                                       atol=1e-12)


def test_no_gradient_flows_into_the_stored_memory(rng):
    mem = KNNMemory(8, 3, 2, dtype=np.float64)
    stored_k, stored_v = leaf(rng, 1, 1, 8, 3), leaf(rng, 1, 1, 8, 2)
    mem.add(stored_k, stored_v)                      # Tensors are stored detached
    before = mem.keys.copy()
    q, k, v = leaf(rng, 1, 1, 3, 3), leaf(rng, 1, 1, 3, 3), leaf(rng, 1, 1, 3, 2)
    gate = mm.tensor(np.zeros(1), requires_grad=True)
    knn_attention(q, (k, v), mem, topk=3, gate=gate).sum().backward()
    assert stored_k.grad is None and stored_v.grad is None
    assert q.grad is not None and gate.grad is not None and np.abs(gate.grad.numpy()).sum() > 0
    np.testing.assert_array_equal(mem.keys, before)


def test_knn_gradcheck_case_is_registered():
    assert any(c.name.startswith("knn_attention") for c in cases("sparse"))


def test_knn_attention_layer_memorizes_segments(rng):
    layer = KNNAttention(8, 2, capacity=6, topk=2, seed=0)
    x = mm.randn(1, 4, 8, seed=1)
    y1 = layer(x)
    assert len(layer.memory) == 4 and layer.last_retrieved.keys.shape[3] == 0
    y2 = layer(x)                                   # now the first segment is retrieved
    assert len(layer.memory) == 6 and layer.last_retrieved.keys.shape[3] == 2
    assert not np.allclose(y1.numpy(), y2.numpy())


def test_knn_errors():
    with pytest.raises(ValueError, match="KNNMemory: capacity must be an int >= 1, got 0"):
        KNNMemory(0, 2, 2)
    mem = KNNMemory(4, 2, 2)
    with pytest.raises(ValueError, match=r"KNNMemory.add: expected keys \(B, H, n, 2\)"):
        mem.add(np.zeros((1, 3, 2)), np.zeros((1, 3, 2)))
    with pytest.raises(ValueError, match="KNNMemory.search: topk must be an int >= 1, got 0"):
        mem.search(np.zeros((1, 1, 2, 2)), 0)
    q = mm.zeros(1, 2, 3, 2)
    with pytest.raises(ValueError, match=r"knn_attention: gate must be a Tensor of shape \(2,\)"):
        knn_attention(q, (q, q), mem, 2, gate=mm.zeros(3))
    with pytest.raises(TypeError, match="knn_attention: memory must be a KNNMemory"):
        knn_attention(q, (q, q), {}, 2)


def test_passkey_is_retrieved_from_beyond_the_window():
    r = passkey_knn_experiment(n_segments=4, segment=8, vocab=16, steps=60, seed=0)
    assert r["distance"] > 8                       # the key is segments away from the query
    assert r["acc_memory"] >= 0.9
    assert r["acc_window"] <= 0.35                 # without memory: about chance (2 / 16)
    assert r["retrieval_hit_rate"] >= 0.5
