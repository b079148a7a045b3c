"""Product-key memory: search, read, layer, gradients, and the chapter's experiments."""
import numpy as np
import pytest
from _helpers import leaf, tensor64, to_np

import minimem as mm
from minimem.autograd.registry import cases
from minimem.backend import to_numpy
from minimem.kernels.weighted_read import gather_weighted_rows_backward_reference
from minimem.memory import (ProductKeyMemory, flat_key_topk, memory_read, memory_read_reference,
                            pkm_ffn, product_key_topk, product_key_topk_reference,
                            product_keys_flat, weighted_read)
from minimem.memory.product_keys.lab import (compare_pkm_mlp, equal_compute_hidden, lorenz_curve,
                                             many_facts, memory_usage, search_cost, usage_stats)
from minimem.memory.product_keys.cases import layer_margin, separated_search_inputs


def full_scores(q1, q2, C1, C2):
    """(M, H, n*n) scores of every slot a*n+b, computed from the explicit product keys."""
    keys = np.concatenate([np.repeat(C1, C1.shape[1], axis=1),
                           np.tile(C2, (1, C2.shape[1], 1))], axis=2)      # (H, N, d)
    return np.einsum("mhd,hnd->mhn", np.concatenate([q1, q2], axis=2), keys)


# ------------------------------------------------------------------------------------------
# Search
# ------------------------------------------------------------------------------------------
SEARCHES = [product_key_topk, product_key_topk_reference, flat_key_topk]


