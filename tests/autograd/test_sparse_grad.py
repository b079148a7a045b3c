"""Row-sparse gradients: the type, the engine's accumulation, the optimizers and the layers
that emit them. Every sparse result is compared with the same computation done densely."""
import numpy as np
import pytest

import minimem as mm
from minimem.autograd.function import Function
from minimem.autograd.sparse import RowSparseGrad, dense_grad
from minimem.memory.product_keys import memory_read, weighted_read
from minimem.memory.product_keys.layers import ProductKeyMemory
from minimem.nn import Embedding
from minimem.optim import SGD, Adam, AdamW, SparseAdam, clip_grad_norm_

IDX = np.array([3, 0, 3, 5, 3])


def sparse_example(rng, shape=(6, 2)):
    values = rng.standard_normal((len(IDX), *shape[1:]))
    dense = np.zeros(shape)
    for r, u in zip(IDX, values):
        dense[r] += u
    return RowSparseGrad(IDX, values, shape), dense


# ---------------------------------------------------------------------------------------------
# The type
# ---------------------------------------------------------------------------------------------
def test_to_dense_adds_repeated_rows(rng):
    g, dense = sparse_example(rng)
    np.testing.assert_allclose(g.to_dense(), dense)
    np.testing.assert_allclose(g.numpy(), dense)
    assert g.nnz_rows == 5 and g.size == 12 and g.ndim == 2 and not g.coalesced


def test_coalesce_keeps_the_dense_value_and_lists_each_row_once(rng):
    g, dense = sparse_example(rng, shape=(6, 2, 3))   # rows may be tensors, not only vectors
    c = g.coalesce()
    np.testing.assert_array_equal(c.indices, [0, 3, 5])
    np.testing.assert_allclose(c.to_dense(), dense)
    assert c.coalesced and c.coalesce() is c
    np.testing.assert_allclose(c.values[1], g.values[[0, 2, 4]].sum(axis=0))


def test_arithmetic_matches_dense(rng):
    g, dense = sparse_example(rng)
    h, dense_h = sparse_example(np.random.default_rng(7))
    s = g + h
    assert isinstance(s, RowSparseGrad) and s.nnz_rows == 10
    np.testing.assert_allclose(s.to_dense(), dense + dense_h)
    a = rng.standard_normal((6, 2))
    np.testing.assert_allclose(g + a, dense + a)
    np.testing.assert_allclose(a + g, dense + a)
    np.testing.assert_allclose((g * 0.5).to_dense(), 0.5 * dense)
    np.testing.assert_allclose((2 * g).to_dense(), 2 * dense)
    assert g.sum_of_squares() == pytest.approx((dense ** 2).sum())
    assert g.astype(np.float32).dtype == np.float32


def test_grouped_form_is_its_list_of_pairs(rng):
    idx = np.array([[1, 4, 1], [0, 1, 2]])
    w, src = rng.standard_normal((2, 3)), rng.standard_normal((2, 5))
    g = RowSparseGrad.grouped(idx, w, src, (6, 5))
    values = np.array([w[m, j] * src[m] for m in range(2) for j in range(3)])
    explicit = RowSparseGrad(idx.ravel(), values, (6, 5))
    np.testing.assert_array_equal(g.indices, idx.ravel())
    np.testing.assert_allclose(g.values, values)
    np.testing.assert_allclose(g.to_dense(), explicit.to_dense(), rtol=1e-12)
    np.testing.assert_allclose(g.coalesce().to_dense(), explicit.to_dense(), rtol=1e-12)
    assert g.sum_of_squares() == pytest.approx((explicit.to_dense() ** 2).sum(), rel=1e-12)
    both = g + explicit                       # groups of 3 and of 1: joined as plain pairs
    assert both.nnz_rows == 12
    np.testing.assert_allclose(both.to_dense(), 2 * explicit.to_dense(), rtol=1e-12)
    np.testing.assert_allclose((g + g).to_dense(), 2 * explicit.to_dense(), rtol=1e-12)


