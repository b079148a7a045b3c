r"""Functions, contexts and reverse-mode backpropagation.

An operation is a :class:`Function` with two static methods side by side:

* ``forward(ctx, *arrays, **params)`` computes the output array(s) from input arrays and
  stores what the backward needs with ``ctx.save_for_backward``;
* ``backward(ctx, *grad_outputs)`` returns one gradient per positional input
  (``None`` where the input is not a tensor or needs no gradient).

Every call records a node (its ``Context``) on the tape. ``Tensor.backward`` walks the nodes in
reverse topological order (an explicit stack, so a chain of 10^5 nodes does not hit Python's
recursion limit) and *accumulates* (``+=``) the gradient each node sends to its inputs, which is
what makes fan-out, diamonds and ``x * x`` come out right:

.. math::  \bar{x} = \sum_{\text{uses } u \text{ of } x} \bar{u}\, \frac{\partial u}{\partial x}.

Broadcasting is undone in exactly one place, :func:`sum_to_shape`, applied by the engine when a
gradient reaches an input of a different shape.

The walk keeps its own arrays cheap: the first gradient that reaches a tensor is kept as it
came (no copy); the second is added into a new array, which the walk then owns and adds every
later one into in place (a tensor read by k operations costs one new array, not k - 1); a node
frees its saved arrays as soon as its backward has run, and an output that received no
gradient reaches the backward as zeros, or as None for a Function that sets
``materialize_grads = False``.

A backward may return a :class:`~minimem.autograd.sparse.RowSparseGrad` for a table input (a
memory read, an embedding lookup): a leaf keeps it as its ``.grad`` (sparse + sparse stays
sparse, anything + dense is dense); for any other tensor the engine makes it dense first, so
an operation's backward only ever receives arrays.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from ..backend import get_xp
from .sparse import RowSparseGrad

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Inside this block operations record no graph (as ``torch.no_grad``)."""
    prev = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = prev


@contextlib.contextmanager
def enable_grad():
    prev = is_grad_enabled()
    _state.grad_enabled = True
    try:
        yield
    finally:
        _state.grad_enabled = prev


# ---------------------------------------------------------------------------------------------
# Memory accounting: the bytes of arrays held by live tapes (saved for backward).
# ---------------------------------------------------------------------------------------------
class MemoryTracker:
    """Counts the bytes of arrays saved for backward by nodes created inside the block.

    ``current_bytes`` goes up when a node saves arrays and down when the node is freed
    (after ``backward`` or when the graph is garbage collected); ``peak_bytes`` is its maximum.
    """

    def __init__(self):
        self.current_bytes = 0
        self.peak_bytes = 0

    def _add(self, n: int) -> None:
        self.current_bytes += n
        if self.current_bytes > self.peak_bytes:
            self.peak_bytes = self.current_bytes

    def _sub(self, n: int) -> None:
        self.current_bytes -= n

    def __repr__(self):
        return f"MemoryTracker(current_bytes={self.current_bytes}, peak_bytes={self.peak_bytes})"


_trackers: list[MemoryTracker] = []


@contextlib.contextmanager
def track_memory():
    """``with track_memory() as m: ...`` then read ``m.peak_bytes`` (bytes held by tapes)."""
    tracker = MemoryTracker()
    _trackers.append(tracker)
    try:
        yield tracker
    finally:
        _trackers.remove(tracker)


def _nbytes(arrays) -> int:
    total = 0
    for a in arrays:
        if hasattr(a, "nbytes"):
            total += int(a.nbytes)
        elif isinstance(a, (tuple, list)):
            total += _nbytes(a)
    return total


# ---------------------------------------------------------------------------------------------
class Context:
    """The node of one recorded operation: its Function, inputs and saved arrays."""

    __slots__ = ("fn", "inputs", "saved", "needs_input_grad", "n_outputs", "out_meta",
                 "_trackers", "_saved_bytes", "__dict__")

    def __init__(self, fn, inputs, needs_input_grad=None):
        self.fn = fn
        self.inputs = inputs  # tuple of Tensor-or-None, one per positional argument
        self.needs_input_grad = (tuple(t is not None and t.requires_grad for t in inputs)
                                 if needs_input_grad is None else needs_input_grad)
        self.saved = ()
        self.n_outputs = 1
        self.out_meta = ()  # (shape, dtype, xp) per output, to build zero grads
        self._trackers = ()
        self._saved_bytes = 0

    def save_for_backward(self, *arrays) -> None:
        self.saved = arrays
        if _trackers:
            self._saved_bytes = _nbytes(arrays)
            self._trackers = tuple(_trackers)
            for t in self._trackers:
                t._add(self._saved_bytes)

    @property
    def saved_tensors(self):
        if self.saved is None:
            raise RuntimeError(
                f"backward: the graph through {self.fn.__name__} was already freed by an earlier "
                "backward(); call backward(retain_graph=True) the first time to backpropagate twice"
            )
        return self.saved

    def free(self) -> None:
        for t in self._trackers:
            t._sub(self._saved_bytes)
        self._trackers = ()
        self._saved_bytes = 0
        self.saved = None

    def __del__(self):
        for t in self._trackers:
            t._sub(self._saved_bytes)


