"""The engine itself: accumulation traps, graph bookkeeping, dtypes, errors, memory, gradcheck."""
import gc
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import seeded_leaf as leaf  # leaf(3, 4, seed=1)

import minimem as mm
from minimem.autograd import Function, GradcheckError
from minimem.autograd.experiments import MulWrongSecondGradient  # grad_b = g * b

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# Accumulation: fan-out, diamonds, x * x, reused parameters, deep chains
# ---------------------------------------------------------------------------------------------
def test_fan_out_accumulates_every_use():
    x = leaf(3, 4)
    f = (mm.exp(x) + mm.tanh(x) + x * 2.0).sum()
    f.backward()
    a = x.numpy()
    np.testing.assert_allclose(x.grad.numpy(), np.exp(a) + 1 - np.tanh(a) ** 2 + 2, rtol=1e-12)


def test_diamond_graph():
    x = leaf(5)
    a = x * 3.0                    #      x
    b, c = mm.exp(a), mm.tanh(a)   #      a
    f = (b * c).sum()              #    b   c
    f.backward()                   #      f
    u = 3 * x.numpy()
    expected = 3 * (np.exp(u) * np.tanh(u) + np.exp(u) * (1 - np.tanh(u) ** 2))
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


def test_x_times_x_and_powers_of_one_input():
    x = leaf(4)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy(), rtol=1e-14)
    x.grad = None
    (x * x * x + x + x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * x.numpy() ** 2 + 2, rtol=1e-12)


def test_reused_parameter_in_two_layers():
    x, w = leaf(2, 3, seed=1), leaf(3, 3, seed=2)
    f = (mm.tanh(x @ w) @ w).sum()
    f.backward()
    X, W = x.numpy(), w.numpy()
    H = np.tanh(X @ W)
    G = np.ones((2, 3))
    dW_second = H.T @ G                                # through the second use
    dW_first = X.T @ ((G @ W.T) * (1 - H ** 2))        # through the first use
    np.testing.assert_allclose(w.grad.numpy(), dW_first + dW_second, rtol=1e-12)
    assert mm.gradcheck(lambda x, w: mm.tanh(x @ w) @ w, (x, w))


def test_gradients_accumulate_across_backward_calls():
    x = leaf(3)
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 5.0)
    x.zero_grad()
    assert x.grad is None


def test_in_place_sums_never_write_into_an_array_a_backward_returned():
    """h is read by three nodes whose backward hands back the very array it received (as a
    reshape or an Add does); the walk sums them into an array of its own, never into those."""
    seen = []

    class PassThrough(Function):
        @staticmethod
        def forward(ctx, a):
            return a.copy()

        @staticmethod
        def backward(ctx, g):
            seen.append((g, g.copy()))
            return (g,)

    x = leaf(3, 4, seed=1)
    h = x * 2.0
    reads = [PassThrough.apply(h) for _ in range(3)]
    f = (reads[0] * 1.0).sum() + (reads[1] * 2.0).sum() + (reads[2] * 3.0).sum()
    f.backward()
    assert len(seen) == 3
    for array, before in seen:
        np.testing.assert_array_equal(array, before)
    np.testing.assert_allclose(x.grad.numpy(), 2 * 6.0)
    # the same with an Add that sends one array to both of its inputs
    w0 = leaf(3, 4, seed=2)
    w = w0 * 1.0
    h = x * 2.0
    f = ((h + w) * 3.0).sum() + mm.exp(h).sum() + (h * h).sum()
    x.grad = None
    f.backward()
    np.testing.assert_array_equal(w0.grad.numpy(), np.full((3, 4), 3.0))
    H = 2 * x.numpy()
    np.testing.assert_allclose(x.grad.numpy(), 2 * (3 + np.exp(H) + 2 * H), rtol=1e-12)


def test_pending_gradients_cost_one_new_array_however_many_reads():
    from minimem.autograd.function import _Slots

    first, second, third = np.ones(3), np.full(3, 2.0), np.full(3, 4.0)
    slots = _Slots(1)
    slots.add(0, first)
    assert slots.grads[0] is first                    # kept as it came, no copy
    slots.add(0, second)
    total = slots.grads[0]
    assert total is not first and total is not second  # a new array, owned by the walk
    slots.add(0, third)
    assert slots.grads[0] is total                    # added in place
    np.testing.assert_array_equal(total, 7.0)
    np.testing.assert_array_equal(first, 1.0)         # the arrays that came are untouched
    np.testing.assert_array_equal(second, 2.0)


