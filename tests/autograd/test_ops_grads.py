"""Gradients of every op in ``minimem.autograd.ops`` against central differences (float64).

``mm.gradcheck`` builds the full Jacobian both ways, so shapes stay tiny (at most 3 per side)
and each property runs 10 Hypothesis examples. Inputs avoid the kinks of abs/relu (a margin
around 0) and ties of max/min/topk (distinct values).
"""
import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minimem as mm

TINY = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
TINY_1D_UP = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3)
SEEDS = st.integers(0, 2**32 - 1)
LAYOUTS = st.sampled_from(["c", "transposed"])
PAIRS = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)
FEW = settings(max_examples=10)


def leaf(shape, seed, layout="c", low=None, margin=None, distinct=False):
    """A float64 leaf requiring grad; ``transposed`` keeps a non-contiguous view as data."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    if distinct:  # no ties, spaced 0.1 apart (far more than the finite-difference step)
        a = (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 + 0.01).astype(float)
    elif layout == "transposed":
        a = rng.standard_normal(shape[::-1]).T
    else:
        a = rng.standard_normal(shape)
    if low is not None:
        a = np.abs(a) + low
    if margin is not None:
        a = np.where(a >= 0, a + margin, a - margin)
    return mm.Tensor(a, requires_grad=True)


def check(fn, *inputs, **kw):
    report = mm.gradcheck(fn, inputs, **kw)
    assert report, str(report)


# ---------------------------------------------------------------------------------------------
# Elementwise
# ---------------------------------------------------------------------------------------------
UNARY = {"neg": {}, "exp": {}, "log": {"low": 0.2}, "sqrt": {"low": 0.2}, "abs": {"margin": 0.1},
         "tanh": {}, "sigmoid": {}, "relu": {"margin": 0.1}, "softplus": {}, "silu": {}}


@pytest.mark.parametrize("name", sorted(UNARY))
@FEW
@given(shape=TINY, seed=SEEDS, layout=LAYOUTS)
def test_unary_grads(name, shape, seed, layout):
    check(getattr(mm, name), leaf(shape, seed, layout, **UNARY[name]))


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow"])
@FEW
@given(shapes=PAIRS, seed=SEEDS, layout=LAYOUTS)
def test_binary_broadcast_grads(name, shapes, seed, layout):
    (sa, sb), _ = shapes
    a = leaf(sa, seed, layout, low=0.5 if name == "pow" else None)
    b = leaf(sb, seed + 1, margin=0.5 if name == "div" else None)
    check(getattr(mm, name), a, b)


def test_scalar_operands_and_one_sided_grads():
    x = leaf((2, 3), 0, low=0.5)
    for fn in (lambda x: x * 3.0, lambda x: 2.0 - x, lambda x: 1.0 / x, lambda x: x ** 3,
               lambda x: x ** 0.5, lambda x: 2.0 ** x, lambda x: x + np.arange(3.0)):
        check(fn, x)
    c = mm.tensor(np.arange(1.0, 4.0), dtype=np.float64)  # a constant: no gradient asked
    check(lambda x: x * c / (c + x), x)


def test_astype_passes_gradient_back_in_the_input_dtype():
    x = mm.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, dtype=np.float64)
    y = mm.astype(x, np.float32)
    (y * y).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())
    check(lambda x: mm.astype(mm.astype(x, np.float64), np.float64) * x, leaf((3,), 1))


# ---------------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------------
def axes_of(ndim):
    if ndim == 0:
        return st.none()
    return st.one_of(st.none(), st.integers(-ndim, ndim - 1),
                     st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim,
                              unique=True).map(tuple))


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "var"])
@FEW
@given(data=st.data(), shape=TINY, seed=SEEDS, layout=LAYOUTS, keepdims=st.booleans())
def test_reduction_grads(name, data, shape, seed, layout, keepdims):
    axis = data.draw(axes_of(len(shape)), label="axis")
    x = leaf(shape, seed, layout, distinct=name in ("max", "min"))
    check(lambda x: getattr(mm, name)(x, axis=axis, keepdims=keepdims), x)


def test_max_splits_the_gradient_between_ties():
    x = mm.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]], requires_grad=True, dtype=np.float64)
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0.5, 0.5], [0.5, 0, 0.5]])


def test_var_with_ddof_grad():
    check(lambda x: mm.var(x, axis=1, ddof=1), leaf((2, 4), 3))


# ---------------------------------------------------------------------------------------------
# Shape operations
# ---------------------------------------------------------------------------------------------
@FEW
@given(shape=TINY, seed=SEEDS, layout=LAYOUTS, data=st.data())
def test_reshape_transpose_swapaxes_grads(shape, seed, layout, data):
    x = leaf(shape, seed, layout)
    perm = tuple(data.draw(st.permutations(range(len(shape))), label="perm"))
    check(lambda x: mm.transpose(x, perm).reshape(-1) * np.arange(x.size), x)
    check(lambda x: x.T, x)
    if len(shape) >= 2:
        check(lambda x: mm.swapaxes(x, 0, -1) ** 2, x)


@FEW
@given(shape=TINY, seed=SEEDS, data=st.data())
def test_broadcast_expand_squeeze_grads(shape, seed, data):
    target = data.draw(hnp.broadcastable_shapes(shape, min_dims=len(shape), max_dims=3,
                                                max_side=3)
                       .map(lambda s: np.broadcast_shapes(s, shape)), label="target")
    x = leaf(shape, seed)
    check(lambda x: mm.broadcast_to(x, target) * np.arange(1.0, 1 + int(np.prod(target)))
          .reshape(target), x)
    check(lambda x: mm.squeeze(mm.expand_dims(x, 0), 0), x)


@FEW
@given(shape=TINY_1D_UP, seed=SEEDS, data=st.data())
def test_concatenate_stack_grads(shape, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    s2 = list(shape)
    s2[axis] = 2
    a, b = leaf(shape, seed), leaf(s2, seed + 1, "transposed")
    check(lambda a, b: mm.concatenate([a, b, a], axis=axis), a, b)
    c = leaf(shape, seed + 2)
    check(lambda a, c: mm.stack([a, c], axis=-1) * 2.0, a, c)


# ---------------------------------------------------------------------------------------------
# Indexing and selection
# ---------------------------------------------------------------------------------------------
@FEW
@given(shape=TINY_1D_UP, seed=SEEDS, layout=LAYOUTS, data=st.data())
def test_getitem_basic_grads(shape, seed, layout, data):
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True),
                      label="index")
    check(lambda x: x[index], leaf(shape, seed, layout))


@FEW
@given(shape=TINY_1D_UP, seed=SEEDS, layout=LAYOUTS, data=st.data())
def test_getitem_integer_array_grads(shape, seed, layout, data):
    n = shape[0]
    idx = np.array(data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=5),
                             label="idx"))
    x = leaf(shape, seed, layout)
    check(lambda x: x[idx], x)  # the row-gather path (scatter_add_rows kernel)
    if len(shape) >= 2:
        cols = np.resize(np.arange(shape[1]), idx.shape)
        check(lambda x: x[idx, cols], x)  # 2-D fancy indexing (numpy add.at path)


def test_getitem_repeated_rows_accumulate():
    x = mm.tensor(np.ones((4, 2)), requires_grad=True, dtype=np.float64)
    x[np.array([0, 2, 2, 2, -1])].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1, 1], [0, 0], [3, 3], [1, 1]])


@FEW
@given(shape=TINY_1D_UP, seed=SEEDS)
def test_getitem_boolean_grads(shape, seed):
    x = leaf(shape, seed)
    mask = np.random.default_rng(seed).random(shape) < 0.5
    check(lambda x: x[mask] * 3.0, x)
    rows = np.arange(shape[0]) % 2 == 1
    check(lambda x: x[rows], x)


@FEW
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3),
       seed=SEEDS)
def test_where_grads(shapes, seed):
    (sc, sa, sb), _ = shapes
    cond = np.random.default_rng(seed).random(sc) < 0.5
    check(lambda a, b: mm.where(cond, a, b), leaf(sa, seed), leaf(sb, seed + 1))
    check(lambda a: mm.where(cond, a, 0.0), leaf(sa, seed))


@FEW
@given(shape=TINY_1D_UP, seed=SEEDS, data=st.data())
def test_take_along_axis_grads(shape, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    idx_shape = list(shape)
    idx_shape[axis] = data.draw(st.integers(1, 4), label="k")
    if data.draw(st.booleans(), label="broadcast index"):
        idx_shape = [1 if i != axis % len(shape) else s for i, s in enumerate(idx_shape)]
    idx = np.random.default_rng(seed).integers(0, shape[axis], size=idx_shape)
    check(lambda x: mm.take_along_axis(x, idx, axis), leaf(shape, seed))


@FEW
@given(shape=TINY_1D_UP, seed=SEEDS, data=st.data())
def test_index_add_grads(shape, seed, data):
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    index = np.array(data.draw(st.lists(st.integers(0, shape[axis] - 1), min_size=1,
                                        max_size=4), label="index"))
    s2 = list(shape)
    s2[axis] = len(index)
    check(lambda x, s: mm.index_add(x, axis, index, s), leaf(shape, seed), leaf(s2, seed + 1))


@FEW
@given(shape=TINY_1D_UP, seed=SEEDS, data=st.data(), largest=st.booleans())
def test_topk_value_grads(shape, seed, data, largest):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    k = data.draw(st.integers(1, shape[axis]), label="k")
    check(lambda x: mm.topk(x, k, axis=axis, largest=largest)[0], leaf(shape, seed, distinct=True))


# ---------------------------------------------------------------------------------------------
# Linear algebra
# ---------------------------------------------------------------------------------------------
@FEW
@given(shapes=hnp.mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=2,
                                                max_side=3),
       seed=SEEDS, layout=LAYOUTS)
def test_matmul_grads(shapes, seed, layout):
    """Includes vector @ vector, vector @ batch and broadcast batch dimensions."""
    (sa, sb), _ = shapes
    check(mm.matmul, leaf(sa, seed, layout), leaf(sb, seed + 1, layout))


@pytest.mark.parametrize("sa,sb", [((3,), (3,)), ((3,), (2, 3, 4)), ((2, 2, 3), (3,)),
                                   ((1, 2, 3), (4, 3, 2))])
def test_matmul_vector_and_batch_edge_cases(sa, sb):
    check(mm.matmul, leaf(sa, 1), leaf(sb, 2))
    check(lambda a: a @ np.ones(sb), leaf(sa, 3))  # an array on one side only


EINSUM_CASES = [
    ("ij,jk->ik", [(2, 3), (3, 2)]),
    ("bhtd,bhsd->bhts", [(1, 2, 2, 3), (1, 2, 3, 3)]),
    ("ij,i->", [(3, 2), (3,)]),
    ("ij->j", [(2, 3)]),
    ("ij", [(2, 3)]),
    ("i,j->ij", [(3,), (2,)]),
    ("...ij,...jk->...ik", [(2, 2, 3), (3, 2)]),
    ("bij,bjk,bkl->bil", [(2, 2, 3), (2, 3, 2), (2, 2, 2)]),
]


@pytest.mark.parametrize("spec,shapes", EINSUM_CASES)
def test_einsum_grads(spec, shapes):
    inputs = [leaf(s, 20 + i, "transposed" if i % 2 else "c") for i, s in enumerate(shapes)]
    check(lambda *xs: mm.einsum(spec, *xs), *inputs)


def test_einsum_same_operand_twice_accumulates():
    x = leaf((3,), 5)
    check(lambda x: mm.einsum("i,i->", x, x), x)
    mm.einsum("i,i->", x, x).backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())


# ---------------------------------------------------------------------------------------------
# Softmax family, normalisation, masks, losses
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp", "l2_normalize"])
@FEW
@given(shape=TINY_1D_UP, seed=SEEDS, layout=LAYOUTS, data=st.data())
def test_softmax_family_grads(name, shape, seed, layout, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    check(lambda x: getattr(mm, name)(x, axis), leaf(shape, seed, layout))


def test_logsumexp_keepdims_and_large_inputs_grad():
    check(lambda x: mm.logsumexp(x, 0, keepdims=True), leaf((3, 2), 1))
    x = mm.tensor([[1e4, 1e4, 0.0]], requires_grad=True, dtype=np.float64)
    mm.logsumexp(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0.5, 0.5, 0.0]])
    x.grad = None
    (mm.softmax(x) * np.array([1.0, 2.0, 3.0])).sum().backward()
    assert np.isfinite(x.grad.numpy()).all()


@FEW
@given(shape=hnp.array_shapes(min_dims=2, max_dims=3, max_side=3), seed=SEEDS,
       k=st.integers(-2, 2))
def test_tril_triu_grads(shape, seed, k):
    x = leaf(shape, seed)
    check(lambda x: mm.tril(x, k), x)
    check(lambda x: mm.triu(x, k), x)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@FEW
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), seed=SEEDS)
def test_cross_entropy_grads(reduction, shape, seed):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, shape[-1], size=shape[:-1])
    targets = np.where(rng.random(shape[:-1]) < 0.3, -100, targets)
    if (targets == -100).all():
        targets.flat[0] = 0
    check(lambda z: mm.cross_entropy(z, targets, reduction=reduction), leaf(shape, seed))


def test_cross_entropy_ignored_rows_get_zero_gradient():
    z = leaf((3, 4), 2)
    targets = np.array([1, -100, 3])
    mm.cross_entropy(z, targets).backward()
    g = z.grad.numpy()
    assert (g[1] == 0).all()
    p = np.exp(z.numpy()) / np.exp(z.numpy()).sum(axis=1, keepdims=True)
    onehot = np.eye(4)[[1, 0, 3]]
    np.testing.assert_allclose(g[[0, 2]], (p - onehot)[[0, 2]] / 2, rtol=1e-10)


def test_mse_loss_grads():
    check(mm.mse_loss, leaf((3, 2), 1), leaf((3, 2), 2))
    check(lambda a: mm.mse_loss(a, np.ones((3, 2)), reduction="sum"), leaf((3, 2), 3))


def test_fast_mode_agrees_on_a_larger_composite():
    """fast=True (one v^T J u per input) passes where full mode passes."""
    a, b = leaf((4, 6), 1), leaf((6, 5), 2)
    fn = lambda a, b: mm.log_softmax(mm.tanh(a @ b), axis=-1) * 2.0
    assert mm.gradcheck(fn, (a, b), fast=True)
    assert mm.gradcheck(fn, (a, b))


# ---------------------------------------------------------------------------------------------
# Devices (CPU always; CUDA when CuPy sees a GPU): device gradients equal CPU gradients
# ---------------------------------------------------------------------------------------------
def _grads_on(device, fn, arrays):
    xs = [mm.tensor(a, requires_grad=True, dtype=np.float64, device=device) for a in arrays]
    fn(*xs).backward()
    return [x.grad.numpy() for x in xs], [x.grad.device for x in xs]


@pytest.mark.parametrize("case", ["matmul-softmax", "xent-gather", "reduce-broadcast"])
def test_grads_on_device_match_cpu(device, case):
    rng = np.random.default_rng(7)
    targets = np.array([2, -100, 0])
    fns = {
        "matmul-softmax": (lambda a, b: (mm.softmax(a @ b, axis=-1) ** 2).sum(),
                           [rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))]),
        "xent-gather": (lambda e, w: mm.cross_entropy(e[np.array([1, 1, 0])] @ w, targets),
                        [rng.standard_normal((2, 4)), rng.standard_normal((4, 3))]),
        "reduce-broadcast": (lambda a, b: ((a - b.mean(axis=0)) * mm.exp(b)).max(),
                             [rng.standard_normal((3, 4)), rng.standard_normal((3, 4))]),
    }
    fn, arrays = fns[case]
    got, devices = _grads_on(device, fn, arrays)
    ref, _ = _grads_on("cpu", fn, arrays)
    assert devices == [device] * len(arrays)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)
    check(fn, *[mm.Tensor(a, requires_grad=True) for a in arrays])


def test_to_device_is_differentiable(device):
    x = leaf((2, 3), 4)
    y = (x.to(device) * 2.0).to("cpu").sum()
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 2.0))
