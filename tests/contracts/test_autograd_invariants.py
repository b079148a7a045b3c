"""The engine's invariants the contracts add (PyTorch's rules): only floating tensors take part
in the graph, NaN ranks largest and propagates, and logsumexp's gradient sums to 1."""
import numpy as np
import pytest

import minimem as mm
from minimem.autograd import ops


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.complex128])
def test_only_floating_tensors_require_grad(dtype):
    with pytest.raises(TypeError, match="only floating tensors can require grad"):
        mm.tensor(np.ones(2, dtype), requires_grad=True)
    with pytest.raises(TypeError, match="requires_grad_: dtype"):
        mm.tensor(np.ones(2, dtype)).requires_grad_()


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.bool_])
def test_a_cast_to_an_integer_dtype_cuts_the_graph(dtype):
    x = mm.tensor([1.5, -2.0, 3.0], requires_grad=True)
    y = x.astype(dtype)
    assert not y.requires_grad and y.is_leaf
    z = (x * 2.0).sum() + y.astype(np.float64).sum()  # the integer branch adds no gradient
    z.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])


def test_a_float_cast_keeps_the_graph():
    x = mm.tensor(np.array([1.0, 2.0]), requires_grad=True)
    x.astype(np.float32).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 1.0])


def test_topk_indices_do_not_require_grad():
    _, idx = ops.topk(mm.tensor(np.arange(5.0), requires_grad=True), 2)
    assert not idx.requires_grad


@pytest.mark.parametrize("op", [ops.relu, ops.sigmoid, ops.max, ops.min,
                                lambda x: ops.topk(x, 1)])
def test_ordering_ops_refuse_complex(op):
    with pytest.raises(TypeError, match="must be real"):
        op(mm.tensor(np.array([1 + 2j, 3j])))


@pytest.mark.parametrize("which", ["max", "min"])
def test_max_and_min_propagate_nan_and_send_it_the_gradient(which):
    x = mm.tensor(np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]]), requires_grad=True)
    y = getattr(ops, which)(x, axis=1)
    assert np.isnan(y.numpy()[0]) and y.numpy()[1] == (6.0 if which == "max" else 4.0)
    y.sum().backward()
    expected = [[0, 1, 0], [0, 0, 1] if which == "max" else [1, 0, 0]]
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_topk_puts_nan_first_among_the_largest_and_last_among_the_smallest():
    x = mm.tensor(np.array([2.0, np.nan, np.inf, -1.0]))
    assert ops.topk(x, 2)[1].tolist() == [1, 2]            # NaN above +inf
    assert ops.topk(x, 4, largest=False)[1].tolist() == [3, 0, 2, 1]


@pytest.mark.parametrize("scale", [1.0, 1e4, 1e7, 3e8])
def test_float32_logsumexp_gradient_sums_to_one_at_any_magnitude(scale):
    rng = np.random.default_rng(0)
    x = mm.tensor((scale + rng.standard_normal((3, 50)) * 4).astype(np.float32),
                  requires_grad=True)
    ops.logsumexp(x, axis=-1).sum().backward()
    sums = x.grad.numpy().astype(np.float64).sum(axis=-1)
    np.testing.assert_allclose(sums, 1.0, atol=50 * np.finfo(np.float32).eps)