def test_a_tensor_read_many_times_and_twice_by_one_op():
    x = leaf(5)
    y = x * 1.0
    parts = [y * float(i) for i in range(1, 6)] + [y + y, y * y]   # 5 + 2 + 2 reads of y
    f = parts[0].sum()
    for p in parts[1:]:
        f = f + p.sum()
    f.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    np.testing.assert_allclose(first, 15 + 2 + 2 * x.numpy(), rtol=1e-12)
    # the same graph again: the second walk must not see the first one's sums
    f.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first, rtol=1e-12)


def test_scalar_gradients_accumulate_in_place_as_arrays():
    x = mm.tensor(2.0, requires_grad=True, dtype=np.float64)
    y = x * 1.0
    (y * y * y + y + y).backward()              # y read by four nodes, 0-d gradients
    assert x.grad.item() == pytest.approx(3 * 4.0 + 2)


def test_unmaterialized_gradients_reach_backward_as_none():
    seen = []

    class TwoOut(Function):
        materialize_grads = False

        @staticmethod
        def forward(ctx, a):
            return a * 2.0, a * 3.0

        @staticmethod
        def backward(ctx, g1, g2):
            seen.append((g1 is None, g2 is None))
            return ((0 if g1 is None else 2.0 * g1) + (0 if g2 is None else 3.0 * g2),)

    x = leaf(3)
    _, b = TwoOut.apply(x)
    b.sum().backward()
    a2, b2 = TwoOut.apply(x)
    (a2.sum() + b2.sum()).backward()
    assert seen == [(True, False), (False, False)]
    np.testing.assert_allclose(x.grad.numpy(), 3.0 + 5.0)


def test_chain_of_100000_nodes_no_recursion():
    depth = 100_000
    assert sys.getrecursionlimit() < depth
    x = mm.tensor([1.0, -2.0], requires_grad=True, dtype=np.float64)
    y = x
    for _ in range(depth):
        y = -y
    w = mm.tensor([0.5, 0.25], requires_grad=True, dtype=np.float64)
    (y * w).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.5, 0.25])  # (-1)^100000 w
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, -2.0])
    del y  # freeing a 10^5-long chain must not crash either
    gc.collect()


# ---------------------------------------------------------------------------------------------
# Graph bookkeeping: no_grad, detach, retain_grad, retain_graph
# ---------------------------------------------------------------------------------------------
def test_no_grad_records_nothing_and_restores_state():
    x = leaf(3)
    with mm.no_grad():
        assert not mm.is_grad_enabled()
        y = mm.exp(x) * 2.0
        with mm.enable_grad():
            z = x * 2.0
        assert not mm.is_grad_enabled()
    assert mm.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    assert z.requires_grad and not z.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()
    with pytest.raises(ValueError, match="boom"), mm.no_grad():
        raise ValueError("boom")
    assert mm.is_grad_enabled()  # restored after an exception


def test_detach_cuts_the_graph_and_shares_data():
    x = leaf(4)
    d = x.detach()
    assert not d.requires_grad and d.is_leaf
    assert np.shares_memory(d.data, x.data)
    (x * d).sum().backward()  # d is a constant: the gradient is d, not 2x
    np.testing.assert_allclose(x.grad.numpy(), x.numpy())


def test_retain_grad_keeps_intermediate_gradients():
    x = leaf(3)
    a = x * 2.0
    b = mm.exp(a)
    a.retain_grad()
    f = b.sum()
    f.backward()
    np.testing.assert_allclose(a.grad.numpy(), b.numpy())
    np.testing.assert_allclose(x.grad.numpy(), 2 * b.numpy())
    assert b.grad is None  # not retained
    assert x.is_leaf and not a.is_leaf