class Function:
    """Base class of differentiable operations; subclasses define forward and backward."""

    #: False: an output that received no gradient reaches backward() as None, not as zeros
    materialize_grads = True

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise TypeError(f"{ctx.fn.__name__} (a Function) must define a static forward()")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise TypeError(f"{ctx.fn.__name__} (a Function) must define a static backward()")

    @classmethod
    def apply(cls, *args, **kwargs):
        Tensor = _tensor_class()
        tensors, raw, needs = [], [], []
        for a in args:  # one plain loop: this runs for every operation
            if isinstance(a, Tensor):
                tensors.append(a)
                raw.append(a.data)
                needs.append(a.requires_grad)
            else:
                tensors.append(None)
                raw.append(a)
                needs.append(False)
        needs_grad = True in needs and is_grad_enabled()
        ctx = Context(cls, tuple(tensors), tuple(needs))
        out = cls.forward(ctx, *raw, **kwargs)
        multi = isinstance(out, tuple)
        # NumPy reductions to a scalar give np.float64 etc.; a Tensor always holds an array.
        outs = tuple(np.asarray(o) if isinstance(o, np.generic) else o
                     for o in (out if multi else (out,)))
        if needs_grad:
            ctx.n_outputs = len(outs)
            ctx.out_meta = tuple((o.shape, o.dtype) for o in outs)
            # only floating outputs join the graph (PyTorch's rule): a cast to an integer
            # dtype, or an index output, is a plain tensor through which no gradient flows
            results = tuple(Tensor(o) if getattr(o, "dtype", _F8).kind != "f" else
                            Tensor._from_op(o, ctx, i) for i, o in enumerate(outs))
        else:
            ctx.free()
            results = tuple(Tensor(o) for o in outs)
        return results if multi else results[0]


_TENSOR = []
_F8 = np.dtype(np.float64)


def _tensor_class():
    """``tensor.Tensor`` (imported on first use: tensor.py imports this module)."""
    if not _TENSOR:
        from .tensor import Tensor

        _TENSOR.append(Tensor)
    return _TENSOR[0]


def sum_to_shape(grad, shape):
    """Undo broadcasting: sum ``grad`` over the axes that broadcasting added or stretched."""
    if grad.shape == tuple(shape):
        return grad
    xp = get_xp(grad)
    n_lead = grad.ndim - len(shape)
    if n_lead < 0:
        raise ValueError(f"backward: gradient of shape {grad.shape} cannot reduce to {shape}")
    # Exercise 0.2 (2 pt): un-broadcast: sum grad over the leading axes broadcasting added and
    # over the axes where shape has 1 but grad does not, giving an array of exactly `shape`.
    ### BEGIN SOLUTION
    axes = tuple(range(n_lead)) + tuple(
        n_lead + i for i, s in enumerate(shape) if s == 1 and grad.shape[n_lead + i] != 1
    )
    out = grad.sum(axis=axes, keepdims=True) if axes else grad
    if n_lead:
        out = out.reshape(out.shape[n_lead:])
    ### END SOLUTION
    return xp.reshape(out, shape)


