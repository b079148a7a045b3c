r"""Row-sparse gradients: the gradient of a table of which a step reads only a few rows.

A memory read :math:`o_m = \sum_j w_{mj} V[i_{mj}]` from a table :math:`V` (N, d) sends back

.. math::  \bar V = \sum_{m, j} w_{mj}\, e_{i_{mj}}\, \bar o_m^\top ,

which is zero outside the M J rows read. Stored densely it is an (N, d) array (4 GB for
:math:`1024^2` slots of width 1024 in float32), written in a few scattered rows. A
:class:`RowSparseGrad` keeps the factors instead: rows ``idx`` (M, J), weights ``w`` (M, J)
and source vectors ``src`` (M, d), meaning

.. math::  \bar V = \sum_{m, j} w_{mj}\, e_{\text{idx}[m, j]}\, \text{src}[m]^\top ,

repeats included (they add). For the read that is :math:`O(M d + M J)` numbers, where even the
list of rows with their vectors would be :math:`O(M J d)` (0.5 GB for a batch of 1024 tokens,
4 heads, k = 32, d = 1024). A plain list of (row, vector) pairs is the case J = 1, w = 1:
``RowSparseGrad(indices, values, shape)``.

Only a leaf (a parameter) keeps a row-sparse ``.grad``: the engine turns it into a dense array
before it reaches an operation's backward, and :mod:`minimem.optim` updates only the rows
present (``SGD`` in place, ``SparseAdam`` lazily). Operations opt in
(``weighted_read(..., sparse_grad=True)``, ``Embedding(sparse=True)``), as ``sparse=True`` in
PyTorch's embeddings.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..backend import get_xp, to_numpy
from ..kernels.sparse_rows import coalesce_rows
from ..kernels.weighted_read import scatter_weighted_rows


def _shape_of(a):
    return getattr(a, "shape", None)


def _check_shape(shape):
    shape = tuple(int(s) for s in shape)
    if len(shape) < 1:
        raise ValueError("RowSparseGrad: shape must have at least one axis (the rows), got ()")
    return shape


class RowSparseGrad:
    """``dense[indices[i]] += values[i]`` for each i, on a table of shape ``shape``.

    ``indices`` (n,) integers in [0, shape[0]), ``values`` ``(n, *shape[1:])``. The grouped form
    (:meth:`grouped`) stands for ``values[m J + j] = w[m, j] * src[m]`` without forming it.
    ``coalesced`` is True when each row appears once, ascending (see :meth:`coalesce`).
    """

    __slots__ = ("idx", "w", "src", "shape", "coalesced")
    __array_ufunc__ = None   # ``array + grad`` calls our __radd__ instead of NumPy's loop

    def __init__(self, indices, values, shape, coalesced=False):
        shape = _check_shape(shape)
        if getattr(indices, "ndim", None) != 1:
            raise ValueError(f"RowSparseGrad: indices must be 1-D, got shape "
                             f"{_shape_of(indices)}")
        if _shape_of(values) != (indices.shape[0], *shape[1:]):
            raise ValueError(f"RowSparseGrad: values must have shape "
                             f"{(indices.shape[0], *shape[1:])} for {indices.shape[0]} indices "
                             f"into a table {shape}, got {_shape_of(values)}")
        ones = get_xp(values).ones((indices.shape[0], 1), dtype=values.dtype)
        self._set(indices.reshape(-1, 1), ones, values.reshape(indices.shape[0], -1), shape,
                  coalesced)

    @classmethod
    def grouped(cls, idx, w, src, shape):
        r""":math:`\bar V = \sum_{m, j} w_{mj}\, e_{\text{idx}[m, j]}\, \text{src}[m]^\top` for
        ``idx``, ``w`` (M, J) and ``src`` ``(M, *shape[1:])``; nothing of size M J d is formed."""
        shape = _check_shape(shape)
        if getattr(idx, "ndim", None) != 2 or _shape_of(w) != idx.shape or \
                _shape_of(src) != (idx.shape[0], *shape[1:]):
            raise ValueError(f"RowSparseGrad.grouped: expected idx (M, J), w (M, J) and src "
                             f"(M, *{shape[1:]}), got {_shape_of(idx)}, {_shape_of(w)} and "
                             f"{_shape_of(src)}")
        grad = cls.__new__(cls)
        grad._set(idx, w.astype(src.dtype, copy=False), src.reshape(idx.shape[0], -1), shape,
                  False)
        return grad

    def _set(self, idx, w, src, shape, coalesced):
        if idx.dtype.kind not in "iu":
            raise ValueError(f"RowSparseGrad: indices must be integers, got dtype {idx.dtype}")
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= shape[0]):
            raise ValueError(f"RowSparseGrad: indices must lie in [0, {shape[0]}), got values "
                             f"from {int(idx.min())} to {int(idx.max())}")
        self.idx, self.w, self.src, self.shape = idx, w, src, shape
        self.coalesced = bool(coalesced)

    def _like(self, idx, w, src, coalesced=False):
        """Same shape, new factors (already checked)."""
        grad = RowSparseGrad.__new__(RowSparseGrad)
        grad.idx, grad.w, grad.src, grad.shape = idx, w, src, self.shape
        grad.coalesced = coalesced
        return grad

    # -- array-like facts -----------------------------------------------------------------
    @property
    def dtype(self):
        return self.src.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nnz_rows(self) -> int:
        """Number of (row, vector) pairs (distinct rows once coalesced)."""
        return int(self.idx.size)

    @property
    def indices(self):
        """The row of each pair, (n,)."""
        return self.idx.reshape(-1)

    @property
    def values(self):
        """The vector of each pair, ``(n, *shape[1:])``; formed on each access (n x d numbers)."""
        v = self.w[:, :, None] * self.src[:, None, :]
        return v.reshape(self.nnz_rows, *self.shape[1:])

    def __repr__(self):
        return (f"RowSparseGrad(shape={self.shape}, pairs={self.nnz_rows}, dtype={self.dtype}, "
                f"coalesced={self.coalesced})")

    # -- conversions ----------------------------------------------------------------------
    def coalesce(self) -> "RowSparseGrad":
        """The same gradient with each row once (ascending), repeats summed."""
        if self.coalesced:
            return self
        rows, sums = coalesce_rows(self.idx, self.w, self.src)
        return RowSparseGrad(rows, sums.reshape(rows.shape[0], *self.shape[1:]), self.shape,
                             coalesced=True)

    def add_to(self, dense):
        """``dense + self`` as a new array (``dense`` is not modified)."""
        out = get_xp(dense).array(dense, dtype=np.result_type(dense.dtype, self.dtype),
                                  order="C")
        scatter_weighted_rows(out.reshape(self.shape[0], -1), self.idx, self.w, self.src)
        return out

    def to_dense(self):
        """The (shape) array this gradient stands for."""
        return self.add_to(get_xp(self.src).zeros(self.shape, dtype=self.dtype))

    def numpy(self):
        """The dense gradient as a NumPy array (as ``Tensor.numpy`` of a dense ``.grad``)."""
        return to_numpy(self.to_dense())

    def astype(self, dtype) -> "RowSparseGrad":
        if self.dtype == dtype:
            return self
        return self._like(self.idx, self.w.astype(dtype), self.src.astype(dtype), self.coalesced)

    # -- arithmetic used by the engine and the optimizers ----------------------------------
    def __add__(self, other):
        """Sparse + sparse stays sparse (the pairs are concatenated); sparse + array is an
        array."""
        if isinstance(other, RowSparseGrad):
            if other.shape != self.shape:
                raise ValueError(f"RowSparseGrad: cannot add gradients of shapes {self.shape} "
                                 f"and {other.shape}")
            a, b = (self, other) if self.idx.shape[1] == other.idx.shape[1] else \
                (self._ungrouped(), other._ungrouped())
            xp = get_xp(self.src)
            return self._like(xp.concatenate([a.idx, b.idx]), xp.concatenate([a.w, b.w]),
                              xp.concatenate([a.src, b.src]))
        if tuple(getattr(other, "shape", ())) != self.shape:
            raise ValueError(f"RowSparseGrad: cannot add an array of shape "
                             f"{_shape_of(other)} to a gradient of shape {self.shape}")
        return self.add_to(other)

    __radd__ = __add__

    def _ungrouped(self):
        """The same pairs with J = 1 (each vector formed), to join a group of another size."""
        return RowSparseGrad(self.indices, self.values, self.shape)

    def __mul__(self, scale):
        if not isinstance(scale, numbers.Real):
            raise TypeError(f"RowSparseGrad: can only be scaled by a real number, got "
                            f"{type(scale).__name__}")
        src = (self.src * scale).astype(self.dtype, copy=False)
        return self._like(self.idx, self.w, src, self.coalesced)

    __rmul__ = __mul__

    def sum_of_squares(self) -> float:
        """:math:`\\|\\bar V\\|_F^2` (in float64), after summing repeated rows."""
        c = self.coalesce()   # J = 1 and w = 1 once coalesced
        return float((c.src.astype(np.float64) ** 2).sum())


def dense_grad(grad):
    """The array behind a ``.grad``: ``None`` stays ``None``, a Tensor gives its ``.data``, a
    :class:`RowSparseGrad` its dense array."""
    if grad is None:
        return None
    if isinstance(grad, RowSparseGrad):
        return grad.to_dense()
    return grad.data