def test_bad_construction_and_arithmetic_raise_clear_errors(rng):
    with pytest.raises(ValueError, match="RowSparseGrad: indices must be integers"):
        RowSparseGrad(np.array([0.5]), np.zeros((1, 2)), (3, 2))
    with pytest.raises(ValueError, match="RowSparseGrad: indices must be 1-D"):
        RowSparseGrad(np.zeros((1, 1), int), np.zeros((1, 2)), (3, 2))
    with pytest.raises(ValueError, match=r"RowSparseGrad.grouped: expected idx \(M, J\)"):
        RowSparseGrad.grouped(np.zeros((2, 3), int), np.zeros((2, 3)), np.zeros((3, 2)), (4, 2))
    with pytest.raises(ValueError, match=r"RowSparseGrad: values must have shape \(2, 2\)"):
        RowSparseGrad(np.array([0, 1]), np.zeros((2, 3)), (3, 2))
    with pytest.raises(ValueError, match=r"RowSparseGrad: indices must lie in \[0, 3\)"):
        RowSparseGrad(np.array([0, 3]), np.zeros((2, 2)), (3, 2))
    g, _ = sparse_example(rng)
    with pytest.raises(ValueError, match="cannot add an array of shape"):
        g + np.zeros((5, 2))
    with pytest.raises(ValueError, match="cannot add gradients of shapes"):
        g + RowSparseGrad(np.array([0]), np.zeros((1, 2)), (7, 2))
    with pytest.raises(TypeError, match="scaled by a real number"):
        g * np.ones(2)


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------
SLOTS = np.array([[0, 3, 3], [5, 1, 0]])