def _topological_order(root_ctx):
    """Nodes reachable from ``root_ctx``, each after all nodes that consume its outputs."""
    # Exercise 0.5 (2 pt): topological sort without recursion: return every node reachable from
    # root_ctx (through node.inputs[i]._ctx) so that each node comes before the nodes it consumes.
    ### BEGIN SOLUTION
    order, visited = [], set()
    stack = [(root_ctx, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for t in node.inputs:
            if t is not None and t._ctx is not None and id(t._ctx) not in visited:
                stack.append((t._ctx, False))
    order.reverse()  # consumers first
    ### END SOLUTION
    return order


def _sparse_input_grad(node, t, g):
    """A row-sparse gradient from ``node``'s backward for input ``t``: checked, cast to ``t``'s
    dtype, and made dense unless ``t`` is a leaf (an operation's backward gets arrays only)."""
    if g.shape != t.shape:
        raise RuntimeError(f"{node.fn.__name__}.backward returned a row-sparse gradient of "
                           f"shape {g.shape} for an input of shape {t.shape}")
    g = g.astype(t.dtype)
    return g if t._ctx is None else g.to_dense()


def backward(tensor, grad=None, retain_graph=False) -> None:
    """Backpropagate from ``tensor``; leaves with ``requires_grad`` get ``.grad`` accumulated."""
    from .tensor import Tensor

    if not tensor.requires_grad:
        raise RuntimeError(
            "backward: the tensor does not require grad (no input had requires_grad=True, "
            "or it was computed under no_grad())"
        )
    xp = get_xp(tensor.data)
    if grad is None:
        if tensor.data.size != 1:
            raise RuntimeError(
                f"backward: grad can be implicitly created only for a scalar output, "
                f"got shape {tensor.shape}; pass grad= of the same shape"
            )
        grad = xp.ones_like(tensor.data)
    else:
        grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=tensor.dtype)
        if grad.shape != tensor.shape:
            raise ValueError(
                f"backward: grad must have the tensor's shape {tensor.shape}, got {grad.shape}"
            )
    if tensor._ctx is None or tensor._retains_grad:
        tensor._accumulate(grad)
    if tensor._ctx is None:  # a leaf: nothing to propagate
        return

    pending = {}  # id(node) -> _Slots: the gradients that have reached the node's outputs
    _arrive(pending, tensor, grad)
    for node in _topological_order(tensor._ctx):
        arrived = pending.pop(id(node), None)
        if arrived is None:
            continue
        if node.saved is None:
            node.saved_tensors  # raises the "graph freed" error
        out_grads = arrived.grads
        if node.fn.materialize_grads:
            out_grads = [g if g is not None else xp.zeros(shape, dtype=dt)
                         for g, (shape, dt) in zip(out_grads, node.out_meta)]
        in_grads = node.fn.backward(node, *out_grads)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        if len(in_grads) != len(node.inputs):
            raise RuntimeError(
                f"{node.fn.__name__}.backward returned {len(in_grads)} gradients "
                f"for {len(node.inputs)} inputs"
            )
        for t, g in zip(node.inputs, in_grads):
            if t is None or g is None or not t.requires_grad:
                continue
            if isinstance(g, RowSparseGrad):
                g = _sparse_input_grad(node, t, g)
                if t._ctx is None:   # a leaf keeps the sparse form (in .grad)
                    t._accumulate(g)
                    continue
            g = sum_to_shape(g, t.shape)
            if g.dtype != t.dtype:
                g = g.astype(t.dtype)
            if t._retains_grad or t._ctx is None:
                # A fresh array that no one else holds becomes .grad without a copy, so a
                # sparse write into a lazily zeroed table (a memory read) stays sparse in cost.
                fresh = (g.base is None and not any(g is o for o in out_grads)
                         and sum(g is h for h in in_grads) == 1)
                t._accumulate(g, copy=not fresh or t._ctx is not None)
            if t._ctx is not None:
                _arrive(pending, t, g)
        del arrived, out_grads, in_grads  # this node's arrays go before the next one allocates
        if not retain_graph:
            node.free()


def _arrive(pending, t, g):
    """Add the gradient ``g`` of the non-leaf ``t`` to its node's pending slots."""
    slots = pending.get(id(t._ctx))
    if slots is None:
        slots = pending[id(t._ctx)] = _Slots(t._ctx.n_outputs)
    slots.add(t._out_idx, g)


class _Slots:
    """The gradients arriving at one node's outputs, summed as they come.

    The first array is kept as it came: it may be shared (an ``Add`` sends one array to both
    inputs; a reshape sends a view), so the walk never writes into it. The second is added
    into a new array that only the walk holds, and every later one into that array, in place.
    """

    __slots__ = ("grads", "owned")

    def __init__(self, n):
        self.grads = [None] * n
        self.owned = [False] * n

    def add(self, i, g):
        prev = self.grads[i]
        if prev is None:
            self.grads[i] = g
        elif self.owned[i]:
            prev += g
        else:   # asarray: NumPy sums two 0-d arrays to a scalar, which += would not update
            self.grads[i] = get_xp(prev).asarray(prev + g)
            self.owned[i] = True