def test_backward_twice_needs_retain_graph():
    x = leaf(3)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()
    x.grad = None
    y = (mm.exp(x) * x).sum()
    y.backward(retain_graph=True)
    y.backward()  # works, and accumulates
    a = x.numpy()
    np.testing.assert_allclose(x.grad.numpy(), 2 * (np.exp(a) * a + np.exp(a)), rtol=1e-12)
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_backward_with_an_explicit_gradient_and_on_a_leaf():
    x = leaf(2, 3)
    y = x * 3.0
    g = np.arange(6.0).reshape(2, 3)
    y.backward(g)
    np.testing.assert_allclose(x.grad.numpy(), 3 * g)
    z = leaf(2)
    z.backward(np.array([1.0, 2.0]))
    np.testing.assert_allclose(z.grad.numpy(), [1.0, 2.0])


def test_unused_outputs_of_a_multi_output_function_get_zero_gradients():
    class SplitScale(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2.0, a * 3.0

        @staticmethod
        def backward(ctx, g1, g2):
            assert g2.shape == g1.shape and not g2.any()  # unused output: zeros, right shape
            return (2.0 * g1 + 3.0 * g2,)

    x = leaf(3)
    first, _unused = SplitScale.apply(x)
    first.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2.0)


def test_a_function_returning_the_wrong_number_of_gradients_is_reported():
    class Bad(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return (g,)

    with pytest.raises(RuntimeError, match="Bad.backward returned 1 gradients for 2 inputs"):
        Bad.apply(leaf(2), leaf(2)).sum().backward()


def test_nodes_free_their_saved_arrays_after_backward():
    x = leaf(3)
    y = x * x
    ctx = y._ctx
    assert len(ctx.saved) == 2
    y.sum().backward()
    assert ctx.saved is None


# ---------------------------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------------------------
def test_float32_stays_float32_through_ops_and_gradients():
    x = mm.randn(3, 4, seed=0, requires_grad=True)
    w = mm.randn(4, 5, seed=1, requires_grad=True)
    b = mm.randn(5, seed=2, requires_grad=True)
    assert x.dtype == w.dtype == np.float32
    h = mm.tanh(x @ w + b)
    inter = [h, mm.softmax(h), mm.log_softmax(h, 0), h * 2.0, h / 3, 1.0 - h, h ** 2,
             mm.sigmoid(h), mm.relu(h), mm.silu(h), mm.softplus(h), mm.l2_normalize(h),
             h.max(axis=1), h.var(axis=0), h.mean(), mm.logsumexp(h), h[np.array([0, 0, 2])],
             mm.concatenate([h, h]), mm.einsum("ij,ij->i", h, h), mm.topk(h, 2)[0],
             mm.where(h.numpy() > 0, h, 0.0), mm.tril(h), mm.sqrt(mm.abs(h) + 1.0)]
    loss = mm.cross_entropy(h, np.array([0, -100, 4]))
    for t in inter:
        t.retain_grad()
        loss = loss + t.sum()
    assert loss.dtype == np.float32
    loss.backward()
    for t in (x, w, b, *inter):
        assert t.dtype == np.float32 and t.grad.dtype == np.float32, t._ctx.fn.__name__


def test_default_dtype_and_explicit_float64():
    assert mm.tensor([1.0, 2.0]).dtype == np.float32
    assert mm.tensor(np.array([1.0])).dtype == np.float64  # arrays keep their dtype
    assert mm.tensor([1, 2]).dtype.kind == "i"
    prev = mm.get_default_dtype()
    try:
        mm.set_default_dtype(np.float64)
        assert mm.tensor([1.0]).dtype == np.float64 and mm.randn(2).dtype == np.float64
    finally:
        mm.set_default_dtype(prev)
    x = leaf(3)
    (mm.exp(x) * 2.0).sum().backward()
    assert x.grad.dtype == np.float64


def test_reductions_to_a_scalar_hold_arrays():
    x = leaf(3, 2)
    for y in (x.sum(), x.mean(), x.max(), mm.cross_entropy(x, np.array([0, 1, 1])),
              x[:, 0] @ x[:, 1]):
        assert isinstance(y.data, np.ndarray) and y.shape == ()


# ---------------------------------------------------------------------------------------------
# Errors name the op, the argument, what was expected and what came
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call,exc,pattern", [
    (lambda: mm.matmul(leaf(2, 3), leaf(4, 5)), ValueError, r"matmul: inner dimensions differ"),
    (lambda: mm.matmul(leaf(2, 2, 3), leaf(3, 3, 1)), ValueError, r"matmul: batch dimensions"),
    (lambda: mm.matmul(mm.tensor(2.0), leaf(3)), ValueError, r"matmul: argument 'a'"),
    (lambda: leaf(2, 3) + leaf(4), ValueError, r"add: shapes \(2, 3\) and \(4,\) do not broadcast"),
    (lambda: leaf(2, 3) * leaf(3, 2), ValueError, r"mul: shapes"),
    (lambda: mm.add(leaf(2), "a"), TypeError, r"add: argument 'b' must be a Tensor"),
    (lambda: mm.reshape(leaf(2, 3), (4, 2)), ValueError, r"reshape: cannot reshape .*\(2, 3\)"),
    (lambda: mm.reshape(leaf(2, 3), (-1, -1)), ValueError, r"reshape"),
    (lambda: mm.transpose(leaf(2, 3), (0, 3)), ValueError, r"transpose: axes \(0, 3\) out of"),
    (lambda: mm.transpose(leaf(2, 3), (0, 0)), ValueError, r"transpose: axes"),
    (lambda: mm.concatenate([leaf(2, 3), leaf(2, 4)], axis=0), ValueError,
     r"concatenate: tensors\[1\] has shape \(2, 4\)"),
    (lambda: mm.concatenate([], axis=0), TypeError, r"concatenate: expected a non-empty list"),
    (lambda: mm.concatenate([leaf(2), np.ones(2)]), TypeError, r"concatenate: argument 'tensors\[1\]'"),
    (lambda: mm.stack([leaf(2), leaf(3)]), ValueError, r"stack: tensors\[1\] has shape"),
    (lambda: mm.cross_entropy(leaf(3, 4), np.array([0, 1])), ValueError,
     r"cross_entropy: targets shape \(2,\) must equal .*\(3,\)"),
    (lambda: mm.cross_entropy(leaf(3, 4), np.array([0.0, 1.0, 2.0])), TypeError,
     r"cross_entropy: targets must be integers"),
    (lambda: mm.cross_entropy(leaf(3, 4), np.array([0, 4, 1])), ValueError,
     r"cross_entropy: targets must lie in \[0, 4\)"),
    (lambda: mm.cross_entropy(leaf(3, 4), np.array([0, -1, 1])), ValueError, r"cross_entropy"),
    (lambda: mm.cross_entropy(leaf(3, 4), np.array([0, 1, 1]), reduction="avg"), ValueError,
     r"cross_entropy: reduction"),
    (lambda: mm.sum(leaf(2, 3), axis=2), ValueError, r"sum: axis 2 is out of range"),
    (lambda: mm.mean(leaf(2, 3), axis=(0, 0)), ValueError, r"mean: repeated axis"),
    (lambda: mm.var(leaf(1), ddof=1), ValueError, r"var: ddof=1"),
    (lambda: mm.max(mm.zeros(0)), ValueError, r"max: cannot reduce an empty tensor"),
    (lambda: mm.softmax(leaf(2, 3), axis=(0, 1)), TypeError, r"softmax: axis must be an int"),
    (lambda: mm.softmax(mm.tensor([1, 2])), TypeError, r"softmax: argument 'x' must be floating"),
    (lambda: mm.tril(leaf(3)), ValueError, r"tril: expected at least 2 dims"),
    (lambda: mm.topk(leaf(2, 3), 4), ValueError, r"topk: k must be an int in \[1, 3\]"),
    (lambda: mm.take_along_axis(leaf(2, 3), np.array([0, 1]), 1), ValueError,
     r"take_along_axis: indices must have x's 2 dims"),
    (lambda: mm.take_along_axis(leaf(2, 3), np.zeros((2, 1)), 1), TypeError,
     r"take_along_axis: indices must be integers"),
    (lambda: mm.index_add(leaf(3, 2), 0, np.array([0, 1]), leaf(3, 2)), ValueError,
     r"index_add: src must have shape \(2, 2\)"),
    (lambda: mm.where(np.array([1, 0]), leaf(2), leaf(2)), TypeError, r"where: cond must be boolean"),
    (lambda: mm.where(np.array([True, False]), leaf(2), leaf(3)), ValueError, r"where: shapes"),
    (lambda: mm.mse_loss(leaf(2, 3), leaf(3)), ValueError, r"mse_loss: target shape \(3,\)"),
    (lambda: mm.mse_loss(leaf(2, 3), 1.0), ValueError, r"mse_loss: target shape \(\)"),
    (lambda: mm.broadcast_to(leaf(2, 3), (3, 3)), ValueError, r"broadcast_to: cannot broadcast"),
    (lambda: mm.squeeze(leaf(2, 3), 0), ValueError, r"squeeze: axis 0 has length 2"),
    (lambda: mm.einsum("ij,jk->ik", leaf(2, 3), leaf(4, 2)), ValueError,
     r"einsum: index 'j' has size 3"),
    (lambda: mm.einsum("ij,jk->ik", leaf(2, 3)), ValueError, r"einsum: subscripts name 2 operands"),
    (lambda: mm.einsum("ii->i", leaf(2, 2)), ValueError, r"einsum: repeated index"),
    (lambda: mm.exp(np.ones(3)), TypeError, r"exp: argument 'x' must be a Tensor"),
    (lambda: leaf(2, 3)[5], IndexError, r"getitem: index 5 is invalid for shape \(2, 3\)"),
    (lambda: mm.tensor([1, 2], requires_grad=True), TypeError, r"only floating tensors"),
    (lambda: mm.tensor(["a"]), TypeError, r"tensor: expected numeric data"),
    (lambda: mm.randn(2, -1), ValueError, r"randn: shape must be non-negative ints"),
    (lambda: leaf(2, 3).sum(axis=0).backward(), RuntimeError, r"backward: grad can be implicitly"),
    (lambda: (leaf(2) * 2.0).backward(np.ones(3)), ValueError, r"backward: grad must have"),
    (lambda: leaf(3).item(), ValueError, r"Tensor.item: expected a tensor with one element"),
    (lambda: bool(leaf(3)), ValueError, r"Tensor.__bool__"),
])
def test_errors_name_the_op(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


# ---------------------------------------------------------------------------------------------
# Memory accounting
# ---------------------------------------------------------------------------------------------
def test_track_memory_counts_saved_arrays_and_frees_them():
    x, w = leaf(3, 4), leaf(3, 4, seed=1)        # 12 float64 = 96 bytes each
    with mm.track_memory() as m:
        y = (x * w).exp().sum()                  # Mul saves a, b; Exp saves its output
        assert m.current_bytes == 96 + 96 + 96
        y.backward()
    assert m.peak_bytes == 288
    assert m.current_bytes == 0


def test_track_memory_drops_to_zero_when_a_graph_is_garbage_collected():
    x = leaf(10, dtype=np.float32)               # 40 bytes
    with mm.track_memory() as outer:
        with mm.track_memory() as inner:
            y = mm.tanh(x * x)                   # Mul: 2 x 40, Tanh: 40
        z = mm.sigmoid(y)                        # only the outer tracker sees this one: 40
        assert inner.current_bytes == 120 and outer.current_bytes == 160
        del y, z
        gc.collect()
        assert inner.current_bytes == 0 and outer.current_bytes == 0
        assert inner.peak_bytes == 120 and outer.peak_bytes == 160
        with mm.no_grad():
            mm.exp(x * x)                        # nothing is recorded without grad
        assert outer.current_bytes == 0 and outer.peak_bytes == 160


# ---------------------------------------------------------------------------------------------
# gradcheck itself
# ---------------------------------------------------------------------------------------------
class SquareWrongAtOneElement(Function):
    """y = a^2 with a backward that is right except at flat element 4 (a planted bug)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * a

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        grad = 2 * g * a
        grad.flat[4] += 0.5 * g.flat[4]  # wrong on the diagonal entry of element 4 only
        return (grad,)


def test_gradcheck_catches_a_planted_bug_and_names_input_and_element():
    x = leaf(3, 3)
    with pytest.raises(GradcheckError) as info:
        mm.gradcheck(SquareWrongAtOneElement.apply, (x,))
    msg = str(info.value)
    assert "FAILED" in msg
    assert re.search(r"input 0 \(3, 3\).*<- element \('output 4', \(1, 1\)\)", msg), msg
    report = mm.gradcheck(SquareWrongAtOneElement.apply, (x,), raise_exception=False)
    assert not report and not report.passed
    (r,) = report.inputs
    assert r.worst_element == ("output 4", (1, 1))
    a = x.numpy()[1, 1]
    assert r.analytical == pytest.approx(2 * a + 0.5, rel=1e-9)
    assert r.numerical == pytest.approx(2 * a, rel=1e-6)
    assert r.max_abs_error == pytest.approx(0.5, rel=1e-6)


def test_gradcheck_names_the_wrong_input_of_two():
    a, b = leaf(3, seed=1), leaf(3, seed=2)
    report = mm.gradcheck(MulWrongSecondGradient.apply, (a, b), raise_exception=False)
    assert [r.passed for r in report.inputs] == [True, False]
    lines = str(report).splitlines()
    assert "<-" not in lines[1] and lines[1].strip().startswith("input 0")
    assert lines[2].strip().startswith("input 1") and "<- element" in lines[2]
    # only b requires grad: the passing input is not even checked
    b_only = mm.gradcheck(MulWrongSecondGradient.apply, (a.detach(), b), raise_exception=False)
    assert [r.index for r in b_only.inputs] == [1] and not b_only


def test_gradcheck_fast_mode_agrees():
    x = leaf(3, 3)
    assert not mm.gradcheck(SquareWrongAtOneElement.apply, (x,), fast=True,
                            raise_exception=False)
    assert not mm.gradcheck(MulWrongSecondGradient.apply, (leaf(4), leaf(4, seed=1)), fast=True,
                            raise_exception=False)
    good = mm.gradcheck(lambda x: mm.softmax(x * x), (x,), fast=True)
    assert good and good.fast and "fast" in str(good)
    with pytest.raises(GradcheckError, match="input 0"):
        mm.gradcheck(SquareWrongAtOneElement.apply, (x,), fast=True)


def test_gradcheck_report_truthiness_and_tolerances():
    x = leaf(2, 3)
    report = mm.gradcheck(lambda x: mm.tanh(x) * x, (x,))
    assert report and report.passed and bool(report) is True
    assert 0 <= report.max_rel_error < 1e-6 and report.max_abs_error < 1e-8
    # a 1% error passes a 2% relative tolerance and fails the default 0.1%
    class OnePercentOff(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 3.0

        @staticmethod
        def backward(ctx, g):
            return (g * 3.03,)

    assert mm.gradcheck(OnePercentOff.apply, (x,), rtol=2e-2)
    assert not mm.gradcheck(OnePercentOff.apply, (x,), raise_exception=False)


def test_gradcheck_input_checks_and_edge_cases():
    with pytest.raises(ValueError, match="gradcheck: no input has requires_grad"):
        mm.gradcheck(mm.exp, (mm.tensor(np.ones(2)),))
    with pytest.raises(TypeError, match="gradcheck: input 0 has dtype float32"):
        mm.gradcheck(mm.exp, (mm.randn(2, requires_grad=True),))
    with pytest.raises(TypeError, match="gradcheck: fn must be callable"):
        mm.gradcheck(3, (leaf(2),))
    with pytest.raises(TypeError, match="gradcheck: fn must return a floating Tensor"):
        mm.gradcheck(lambda x: 3, (leaf(2),))
    assert mm.gradcheck(lambda x: x[0:0], (leaf(3, 2),))  # an empty output passes trivially
    assert mm.gradcheck(mm.exp, leaf(2))                  # a single tensor instead of a tuple
    # several outputs are checked together
    assert mm.gradcheck(lambda x: (mm.exp(x), x.sum()), (leaf(3),))


# ---------------------------------------------------------------------------------------------
# The registry and the kernels without JIT
# ---------------------------------------------------------------------------------------------
def test_the_engine_registers_its_cases():  # they run in tests/apps/test_gradcheck_cases.py
    from minimem.autograd.registry import cases

    assert len(cases("engine")) >= 47


def test_kernel_tests_pass_without_jit():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
         "tests/kernels/test_kernels_engine.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"\d+ passed", proc.stdout)
