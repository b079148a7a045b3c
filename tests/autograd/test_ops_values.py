"""Forward values of every op in ``minimem.autograd.ops`` against plain NumPy formulas.

Shapes come from Hypothesis (scalars to 3-D, broadcasting pairs, matmul's gufunc signature);
values from a seeded generator; inputs are C-contiguous or non-contiguous (transposed views).
"""
import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minimem as mm
from minimem.autograd import ops

SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
SHAPES_1D_UP = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
SEEDS = st.integers(0, 2**32 - 1)
LAYOUTS = st.sampled_from(["c", "transposed"])
PAIRS = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)


def make(shape, seed, layout="c", low=None, margin=None, dtype=np.float64):
    """Random data of ``shape``; ``transposed`` gives a non-contiguous view (a .T of the
    reversed shape); ``low`` makes values >= low; ``margin`` keeps |values| >= margin."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    a = rng.standard_normal(shape[::-1]).T if layout == "transposed" else rng.standard_normal(shape)
    if low is not None:
        a = np.abs(a) + low
    if margin is not None:
        a = np.sign(a) * (np.abs(a) + margin) + (a == 0) * margin
    return a.astype(dtype, copy=False)


def T(a, requires_grad=False):
    """A Tensor holding ``a`` itself (no copy, so a non-contiguous layout is kept)."""
    return mm.Tensor(a, requires_grad=requires_grad)


def close(x, expected, rtol=1e-12, atol=1e-12):
    got = x.numpy() if isinstance(x, mm.Tensor) else np.asarray(x)
    expected = np.asarray(expected)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def axes_of(ndim):
    """None, one axis (maybe negative) or a tuple of distinct axes."""
    if ndim == 0:
        return st.none()
    return st.one_of(st.none(), st.integers(-ndim, ndim - 1),
                     st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim,
                              unique=True).map(tuple))


def test_transposed_layout_is_really_non_contiguous():
    a = make((3, 4), 0, "transposed")
    x = T(a)
    assert not x.data.flags.c_contiguous and x.shape == (3, 4)


# ---------------------------------------------------------------------------------------------
# Elementwise
# ---------------------------------------------------------------------------------------------
UNARY = {
    "neg": (lambda a: -a, {}),
    "exp": (np.exp, {}),
    "log": (np.log, {"low": 0.1}),
    "sqrt": (np.sqrt, {"low": 0.1}),
    "abs": (np.abs, {}),
    "tanh": (np.tanh, {}),
    "sigmoid": (lambda a: 1 / (1 + np.exp(-a)), {}),
    "relu": (lambda a: np.where(a > 0, a, 0.0), {}),
    "softplus": (lambda a: np.log(1 + np.exp(a)), {}),
    "silu": (lambda a: a / (1 + np.exp(-a)), {}),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=SHAPES, seed=SEEDS, layout=LAYOUTS)
def test_unary_values(name, shape, seed, layout):
    formula, kw = UNARY[name]
    a = make(shape, seed, layout, **kw)
    y = getattr(mm, name)(T(a))
    close(y, formula(a))
    assert y.dtype == np.float64


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_values_keep_float32(name):
    formula, kw = UNARY[name]
    a = make((3, 4), 7, **kw).astype(np.float32)
    y = getattr(mm, name)(T(a))
    assert y.dtype == np.float32
    close(y, formula(a.astype(np.float64)), rtol=2e-6, atol=2e-6)


def test_sigmoid_softplus_are_stable_for_huge_inputs():
    a = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    s = mm.sigmoid(T(a)).numpy()
    assert np.isfinite(s).all()
    close(s, [0.0, np.exp(-50.0) / (1 + np.exp(-50.0)), 0.5, 1 / (1 + np.exp(-50.0)), 1.0])
    close(mm.softplus(T(a)), [0.0, np.log1p(np.exp(-50.0)), np.log(2.0), 50.0, 1e4])


BINARY = {
    "add": (np.add, {}),
    "sub": (np.subtract, {}),
    "mul": (np.multiply, {}),
    "div": (np.divide, {"margin": 0.5}),
    "pow": (np.power, {}),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(shapes=PAIRS, seed=SEEDS, layout=LAYOUTS)
def test_binary_broadcast_values(name, shapes, seed, layout):
    formula, kw_b = BINARY[name]
    (sa, sb), out_shape = shapes
    a = make(sa, seed, layout, low=0.5 if name == "pow" else None)
    b = make(sb, seed + 1, "c", **kw_b)
    y = getattr(mm, name)(T(a), T(b))
    close(y, formula(a, b))
    assert y.shape == out_shape


def test_python_scalars_on_either_side():
    a = make((2, 3), 3, low=0.5)
    x = T(a)
    close(x + 2.0, a + 2)
    close(2.0 - x, 2 - a)
    close(x * 3, a * 3)
    close(1.0 / x, 1 / a)
    close(x ** 3, a ** 3)
    close(2.0 ** x, 2.0 ** a)
    close(-x, -a)
    close(np.ones(3) + x, 1 + a)  # a NumPy array on the left gives a Tensor (array priority)
    assert isinstance(np.ones(3) + x, mm.Tensor)


def test_astype_values_and_dtype():
    a = make((2, 3), 4)
    y = mm.astype(T(a), np.float32)
    assert y.dtype == np.float32
    close(y, a.astype(np.float32), rtol=0, atol=0)
    x = T(a)
    assert mm.astype(x, np.float64) is x  # no-op cast returns the same tensor


# ---------------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "var"])
@given(data=st.data(), shape=SHAPES, seed=SEEDS, layout=LAYOUTS, keepdims=st.booleans())
def test_reduction_values(name, data, shape, seed, layout, keepdims):
    axis = data.draw(axes_of(len(shape)), label="axis")
    a = make(shape, seed, layout)
    y = getattr(mm, name)(T(a), axis=axis, keepdims=keepdims)
    expected = getattr(np, name)(a, axis=axis, keepdims=keepdims)
    close(y, expected)
    assert isinstance(y.data, np.ndarray)  # a reduction to a scalar is still an array


@pytest.mark.parametrize("ddof", [0, 1])
def test_var_ddof(ddof):
    a = make((4, 3), 5)
    close(mm.var(T(a), axis=0, ddof=ddof), np.var(a, axis=0, ddof=ddof))
    close(T(a).var(), np.var(a))


# ---------------------------------------------------------------------------------------------
# Shape operations
# ---------------------------------------------------------------------------------------------
@given(shape=SHAPES, seed=SEEDS, layout=LAYOUTS, data=st.data())
def test_reshape_transpose_swapaxes_values(shape, seed, layout, data):
    a = make(shape, seed, layout)
    x = T(a)
    close(mm.reshape(x, (-1,)), a.reshape(-1))
    close(x.reshape(a.size, 1), a.reshape(a.size, 1))
    perm = data.draw(st.permutations(range(a.ndim)), label="perm")
    close(mm.transpose(x, tuple(perm)), np.transpose(a, perm))
    close(x.T, a.T)
    if a.ndim >= 2:
        i, j = data.draw(st.tuples(st.integers(-a.ndim, a.ndim - 1),
                                   st.integers(-a.ndim, a.ndim - 1)), label="swap")
        close(mm.swapaxes(x, i, j), np.swapaxes(a, i, j))


@given(shape=SHAPES, seed=SEEDS, data=st.data())
def test_broadcast_expand_squeeze_values(shape, seed, data):
    a = make(shape, seed)
    target = data.draw(hnp.broadcastable_shapes(shape, min_dims=len(shape), max_dims=4)
                       .map(lambda s: np.broadcast_shapes(s, shape)), label="target")
    close(mm.broadcast_to(T(a), target), np.broadcast_to(a, target))
    axis = data.draw(st.integers(-a.ndim - 1, a.ndim), label="axis")
    e = mm.expand_dims(T(a), axis)
    close(e, np.expand_dims(a, axis))
    close(mm.squeeze(e, axis), a)
    close(mm.squeeze(T(a)), np.squeeze(a))


@given(shape=SHAPES_1D_UP, seed=SEEDS, data=st.data())
def test_concatenate_and_stack_values(shape, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3), label="sizes")
    parts = []
    for k, n in enumerate(sizes):
        s = list(shape)
        s[axis] = n
        parts.append(make(s, seed + k, "transposed" if k % 2 else "c"))
    close(mm.concatenate([T(p) for p in parts], axis=axis), np.concatenate(parts, axis=axis))
    same = [make(shape, seed + k) for k in range(len(sizes))]
    st_axis = data.draw(st.integers(-len(shape) - 1, len(shape)), label="stack axis")
    close(mm.stack([T(p) for p in same], axis=st_axis), np.stack(same, axis=st_axis))


# ---------------------------------------------------------------------------------------------
# Indexing and selection
# ---------------------------------------------------------------------------------------------
@given(shape=SHAPES_1D_UP, seed=SEEDS, layout=LAYOUTS, data=st.data())
def test_getitem_basic_indices(shape, seed, layout, data):
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True),
                      label="index")
    a = make(shape, seed, layout)
    close(T(a)[index], a[index])


@given(shape=SHAPES_1D_UP, seed=SEEDS, layout=LAYOUTS, data=st.data())
def test_getitem_integer_array_with_repeats_and_negatives(shape, seed, layout, data):
    n = shape[0]
    idx = np.array(data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=6),
                             label="idx"))
    a = make(shape, seed, layout)
    close(T(a)[idx], a[idx])
    close(T(a)[idx.tolist()], a[idx])  # a Python list works like an array
    if len(shape) >= 2:
        cols = np.resize(np.arange(shape[1]), idx.shape)
        close(T(a)[idx, cols], a[idx, cols])
        close(T(a)[:, np.array([0, 0])], a[:, [0, 0]])


@given(shape=SHAPES_1D_UP, seed=SEEDS, layout=LAYOUTS)
def test_getitem_boolean_mask(shape, seed, layout):
    a = make(shape, seed, layout)
    mask = a > 0.2
    close(T(a)[mask], a[mask])
    close(T(a)[T(mask)], a[mask])  # a boolean Tensor as the index
    row_mask = np.arange(shape[0]) % 2 == 0
    close(T(a)[row_mask], a[row_mask])


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3),
       seed=SEEDS)
def test_where_values(shapes, seed):
    (sc, sa, sb), _ = shapes
    cond = make(sc, seed) > 0
    a, b = make(sa, seed + 1), make(sb, seed + 2)
    y = mm.where(cond, T(a), T(b))
    close(y, np.where(cond, a, b))
    close(mm.where(cond, T(a), 0.0), np.where(cond, a, 0.0))
    close(mm.where(T(cond), 1.5, T(b)), np.where(cond, 1.5, b))


@given(shape=SHAPES_1D_UP, seed=SEEDS, data=st.data())
def test_take_along_axis_values(shape, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    rng = np.random.default_rng(seed)
    idx_shape = list(shape)
    idx_shape[axis] = data.draw(st.integers(1, 4), label="k")
    if data.draw(st.booleans(), label="broadcast index"):  # indices may broadcast against x
        idx_shape = [1 if i != axis % len(shape) else s for i, s in enumerate(idx_shape)]
    idx = rng.integers(0, shape[axis], size=idx_shape)
    a = make(shape, seed)
    close(mm.take_along_axis(T(a), idx, axis), np.take_along_axis(a, idx, axis))


@given(shape=SHAPES_1D_UP, seed=SEEDS, data=st.data())
def test_index_add_values_against_a_loop(shape, seed, data):
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    n = shape[axis]
    index = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5),
                               label="index"))
    src_shape = list(shape)
    src_shape[axis] = len(index)
    a, src = make(shape, seed), make(src_shape, seed + 1)
    expected = a.copy()
    for i, r in enumerate(index):  # repeated rows accumulate
        dst = [slice(None)] * a.ndim
        sel = [slice(None)] * a.ndim
        dst[axis], sel[axis] = r, i
        expected[tuple(dst)] += src[tuple(sel)]
    a_before, src_before = a.copy(), src.copy()
    close(mm.index_add(T(a), axis, index, T(src)), expected)
    close(a, a_before, rtol=0, atol=0)  # the inputs are not modified
    close(src, src_before, rtol=0, atol=0)


@given(shape=SHAPES_1D_UP, seed=SEEDS, data=st.data(), largest=st.booleans())
def test_topk_indices_match_argsort(shape, seed, data, largest):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    k = data.draw(st.integers(1, shape[axis]), label="k")
    rng = np.random.default_rng(seed)
    a = rng.permutation(int(np.prod(shape))).reshape(shape) + 0.5  # distinct values
    values, idx = mm.topk(T(a), k, axis=axis, largest=largest)
    order = np.argsort(-a if largest else a, axis=axis)
    expected_idx = np.take(order, np.arange(k), axis=axis)
    np.testing.assert_array_equal(idx.numpy(), expected_idx)
    close(values, np.take_along_axis(a, expected_idx, axis))
    assert idx.dtype.kind in "iu" and not idx.requires_grad


# ---------------------------------------------------------------------------------------------
# Linear algebra
# ---------------------------------------------------------------------------------------------
@given(shapes=hnp.mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=2,
                                                max_side=4),
       seed=SEEDS, layout=LAYOUTS)
def test_matmul_values(shapes, seed, layout):
    (sa, sb), _ = shapes
    a, b = make(sa, seed, layout), make(sb, seed + 1, layout)
    y = mm.matmul(T(a), T(b))
    close(y, np.matmul(a, b), rtol=1e-10, atol=1e-10)
    close(T(a) @ T(b), a @ b, rtol=1e-10, atol=1e-10)


EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 2)]),
    ("bhtd,bhsd->bhts", [(2, 1, 3, 4), (2, 1, 5, 4)]),
    ("ij,i->", [(3, 4), (3,)]),
    ("ij->ji", [(2, 3)]),
    ("ij", [(2, 3)]),            # implicit output: sorted free indices
    ("ij,jk", [(2, 3), (3, 4)]),  # implicit: "ik"
    ("i,j->ij", [(3,), (2,)]),    # outer product
    ("...ij,...jk->...ik", [(2, 2, 3), (3, 4)]),
    ("bij,bjk,bkl->bil", [(2, 2, 3), (2, 3, 2), (2, 2, 3)]),
]


@pytest.mark.parametrize("spec,shapes", EINSUM_CASES)
def test_einsum_values(spec, shapes):
    arrays = [make(s, 10 + i, "transposed" if i % 2 else "c") for i, s in enumerate(shapes)]
    close(mm.einsum(spec, *[T(a) for a in arrays]), np.einsum(spec, *arrays),
          rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# Softmax family, normalisation, masks, losses
# ---------------------------------------------------------------------------------------------
def np_softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_logsumexp(a, axis, keepdims=False):
    m = a.max(axis=axis, keepdims=True)
    out = m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis)


@given(shape=SHAPES_1D_UP, seed=SEEDS, layout=LAYOUTS, data=st.data(), keepdims=st.booleans())
def test_softmax_family_values(shape, seed, layout, data, keepdims):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    a = make(shape, seed, layout) * 3
    close(mm.softmax(T(a), axis), np_softmax(a, axis))
    close(mm.log_softmax(T(a), axis), np.log(np_softmax(a, axis)), rtol=1e-10, atol=1e-10)
    close(mm.logsumexp(T(a), axis, keepdims), np_logsumexp(a, axis, keepdims))
    close(mm.softmax(T(a), axis).sum(axis=axis), np.ones(np.delete(shape, axis % len(shape))))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_stable_for_inputs_of_1e4(dtype):
    a = np.array([[1e4, 1e4, 0.0], [-1e4, 0.0, 1e4], [1e4, -1e4, -1e4]], dtype=dtype)
    for y in (mm.softmax(T(a)), mm.log_softmax(T(a)), mm.logsumexp(T(a))):
        assert np.isfinite(y.numpy()).all() and y.dtype == dtype
    close(mm.logsumexp(T(a)), [1e4 + np.log(2.0), 1e4, 1e4], rtol=1e-7, atol=0)
    close(mm.softmax(T(a)), [[0.5, 0.5, 0], [0, 0, 1], [1, 0, 0]], rtol=0, atol=1e-7)
    close(mm.log_softmax(T(a))[:, 0], [-np.log(2.0), -2e4, 0.0], rtol=1e-6, atol=1e-6)


def test_softmax_row_of_minus_inf_masks():
    a = np.array([[0.0, -np.inf, 1.0], [-np.inf, 2.0, -np.inf]])
    y = mm.softmax(T(a)).numpy()
    close(y, [[1 / (1 + np.e), 0, np.e / (1 + np.e)], [0, 1, 0]])


@given(shape=SHAPES_1D_UP, seed=SEEDS, data=st.data())
def test_l2_normalize_values(shape, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    a = make(shape, seed)
    norm = np.sqrt((a * a).sum(axis=axis, keepdims=True))
    close(mm.l2_normalize(T(a), axis), a / np.maximum(norm, 1e-12))
    close(mm.l2_normalize(T(np.zeros(shape))), np.zeros(shape))  # no division by zero


@given(shape=hnp.array_shapes(min_dims=2, max_dims=3, max_side=5), seed=SEEDS,
       k=st.integers(-3, 3), layout=LAYOUTS)
def test_tril_triu_values(shape, seed, k, layout):
    a = make(shape, seed, layout)
    close(mm.tril(T(a), k), np.tril(a, k))
    close(mm.triu(T(a), k), np.triu(a, k))


def np_cross_entropy(logits, targets, ignore_index=-100, reduction="mean"):
    """-log softmax(z)[t] per position; ignored positions excluded from the mean."""
    c = logits.shape[-1]
    z = logits.reshape(-1, c)
    t = targets.reshape(-1)
    valid = t != ignore_index
    logp = z - np_logsumexp(z, -1, keepdims=True)
    losses = np.where(valid, -logp[np.arange(len(t)), np.where(valid, t, 0)], 0.0)
    if reduction == "none":
        return losses.reshape(targets.shape)
    return losses.sum() / valid.sum() if reduction == "mean" else losses.sum()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), seed=SEEDS)
def test_cross_entropy_values_with_ignore_index(reduction, shape, seed):
    rng = np.random.default_rng(seed)
    logits = make(shape, seed) * 2
    c = shape[-1]
    targets = rng.integers(0, c, size=shape[:-1])
    targets = np.where(rng.random(shape[:-1]) < 0.3, -100, targets)
    if (targets == -100).all():
        targets.flat[0] = 0
    y = mm.cross_entropy(T(logits), targets, reduction=reduction)
    close(y, np_cross_entropy(logits, targets, reduction=reduction), rtol=1e-10, atol=1e-12)


def test_cross_entropy_custom_ignore_index_and_all_ignored():
    logits = make((4, 3), 1)
    targets = np.array([0, 2, 1, 2])
    close(mm.cross_entropy(T(logits), targets, ignore_index=2),
          np_cross_entropy(logits, targets, ignore_index=2), rtol=1e-12)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = mm.cross_entropy(T(logits), np.full(4, -100))
    assert np.isnan(out.item())  # the mean over no positions is NaN (as in PyTorch)


def test_cross_entropy_float32_and_tensor_targets():
    logits = make((2, 3, 5), 2).astype(np.float32)
    targets = mm.tensor(np.array([[1, 4, -100], [0, 0, 3]]))
    y = mm.cross_entropy(T(logits), targets)
    assert y.dtype == np.float32 and y.shape == ()
    close(y, np_cross_entropy(logits.astype(np.float64), targets.numpy()), rtol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_values(reduction):
    a, b = make((3, 4), 1, "transposed"), make((3, 4), 2)
    expected = {"mean": np.mean((a - b) ** 2), "sum": np.sum((a - b) ** 2),
                "none": (a - b) ** 2}[reduction]
    close(mm.mse_loss(T(a), T(b), reduction=reduction), expected)
    close(mm.mse_loss(T(a), b, reduction=reduction), expected)  # a plain array target


# ---------------------------------------------------------------------------------------------
# Devices (CPU always; CUDA when CuPy sees a GPU)
# ---------------------------------------------------------------------------------------------
def test_values_on_device(device):
    a, b = make((2, 3, 4), 1), make((4, 5), 2)
    x = mm.tensor(a, device=device, dtype=np.float64)
    w = mm.tensor(b, device=device, dtype=np.float64)
    assert x.device == device
    close(x @ w, a @ b, rtol=1e-10, atol=1e-10)
    close(mm.softmax(x, axis=1), np_softmax(a, 1))
    close(mm.logsumexp(x * 1e4), np_logsumexp(a * 1e4, -1), rtol=1e-10)
    targets = np.array([[0, 3, -100], [2, 1, 1]])
    close(mm.cross_entropy(x, targets), np_cross_entropy(a, targets), rtol=1e-10)
    idx = np.array([1, 0, 1])
    close(x[idx], a[idx])
    close(x.to("cpu"), a)
    assert x.to(device) is x


def test_ops_namespace_is_complete():
    """Every public op of the ops package is reachable from ``minimem`` (as in the README)."""
    names = ["abs", "add", "astype", "broadcast_to", "concatenate", "cross_entropy", "div",
             "einsum", "exp", "expand_dims", "index_add", "l2_normalize", "log", "log_softmax",
             "logsumexp", "matmul", "max", "mean", "min", "mse_loss", "mul", "neg", "pow",
             "relu", "reshape", "sigmoid", "silu", "softmax", "softplus", "sqrt", "squeeze",
             "stack", "sub", "sum", "swapaxes", "take_along_axis", "tanh", "topk", "transpose",
             "tril", "triu", "var", "where"]
    for n in names:
        assert getattr(mm, n) is getattr(ops, n)