def read_grads(loss_fn, sparse, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    V = mm.tensor(rng.standard_normal((8, 3)), requires_grad=True)
    w = mm.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    loss_fn(V, w, lambda V, w: weighted_read(V, SLOTS, w, sparse_grad=sparse)).backward()
    return V, w


@pytest.mark.parametrize("loss_fn,kind", [
    (lambda V, w, read: (read(V, w) ** 2).sum(), RowSparseGrad),
    (lambda V, w, read: (read(V, w) * read(V, 2 * w)).sum(), RowSparseGrad),  # two reads add
    (lambda V, w, read: (read(V, w) ** 2).sum() + (V ** 2).sum(), mm.Tensor),  # sparse + dense
    (lambda V, w, read: (V ** 2).sum() + (read(V, w) ** 2).sum(), mm.Tensor),  # dense + sparse
    (lambda V, w, read: (read(V * 1.5, w) ** 2).sum(), mm.Tensor),             # not a leaf
])
def test_engine_accumulates_sparse_gradients_like_dense_ones(loss_fn, kind):
    Vs, ws = read_grads(loss_fn, sparse=True)
    Vd, wd = read_grads(loss_fn, sparse=False)
    assert isinstance(Vs.grad, kind) and isinstance(Vd.grad, mm.Tensor)
    np.testing.assert_allclose(dense_grad(Vs.grad), Vd.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ws.grad.numpy(), wd.grad.numpy(), rtol=1e-12)


def test_two_backwards_accumulate_sparse_pairs(rng):
    V = mm.tensor(rng.standard_normal((8, 3)), requires_grad=True)
    w = mm.tensor(rng.standard_normal((2, 3)))
    (weighted_read(V, SLOTS, w, sparse_grad=True) ** 2).sum().backward()
    once = V.grad.to_dense()
    (weighted_read(V, SLOTS, w, sparse_grad=True) ** 2).sum().backward()
    assert isinstance(V.grad, RowSparseGrad) and V.grad.nnz_rows == 12
    np.testing.assert_allclose(V.grad.to_dense(), 2 * once, rtol=1e-12)


def test_retained_non_leaf_gets_a_dense_gradient():
    rng = np.random.default_rng(0)
    W = mm.tensor(rng.standard_normal((8, 3)), requires_grad=True)
    V = (W * 2.0).retain_grad()
    (weighted_read(V, SLOTS, mm.tensor(np.ones((2, 3))), sparse_grad=True)).sum().backward()
    expect = np.zeros((8, 3))
    np.add.at(expect, SLOTS.ravel(), 1.0)
    assert isinstance(V.grad, mm.Tensor)
    np.testing.assert_allclose(V.grad.numpy(), expect)
    np.testing.assert_allclose(W.grad.numpy(), 2 * expect)


def test_a_wrong_shaped_sparse_gradient_names_the_function():
    class BadBackward(Function):
        @staticmethod
        def forward(ctx, x):
            return x.sum()

        @staticmethod
        def backward(ctx, g):
            return RowSparseGrad(np.array([0]), np.zeros((1, 9)), (4, 9))

    x = mm.tensor(np.ones((4, 2)), requires_grad=True)
    with pytest.raises(RuntimeError, match="BadBackward.backward returned a row-sparse gradient"):
        BadBackward.apply(x).backward()


def test_sparse_read_gradcheck_float64(rng):
    V = mm.tensor(rng.standard_normal((8, 3)), requires_grad=True)
    s = mm.tensor(rng.standard_normal((2, 2, 3)), requires_grad=True)
    slots = np.array([[[0, 3, 3], [5, 1, 0]], [[7, 2, 5], [7, 7, 4]]])
    report = mm.gradcheck(lambda V, s: memory_read(V, slots, s, sparse_grad=True), (V, s))
    assert report.passed


def test_float32_table_gets_a_float32_sparse_gradient(rng):
    V = mm.tensor(rng.standard_normal((8, 3)).astype(np.float32), requires_grad=True)
    w = mm.tensor(rng.standard_normal((2, 3)))        # float64 weights
    weighted_read(V, SLOTS, w, sparse_grad=True).sum().backward()
    assert V.grad.dtype == np.float32


def test_sparse_grad_flag_must_be_a_bool(rng):
    V = mm.tensor(rng.standard_normal((8, 3)), requires_grad=True)
    with pytest.raises(TypeError, match="weighted_read: sparse_grad must be True or False"):
        weighted_read(V, SLOTS, mm.tensor(np.ones((2, 3))), sparse_grad=1)


# ---------------------------------------------------------------------------------------------
# The optimizers
# ---------------------------------------------------------------------------------------------
def train_table(opt_factory, sparse, steps=3, seed=0):
    """A few optimizer steps on a table read at different rows each step."""
    rng = np.random.default_rng(seed)
    V = mm.tensor(rng.standard_normal((10, 3)), requires_grad=True)
    opt = opt_factory([V])
    for step in range(steps):
        slots = rng.integers(0, 10, (4, 3)) if step != 1 else np.array([[1, 1, 2]] * 4)
        w = mm.tensor(rng.standard_normal((4, 3)))
        target = rng.standard_normal((4, 3))
        opt.zero_grad()
        ((weighted_read(V, slots, w, sparse_grad=sparse) - mm.tensor(target)) ** 2).sum() \
            .backward()
        opt.step()
    return V.numpy()


@pytest.mark.parametrize("factory", [
    lambda ps: SGD(ps, lr=0.05),
    lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
    lambda ps: SGD(ps, lr=0.05, weight_decay=0.1),
    lambda ps: Adam(ps, lr=0.05),
    lambda ps: AdamW(ps, lr=0.05),
], ids=["sgd", "sgd-momentum", "sgd-decay", "adam", "adamw"])
def test_optimizers_give_the_dense_result_on_sparse_gradients(factory):
    np.testing.assert_allclose(train_table(factory, True), train_table(factory, False),
                               rtol=1e-12, atol=1e-14)


def test_sparse_sgd_updates_only_the_rows_read_in_place():
    V = mm.tensor(np.zeros((6, 2)), requires_grad=True)
    table = V.data
    (weighted_read(V, np.array([[1, 4, 1]]), mm.tensor(np.ones((1, 3))), sparse_grad=True)
     .sum()).backward()
    SGD([V], lr=0.5).step()
    assert V.data is table
    np.testing.assert_allclose(V.numpy()[:, 0], [0, -1.0, 0, 0, -0.5, 0])


def test_sparse_adam_is_adam_on_dense_gradients():
    np.testing.assert_allclose(train_table(lambda ps: SparseAdam(ps, lr=0.05), False),
                               train_table(lambda ps: Adam(ps, lr=0.05), False), rtol=1e-12)


def lazy_adam_reference(seed=0, steps=3, lr=0.05, betas=(0.9, 0.999), eps=1e-8):
    """Independent lazy Adam: dense gradients from the dense engine; only rows read move."""
    rng = np.random.default_rng(seed)
    V = mm.tensor(rng.standard_normal((10, 3)), requires_grad=True)
    m, v = np.zeros((10, 3)), np.zeros((10, 3))
    for step in range(steps):
        slots = rng.integers(0, 10, (4, 3)) if step != 1 else np.array([[1, 1, 2]] * 4)
        w = mm.tensor(rng.standard_normal((4, 3)))
        target = rng.standard_normal((4, 3))
        V.grad = None
        ((weighted_read(V, slots, w) - mm.tensor(target)) ** 2).sum().backward()
        g, rows = V.grad.numpy(), np.unique(slots)
        t = step + 1
        m[rows] = betas[0] * m[rows] + (1 - betas[0]) * g[rows]
        v[rows] = betas[1] * v[rows] + (1 - betas[1]) * g[rows] ** 2
        m_hat, v_hat = m[rows] / (1 - betas[0] ** t), v[rows] / (1 - betas[1] ** t)
        V.data[rows] -= lr * m_hat / (np.sqrt(v_hat) + eps)
    return V.numpy()


def test_sparse_adam_is_lazy_adam_on_sparse_gradients():
    got = train_table(lambda ps: SparseAdam(ps, lr=0.05), True)
    np.testing.assert_allclose(got, lazy_adam_reference(), rtol=1e-12)
    # and it is not plain Adam: step 2 reads only rows 1 and 2, so the others keep their moments
    assert not np.allclose(got, train_table(lambda ps: Adam(ps, lr=0.05), True))


def test_clip_grad_norm_treats_sparse_gradients_as_their_dense_value():
    def grads(sparse):
        V, w = read_grads(lambda V, w, read: (read(V, w) ** 2).sum() * 10, sparse)
        return V, w

    Vs, ws = grads(True)
    Vd, wd = grads(False)
    ns = clip_grad_norm_([Vs, ws], max_norm=1.0)
    nd = clip_grad_norm_((p for p in [Vd, wd]), max_norm=1.0)   # a generator works too
    assert ns == pytest.approx(nd, rel=1e-12) and nd > 1.0
    assert isinstance(Vs.grad, RowSparseGrad) and Vs.grad.coalesced
    np.testing.assert_allclose(Vs.grad.to_dense(), Vd.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ws.grad.numpy(), wd.grad.numpy(), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Layers that emit sparse gradients
# ---------------------------------------------------------------------------------------------
def pkm_grads(sparse, impl="fast"):
    layer = ProductKeyMemory(6, 5, 4, topk=3, heads=2, d_key=4, seed=0, impl=impl,
                             sparse_grad=sparse).double()
    x = mm.randn(2, 7, 6, seed=1, requires_grad=True).double()
    (layer(x) ** 2).sum().backward()
    return layer


@pytest.mark.parametrize("impl", ["fast", "flat"])
def test_product_key_memory_sparse_grad_equals_dense(impl):
    sparse, dense = pkm_grads(True, impl), pkm_grads(False, impl)
    assert isinstance(sparse.values.grad, RowSparseGrad)
    assert sparse.values.grad.nnz_rows == 2 * 7 * 2 * 3        # tokens x heads x k
    for (name, ps), pd in zip(sparse.named_parameters(), dense.parameters()):
        np.testing.assert_allclose(dense_grad(ps.grad), pd.grad.numpy(), rtol=1e-10,
                                   atol=1e-12, err_msg=name)
    assert "sparse_grad=True" in repr(sparse)


def test_product_key_memory_sparse_grad_arguments_are_checked():
    with pytest.raises(ValueError, match="ProductKeyMemory: sparse_grad=True needs impl"):
        ProductKeyMemory(4, 4, 3, topk=2, heads=1, d_key=4, impl="reference", sparse_grad=True)
    with pytest.raises(TypeError, match="ProductKeyMemory: sparse_grad must be True or False"):
        ProductKeyMemory(4, 4, 3, topk=2, heads=1, d_key=4, sparse_grad="yes")


def test_embedding_sparse_matches_dense_and_trains_with_sparse_adam():
    ids = np.array([[1, 2, 1], [9, 0, 1]])

    def run(sparse, opt_cls):
        emb = Embedding(10, 3, seed=0, sparse=sparse).double()
        opt = opt_cls(emb.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            (emb(ids) ** 2).sum().backward()
            opt.step()
        return emb

    s, d = run(True, SparseAdam), run(False, SparseAdam)
    assert isinstance(s.weight.grad, RowSparseGrad) and "sparse=True" in repr(s)
    np.testing.assert_allclose(s.weight.grad.numpy(), d.weight.grad.numpy(), rtol=1e-12)
    # rows 3..8 are never read: lazy Adam (sparse) leaves them; the dense gradient has zeros
    # there, and Adam with zero moments does not move them either, so the tables agree
    np.testing.assert_allclose(s.weight.numpy(), d.weight.numpy(), rtol=1e-12)
    sgd_s, sgd_d = run(True, SGD), run(False, SGD)
    np.testing.assert_allclose(sgd_s.weight.numpy(), sgd_d.weight.numpy(), rtol=1e-12)


def test_embedding_sparse_flag_is_checked():
    with pytest.raises(TypeError, match="Embedding: sparse must be True or False"):
        Embedding(4, 2, sparse=None)


@pytest.mark.parametrize("sparse", [False, True])
def test_read_backward_gives_only_the_gradients_asked_for(rng, sparse):
    V = mm.tensor(rng.standard_normal((8, 3)))                      # a frozen table
    w = mm.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    weighted_read(V, SLOTS, w, sparse_grad=sparse).sum().backward()
    assert V.grad is None
    np.testing.assert_allclose(w.grad.numpy(), V.numpy()[SLOTS].sum(-1), rtol=1e-12)
