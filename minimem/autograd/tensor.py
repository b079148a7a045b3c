"""The Tensor: an ``xp`` array, an optional gradient, and a link to the node that made it."""
from __future__ import annotations

import numbers

import numpy as np

from ..backend import (
    device_of,
    get_default_dtype,
    get_rng,
    get_xp,
    to_device,
    to_numpy,
    xp_for_device,
)
from . import function as _function
from .sparse import RowSparseGrad


def _as_array(data, dtype=None, device=None):
    """Turn data (a list, scalar, numpy/cupy array or Tensor) into an array of the right dtype."""
    if isinstance(data, Tensor):
        data = data.data
    xp = get_xp(data) if device is None else xp_for_device(device)
    if device is not None:
        data = to_device(data, device) if hasattr(data, "shape") else data
    arr = xp.asarray(data)
    if dtype is not None:
        dt = np.dtype(dtype)
        if arr.dtype != dt:
            arr = arr.astype(dt)
    elif arr.dtype.kind == "f" and arr.dtype != get_default_dtype() and not hasattr(data, "dtype"):
        arr = arr.astype(get_default_dtype())  # Python floats/lists follow the default dtype
    elif arr.dtype.kind == "b" or arr.dtype.kind in "iu":
        pass
    elif arr.dtype.kind not in "fc":
        raise TypeError(f"tensor: expected numeric data, got dtype {arr.dtype}")
    return arr


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    ``requires_grad=True`` makes it a leaf whose ``.grad`` (a Tensor) is filled by
    ``backward()``. Tensors produced by operations carry ``_ctx``, the node of the tape.
    """

    __array_priority__ = 100  # numpy_array * tensor -> Tensor.__rmul__
    __slots__ = ("data", "grad", "requires_grad", "_ctx", "_out_idx", "_retains_grad",
                 "__weakref__")

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _as_array(data, dtype)
        # real floating only: PyTorch also admits complex, but no op here has a complex
        # derivative, so a complex leaf would get a silently wrong gradient
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"Tensor: only floating tensors can require grad, got dtype {self.data.dtype}"
            )
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None
        self._out_idx = 0
        self._retains_grad = False

    @classmethod
    def _from_op(cls, array, ctx, idx):
        t = cls.__new__(cls)
        t.data, t.grad, t.requires_grad = array, None, True
        t._ctx, t._out_idx, t._retains_grad = ctx, idx, False
        return t

    # -- basic properties -----------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)
    device = property(lambda self: device_of(self.data))
    is_leaf = property(lambda self: self._ctx is None)
    T = property(lambda self: _ops.transpose(self))

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = np.array2string(to_numpy(self.data), precision=4, separator=", ", prefix="tensor(")
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self.dtype != get_default_dtype() and self.dtype.kind == "f":
            extra = f", dtype={self.dtype}" + extra
        return f"tensor({body}{extra})"

    def __array__(self, dtype=None, copy=None):
        a = to_numpy(self.data)
        return a.astype(dtype) if dtype is not None else a

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(
                f"Tensor.__bool__: the truth value of a tensor of shape {self.shape} is ambiguous"
            )
        return bool(self.data)

    def __hash__(self):
        return id(self)

    # -- autograd -------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) * grad into every leaf's ``.grad``."""
        _function.backward(self, grad, retain_graph=retain_graph)

    def _accumulate(self, g, copy=True):
        # .grad is a Tensor, or a RowSparseGrad while only sparse gradients have arrived
        # (sparse + sparse stays sparse; anything + dense is dense)
        if isinstance(g, RowSparseGrad):
            if self.grad is None or isinstance(self.grad, RowSparseGrad):
                self.grad = g if self.grad is None else self.grad + g
            else:
                self.grad.data = g.add_to(self.grad.data)
        elif isinstance(self.grad, RowSparseGrad):
            self.grad = Tensor(self.grad.add_to(g))
        elif self.grad is None:
            self.grad = Tensor(g.copy() if copy else g)
        else:
            self.grad.data = self.grad.data + g

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward (as in PyTorch)."""
        self._retains_grad = True
        return self

    def detach(self):
        """The same data, cut from the graph (no gradient flows back through it)."""
        return Tensor(self.data)

    def requires_grad_(self, flag=True):
        if flag and self.dtype.kind != "f":
            raise TypeError(f"requires_grad_: dtype {self.dtype} cannot require grad")
        self.requires_grad = bool(flag)
        return self

    def zero_grad(self):
        self.grad = None

    # -- conversion -----------------------------------------------------------------------
    def numpy(self):
        """The data as a NumPy array (copied from the GPU when needed; not copied on CPU)."""
        return to_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"Tensor.item: expected a tensor with one element, got {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return to_numpy(self.data).tolist()

    def to(self, device):
        """Move to ``"cpu"`` or ``"cuda"``; differentiable (the gradient moves back)."""
        if device == self.device:
            return self
        return _ops.to_device(self, device)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def astype(self, dtype):
        """A differentiable cast (gradients flow back in the input's dtype)."""
        return _ops.astype(self, dtype)

    def float(self):
        return self.astype(np.float32)

    def double(self):
        return self.astype(np.float64)

    # -- operators ------------------------------------------------------------------------
    def __add__(self, other): return _ops.add(self, other)
    def __radd__(self, other): return _ops.add(other, self)
    def __sub__(self, other): return _ops.sub(self, other)
    def __rsub__(self, other): return _ops.sub(other, self)
    def __mul__(self, other): return _ops.mul(self, other)
    def __rmul__(self, other): return _ops.mul(other, self)
    def __truediv__(self, other): return _ops.div(self, other)
    def __rtruediv__(self, other): return _ops.div(other, self)
    def __pow__(self, other): return _ops.pow(self, other)
    def __rpow__(self, other): return _ops.pow(other, self)
    def __matmul__(self, other): return _ops.matmul(self, other)
    def __rmatmul__(self, other): return _ops.matmul(other, self)
    def __neg__(self): return _ops.neg(self)
    def __getitem__(self, index): return _ops.getitem(self, index)

    # Comparisons give plain boolean tensors (no gradient), as in PyTorch.
    def _cmp(self, other, op):
        o = other.data if isinstance(other, Tensor) else other
        return Tensor(op(self.data, o))

    def __lt__(self, other): return self._cmp(other, lambda a, b: a < b)
    def __le__(self, other): return self._cmp(other, lambda a, b: a <= b)
    def __gt__(self, other): return self._cmp(other, lambda a, b: a > b)
    def __ge__(self, other): return self._cmp(other, lambda a, b: a >= b)

    # -- methods that forward to the ops module --------------------------------------------
    def sum(self, axis=None, keepdims=False): return _ops.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return _ops.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return _ops.max(self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return _ops.min(self, axis, keepdims)
    def var(self, axis=None, keepdims=False, ddof=0): return _ops.var(self, axis, keepdims, ddof)
    def exp(self): return _ops.exp(self)
    def log(self): return _ops.log(self)
    def sqrt(self): return _ops.sqrt(self)
    def abs(self): return _ops.abs(self)
    def tanh(self): return _ops.tanh(self)
    def sigmoid(self): return _ops.sigmoid(self)
    def relu(self): return _ops.relu(self)
    def softmax(self, axis=-1): return _ops.softmax(self, axis)
    def log_softmax(self, axis=-1): return _ops.log_softmax(self, axis)
    def logsumexp(self, axis=-1, keepdims=False): return _ops.logsumexp(self, axis, keepdims)

    def reshape(self, *shape):
        return _ops.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        return _ops.transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    def swapaxes(self, a, b): return _ops.swapaxes(self, a, b)
    def broadcast_to(self, shape): return _ops.broadcast_to(self, shape)
    def expand_dims(self, axis): return _ops.expand_dims(self, axis)
    def squeeze(self, axis=None): return _ops.squeeze(self, axis)


# ---------------------------------------------------------------------------------------------
# Constructors
# ---------------------------------------------------------------------------------------------
def tensor(data, requires_grad=False, dtype=None, device=None):
    """A new leaf tensor from data (a list, scalar or array); floats get the default dtype."""
    if isinstance(data, Tensor):
        data = data.data
    arr = _as_array(data, dtype, device)
    if not isinstance(data, Tensor) and hasattr(data, "shape") and arr is data:
        arr = arr.copy()  # a leaf owns its data
    return Tensor(arr, requires_grad=requires_grad)


def _shape_arg(fn, shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if not all(isinstance(s, numbers.Integral) and s >= 0 for s in shape):
        raise ValueError(f"{fn}: shape must be non-negative ints, got {shape}")
    return tuple(int(s) for s in shape)


def _dtype_arg(dtype):
    return np.dtype(dtype) if dtype is not None else get_default_dtype()


def zeros(*shape, dtype=None, requires_grad=False, device="cpu"):
    xp = xp_for_device(device)
    return Tensor(xp.zeros(_shape_arg("zeros", shape), dtype=_dtype_arg(dtype)), requires_grad)


def ones(*shape, dtype=None, requires_grad=False, device="cpu"):
    xp = xp_for_device(device)
    return Tensor(xp.ones(_shape_arg("ones", shape), dtype=_dtype_arg(dtype)), requires_grad)


def full(shape, value, dtype=None, requires_grad=False, device="cpu"):
    xp = xp_for_device(device)
    shape = _shape_arg("full", (shape,) if isinstance(shape, int) else (tuple(shape),))
    return Tensor(xp.full(shape, value, dtype=_dtype_arg(dtype)), requires_grad)


def randn(*shape, seed=None, dtype=None, requires_grad=False, device="cpu"):
    """Standard normal samples; ``seed`` (int or Generator) or the global ``manual_seed``."""
    shape = _shape_arg("randn", shape)
    arr = get_rng(seed).standard_normal(shape).astype(_dtype_arg(dtype))
    return Tensor(to_device(arr, device), requires_grad)


def rand(*shape, seed=None, dtype=None, requires_grad=False, device="cpu"):
    """Uniform samples in [0, 1)."""
    shape = _shape_arg("rand", shape)
    arr = get_rng(seed).random(shape).astype(_dtype_arg(dtype))
    return Tensor(to_device(arr, device), requires_grad)


def arange(start, stop=None, step=1, dtype=None, device="cpu"):
    xp = xp_for_device(device)
    if stop is None:
        start, stop = 0, start
    arr = xp.arange(start, stop, step)
    if dtype is not None:
        arr = arr.astype(np.dtype(dtype))
    elif arr.dtype.kind == "f":
        arr = arr.astype(get_default_dtype())
    return Tensor(arr)


def zeros_like(t, dtype=None):
    return Tensor(get_xp(t.data).zeros_like(t.data, dtype=dtype))


def ones_like(t, dtype=None):
    return Tensor(get_xp(t.data).ones_like(t.data, dtype=dtype))


# Imported last: ops import Tensor (methods look them up at call time), and the check
# vocabulary, which sits below the engine, learns what a Tensor is.
from ..checks import register_tensor_type as _register_tensor_type
from . import ops as _ops

_register_tensor_type(Tensor)