@pytest.mark.parametrize("search", SEARCHES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("H,n,k", [(1, 4, 3), (2, 5, 5), (3, 6, 20), (2, 3, 9)])
def test_search_returns_the_topk_of_a_brute_force_scan(rng, search, H, n, k):
    q1, q2 = rng.standard_normal((2, 7, H, 3))
    C1, C2 = rng.standard_normal((2, H, n, 3))
    full = full_scores(q1, q2, C1, C2)
    scores, slots = search(*map(tensor64, (q1, q2, C1, C2)), k)
    ref = np.argsort(-full, axis=-1)[..., :k]
    np.testing.assert_array_equal(np.sort(slots, -1), np.sort(ref, -1))
    np.testing.assert_allclose(to_np(scores), np.take_along_axis(full, ref, -1), atol=1e-12)
    assert (np.diff(to_np(scores), axis=-1) <= 0).all()


def test_single_head_arrays(rng):
    q1, q2 = rng.standard_normal((2, 5, 4))
    C1, C2 = rng.standard_normal((2, 6, 4))
    s, i = product_key_topk(q1, q2, C1, C2, 7)
    assert s.shape == (5, 7) and i.shape == (5, 7)
    full = full_scores(q1[:, None], q2[:, None], C1[None], C2[None])[:, 0]
    np.testing.assert_array_equal(np.sort(i, 1), np.sort(np.argsort(-full, 1)[:, :7], 1))
    np.testing.assert_array_equal(product_keys_flat(C1, C2)[i[0, 0]],
                                  np.concatenate([C1[i[0, 0] // 6], C2[i[0, 0] % 6]]))


def test_search_gradients_fast_equals_reference(rng):
    q1, q2, C1, C2 = separated_search_inputs(rng, M=4, H=2, n=5, dh=3, k=6)
    G = rng.standard_normal((4, 2, 6))
    grads = []
    for search in SEARCHES:
        for t in (q1, q2, C1, C2):
            t.grad = None
        s, _ = search(q1, q2, C1, C2, 6)
        (s * mm.tensor(G)).sum().backward()
        grads.append([t.grad.numpy() for t in (q1, q2, C1, C2)])
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            np.testing.assert_allclose(a, b, atol=1e-12)


def test_search_gradcheck(rng):
    inputs = separated_search_inputs(rng, M=3, H=2, n=4, dh=2, k=5)
    assert mm.gradcheck(lambda *a: product_key_topk(*a, 5)[0], inputs)


def test_search_errors(rng):
    q = mm.randn(3, 2, 4, seed=0)
    C = mm.randn(2, 5, 4, seed=1)
    with pytest.raises(ValueError, match=r"product_key_topk: k must be an int in \[1, 25\], got 26"):
        product_key_topk(q, q, C, C, 26)
    with pytest.raises(ValueError, match=r"product_key_topk: q1, q2 must both have shape"):
        product_key_topk(mm.randn(3, 3, 4, seed=0), q, C, C, 2)
    with pytest.raises(ValueError, match="C1, C2 must share a shape"):
        product_key_topk_reference(q, q, C, mm.randn(2, 6, 4, seed=0), 2)
    with pytest.raises(TypeError, match="flat_key_topk: q1 must be a floating Tensor"):
        flat_key_topk([1.0], q, C, C, 2)


# ------------------------------------------------------------------------------------------
# Read
# ------------------------------------------------------------------------------------------
def dense_read(V, slots, scores):
    """The read as a dense (M, N) weight matrix times V: the computation the sparse one skips."""
    M, H, k = slots.shape
    e = np.exp(scores - scores.max(-1, keepdims=True))
    w = e / e.sum(-1, keepdims=True)
    W = np.zeros((M, V.shape[0]))
    for m in range(M):
        np.add.at(W[m], slots[m].ravel(), w[m].ravel())
    return W @ V


@pytest.mark.parametrize("read", [memory_read, memory_read_reference], ids=lambda f: f.__name__)
def test_read_equals_dense_weighted_sum(rng, read):
    V, scores = rng.standard_normal((10, 3)), rng.standard_normal((4, 2, 3))
    slots = rng.integers(0, 10, size=(4, 2, 3))
    slots[0, 1] = slots[0, 0]  # a slot chosen by two heads
    np.testing.assert_allclose(to_np(read(tensor64(V), slots, mm.tensor(scores))),
                               dense_read(V, slots, scores), atol=1e-12)


def test_read_gradients_fast_equals_reference(rng):
    V, scores = leaf(rng, 9, 4), leaf(rng, 3, 2, 5)
    slots = rng.integers(0, 9, size=(3, 2, 5))
    G = mm.tensor(rng.standard_normal((3, 4)))
    out = []
    for read in (memory_read, memory_read_reference):
        V.grad = scores.grad = None
        (read(V, slots, scores) * G).sum().backward()
        out.append((V.grad.numpy(), scores.grad.numpy()))
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, atol=1e-12)
    unread = np.setdiff1d(np.arange(9), slots)
    assert (out[0][0][unread] == 0).all()


def test_weighted_read_gradcheck_and_errors(rng):
    V, w = leaf(rng, 6, 2), leaf(rng, 3, 4)
    idx = np.array([[0, 0, 5, 2], [1, 5, 5, 5], [3, 2, 1, 0]])
    assert mm.gradcheck(lambda V, w: weighted_read(V, idx, w), (V, w))
    with pytest.raises(ValueError, match=r"weighted_read: idx must lie in \[0, 6\)"):
        weighted_read(V, idx + 1, w)
    with pytest.raises(ValueError, match="weighted_read: idx must be .M, J. integers"):
        weighted_read(V, idx[:, :3], w)
    with pytest.raises(ValueError, match="memory_read: slots and scores must both be"):
        memory_read(V, idx, w)
    with pytest.raises(TypeError, match="memory_read_reference: slots must be integers"):
        memory_read_reference(V, np.zeros((3, 1, 4)), mm.randn(3, 1, 4, seed=0))


# ------------------------------------------------------------------------------------------
# The layer
# ------------------------------------------------------------------------------------------
def test_layer_shapes_and_records():
    layer = ProductKeyMemory(8, 6, 5, topk=4, heads=3, d_key=6, seed=0)
    y = layer(mm.randn(2, 7, 8, seed=1))
    assert y.shape == (2, 7, 6) and y.dtype == np.float32
    assert layer.last_slots.shape == (2, 7, 3, 4) and layer.last_weights.shape == (2, 7, 3, 4)
    np.testing.assert_allclose(layer.last_weights.sum(-1), 1, rtol=1e-6)
    assert layer.last_slots.max() < 25 and layer.n_slots == 25
    assert "N=25" in repr(layer)


def test_layer_implementations_agree_forward_and_backward(rng):
    x = rng.standard_normal((3, 4, 6))
    results = []
    for impl in ("fast", "reference", "flat"):
        layer = ProductKeyMemory(6, 5, 4, topk=5, heads=2, d_key=4, impl=impl, seed=3).double()
        if impl == "fast":
            assert layer_margin(layer, x) > 1e-6  # the three see the same, well-separated top-k
        xt = mm.tensor(x, requires_grad=True)
        (layer(xt) * mm.tensor(np.arange(5.0))).sum().backward()
        results.append([to_np(layer(xt))] + [p.grad.numpy() for p in layer.parameters()]
                       + [xt.grad.numpy()])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, atol=1e-10)


def test_gradchecks_are_registered():  # they run in tests/apps/test_gradcheck_cases.py
    names = [c.name for c in cases("pkm")]
    assert {"product_key_topk", "weighted_read (scatter-add backward)",
            "ProductKeyMemory (batch norm)", "ProductKeyMemory (no norm)"} <= set(names)


def test_batch_norm_eval_uses_running_statistics():
    layer = ProductKeyMemory(4, 4, 3, topk=2, heads=1, d_key=4, seed=0)
    x = mm.randn(16, 4, seed=1)
    layer(x)
    layer.eval()
    with mm.no_grad():
        q1, _ = layer.queries(x)
    raw = (x.numpy() @ layer.query.weight.numpy().T + layer.query.bias.numpy())[:, :2]
    expect = (raw - layer.norm.running_mean[:2]) / np.sqrt(layer.norm.running_var[:2] + 1e-5)
    np.testing.assert_allclose(q1.numpy()[:, 0], expect, rtol=1e-5, atol=1e-5)


def test_layer_in_a_transformer():
    lm = mm.nn.TransformerLM(20, 16, 2, 2, 8, seed=0,
                             ffn=pkm_ffn(4, topk=4, heads=2, d_key=8, layers=[1], seed=0))
    assert isinstance(lm.blocks[1].ffn, ProductKeyMemory)
    assert isinstance(lm.blocks[0].ffn, mm.nn.MLP)
    lm2 = mm.nn.TransformerLM(20, 16, 1, 2, 8, seed=0, ffn=lambda d_model, n_heads, layer:
                              ProductKeyMemory(d_model, d_model, 4, topk=4, heads=2, d_key=8))
    for model in (lm, lm2):
        logits = model(np.arange(10).reshape(2, 5))
        assert logits.shape == (2, 5, 20)
        mm.cross_entropy(logits.reshape(10, 20), np.arange(10)).backward()
        mem = [m for m in model.modules() if isinstance(m, ProductKeyMemory)][0]
        assert np.abs(mem.values.grad.numpy()).sum() > 0


@pytest.mark.parametrize("sparse_grad", [False, True])
def test_layer_on_every_device(rng, device, sparse_grad):
    """The CuPy path (NumPy twins of the kernels) gives the CPU's result, forward, backward and
    a SparseAdam step (lazy on the row-sparse value gradient)."""
    x = rng.standard_normal((2, 5, 6))
    outs = []
    for dev in ("cpu", device):
        layer = ProductKeyMemory(6, 4, 5, topk=6, heads=2, d_key=4, seed=7,
                                 sparse_grad=sparse_grad).double().to(dev)
        xt = mm.tensor(x, requires_grad=True, device=dev)
        y = layer(xt)
        (y * y).sum().backward()
        outs.append([to_np(y), to_numpy(layer.last_slots)] + [p.grad.numpy()
                                                              for p in layer.parameters()])
        mm.optim.SparseAdam(layer.parameters(), lr=0.01).step()
        outs[-1] += [p.numpy() for p in layer.parameters()]
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_layer_errors():
    with pytest.raises(ValueError, match="ProductKeyMemory: d_key must be even"):
        ProductKeyMemory(4, 4, 3, d_key=5)
    with pytest.raises(ValueError, match=r"ProductKeyMemory: topk must be <= n_sub_keys\^2 = 9"):
        ProductKeyMemory(4, 4, 3, topk=10)
    with pytest.raises(ValueError, match="ProductKeyMemory: query_norm must be 'batch' or None"):
        ProductKeyMemory(4, 4, 3, topk=2, query_norm="layer")
    with pytest.raises(ValueError, match="ProductKeyMemory: impl must be one of"):
        ProductKeyMemory(4, 4, 3, topk=2, impl="gpu")
    with pytest.raises(ValueError, match="ProductKeyMemory: n_sub_keys must be an int >= 1"):
        ProductKeyMemory(4, 4, 0)
    layer = ProductKeyMemory(4, 4, 3, topk=2, heads=1, d_key=4, seed=0)
    with pytest.raises(ValueError, match=r"ProductKeyMemory: expected input \(\.\.\., 4\)"):
        layer(mm.randn(2, 5, seed=0))
    with pytest.raises(TypeError, match="ProductKeyMemory: input must be a Tensor"):
        layer(np.zeros((2, 4)))


# ------------------------------------------------------------------------------------------
# Experiments
# ------------------------------------------------------------------------------------------
def test_usage_stats_known_values():
    assert usage_stats(np.ones(8)) == (1.0, 0.0)
    u, kl = usage_stats(np.array([0, 0, 3.0, 0]))
    assert u == 0.25 and kl == pytest.approx(np.log(4))
    u, kl = usage_stats(np.array([1.0, 1.0, 2.0, 0.0]))
    p = np.array([0.25, 0.25, 0.5])
    assert u == 0.75 and kl == pytest.approx((p * np.log(4 * p)).sum())
    x, y = lorenz_curve(np.array([3.0, 1.0, 0.0, 0.0]))
    np.testing.assert_allclose(x, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(y, [0, 0, 0, 0.25, 1])
    with pytest.raises(ValueError, match="usage_stats: mass is all zero"):
        usage_stats(np.zeros(3))


def test_memory_usage_counts_every_read(rng):
    layer = ProductKeyMemory(4, 2, 4, topk=3, heads=2, d_key=4, seed=0)
    batches = [rng.standard_normal((5, 4)).astype(np.float32) for _ in range(3)]
    layer(mm.tensor(batches[0]))  # a training step moves the running statistics
    u = memory_usage(layer, [mm.tensor(b) for b in batches])
    assert layer.training  # mode restored
    assert u.n_reads == 3 * 5 * 2 * 3
    assert u.mass.sum() == pytest.approx(3 * 5 * 2)  # weights sum to 1 per token and head
    layer.eval()
    read = set()
    with mm.no_grad():
        for b in batches:  # independent: the slots of the flat scan with the eval queries
            q1, q2 = layer.queries(mm.tensor(b))
            read |= set(flat_key_topk(q1, q2, layer.C1, layer.C2, 3)[1].ravel().tolist())
    assert u.usage == pytest.approx(len(read) / 16)
    with pytest.raises(ValueError, match="holds no ProductKeyMemory"):
        memory_usage(mm.nn.MLP(4), batches)


def test_many_facts_and_equal_compute():
    task = many_facts(3, 4, 5, seed=0)
    assert task.inputs.shape == (12, 2) and task.vocab == 12
    a, b = task.inputs[:, 0], task.inputs[:, 1] - 3
    np.testing.assert_array_equal(task.targets[:, 1], 7 + task.table[a, b])
    assert (task.targets[:, 0] == -100).all()
    mem = ProductKeyMemory(32, 32, 32, topk=8, heads=2, d_key=16)
    # query 32*2*16, scoring 2*32*16, candidates 2*8*8, read 2*8*32
    assert mem.flops_per_token() == 1024 + 1024 + 128 + 512
    assert equal_compute_hidden(mem) == 42  # 2 * 32 * 42 = 2688
    with pytest.raises(ValueError, match="many_facts: n_values must be an int >= 1"):
        many_facts(2, 2, 0)


@pytest.mark.parametrize("sparse_updates", [False, True], ids=["adam", "sparse-adam"])
def test_pkm_beats_mlp_of_equal_compute_on_many_facts(sparse_updates):
    # 576 random facts; the notebook runs the larger version (1024 facts, both query norms).
    # With sparse updates the values train by lazy Adam on row-sparse gradients.
    runs = compare_pkm_mlp(n_a=24, n_b=24, n_values=32, d_model=24, n_sub_keys=24, topk=8,
                           heads=2, d_key=16, steps=300, batch_size=64, lr=1e-2,
                           query_norms=("batch",), seed=0, sparse_updates=sparse_updates)
    mlp, pkm = runs["mlp"], runs["pkm (batch norm)"]
    assert pkm.extra["optimizer"] == ("SparseAdam" if sparse_updates else "Adam")
    assert abs(mlp.flops_per_token - pkm.flops_per_token) <= 24  # hidden rounds to an int
    assert pkm.accuracy > mlp.accuracy + 0.1, (pkm.accuracy, mlp.accuracy)
    assert pkm.usage.usage > 0.5


def test_search_cost_shapes():
    cost = search_cost(n_sub_keys=(4, 8, 16), n_queries=8, d_key=8, k=4, flat_max_slots=64,
                       repeat=1)
    np.testing.assert_array_equal(cost["n_slots"], [16, 64, 256])
    assert np.isfinite(cost["flat"][:2]).all() and np.isnan(cost["flat"][2])
    assert (cost["product"] > 0).all()


def test_plots_tour_and_bench(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from minimem.memory.product_keys import plots
    from minimem.tour import pkm as tour_step

    fig, axes = plots.plot_score_grid(np.linspace(0, 1, 6), np.linspace(1, 0, 6) ** 2, 4)
    assert axes[0].get_xlabel() and axes[1].get_title()
    line = tour_step.run(tmp_path)
    assert "flat scan" in line and (tmp_path / "pkm_search_cost.png").exists()
    from minimem.bench import benchmarks

    rows = benchmarks()["pkm"].run(quick=True)
    assert any(r.impl == "flat scan" for r in rows) and all(r.seconds > 0 for r in rows)


@pytest.mark.exercise("30.3", points=3)
def test_exercise_read_backward_reference(rng):
    V = rng.standard_normal((7, 3))
    idx = np.array([[1, 1, 6], [0, 6, 2]])
    w, g = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    gV, gw = gather_weighted_rows_backward_reference(V, idx, w, g)
    expect_V = np.zeros_like(V)
    for m in range(2):
        for j in range(3):
            expect_V[idx[m, j]] += w[m, j] * g[m]
    np.testing.assert_allclose(gV, expect_V, atol=1e-12)
    np.testing.assert_allclose(gw, np.einsum("mjd,md->mj", V[idx], g), atol=1e-12)


@pytest.mark.exercise("30.1", points=3)
def test_exercise_product_key_topk_reference(rng):
    q1, q2 = rng.standard_normal((2, 4, 2, 3))
    C1, C2 = rng.standard_normal((2, 2, 5, 3))
    scores, slots = product_key_topk_reference(*map(tensor64, (q1, q2, C1, C2)), 6)
    full = np.zeros((4, 2, 25))
    for a in range(5):
        for b in range(5):
            full[:, :, a * 5 + b] = (np.einsum("mhd,hd->mh", q1, C1[:, a])
                                     + np.einsum("mhd,hd->mh", q2, C2[:, b]))
    ref = np.argsort(-full, -1)[..., :6]
    np.testing.assert_array_equal(np.sort(slots, -1), np.sort(ref, -1))
    np.testing.assert_allclose(to_np(scores), np.take_along_axis(full, ref, -1), atol=1e-12)


@pytest.mark.exercise("30.2", points=2)
def test_exercise_memory_read_reference(rng):
    V = rng.standard_normal((6, 2))
    slots = np.array([[[0, 5], [5, 5]], [[1, 2], [3, 4]]])
    scores = rng.standard_normal((2, 2, 2))
    out = memory_read_reference(mm.tensor(V), slots, mm.tensor(scores))
    expect = np.zeros((2, 2))
    for m in range(2):
        for h in range(2):
            w = np.exp(scores[m, h]) / np.exp(scores[m, h]).sum()
            for j in range(2):
                expect[m] += w[j] * V[slots[m, h, j]]
    np.testing.assert_allclose(to_np(out), expect, atol=1e-12)
