r"""The associative write and read of ARMT (Rodkin et al. 2024), from the delta rule.

In every layer the segment's memory-token states :math:`m_1, \dots, m_n` (the last copy of
RMT's memory, after the layer) write an associative matrix
:math:`A \in \mathbb{R}^{d_\phi \times d}` with a normalizer :math:`z \in \mathbb{R}^{d_\phi}`
(:math:`A_0 = 0`, :math:`z_0 = 0`). With the DPFP feature map :math:`\phi` (Schlag et al.
2021, :math:`\nu = 3`: :math:`d_\phi = 2 d_k \nu`, non-negative),

.. math:: k_i = \phi(W_K m_i), \qquad v_i = W_V m_i, \qquad \beta_i = \sigma(W_\beta m_i),

(ARMT's layer, :class:`~minimem.memory.associative.layers.AssociativeMemory`, scales each
:math:`\phi` to unit length, as the authors' code does; the functions here take the features
as given)

the memory first says what it already returns for :math:`k_i` and writes only the correction
(the delta rule, with :math:`A` and :math:`z` of the segment before for every i),

.. math:: \bar v_i = \frac{A^\top k_i}{z^\top k_i + \epsilon}, \qquad
          A \leftarrow A + \sum_{i=1}^{n} \beta_i\, k_i\, (v_i - \bar v_i)^\top,

and the normalizer grows only by the part of :math:`k_i` that is new,

.. math:: \gamma_i = \mathrm{clip}\Big(1 - \frac{z^\top k_i}{\lVert k_i \rVert^2 + \epsilon},
          \ 0,\ 1\Big), \qquad z \leftarrow z + \sum_{i=1}^{n} \gamma_i\, k_i .

The next segment's tokens :math:`x` (every position, every layer, before the layer) read

.. math:: o = \frac{A^\top \phi(W_Q x)}{z^\top \phi(W_Q x) + \epsilon},

added to their hidden states. Invariants: a key written once more in a later segment adds
nothing to :math:`z` (:math:`\gamma = 0` when :math:`z = k`); with orthogonal keys
(:math:`\beta = 1`) reading a stored key returns its value exactly (up to :math:`\epsilon`);
writing a key's own read-out again (:math:`v_i = \bar v_i`) leaves :math:`A` unchanged.

Shapes: ``A`` (B, d_phi, d_v), ``z`` (B, d_phi), keys ``k`` (B, n, d_phi) (features already
applied), values ``v`` (B, n, d_v), ``beta`` (B, n), queries ``q`` (B, T, d_phi).
:func:`associative_write_reference` is the per-pair loop, :func:`associative_write` the
matrix form; they agree forward and backward.
"""
from __future__ import annotations


from ...autograd import ops
from ...checks import check_float_tensor, check_real, check_shape

EPS = 1e-5  # the read's and the write's guard when z^T k = 0 (the first segment)


def _check_eps(fn, eps):
    return check_real(fn, "eps", eps, low=0, low_open=True)


def _check_memory(fn, A, z):
    check_float_tensor(fn, "A", A, ndim=3, float16=False)
    B, d_phi, _ = A.shape
    check_float_tensor(fn, "z", z, ndim=2, float16=False)
    check_shape(fn, "z", z, (B, d_phi), names="B, d_phi")
    if z.dtype != A.dtype:
        raise TypeError(f"{fn}: z must have A's dtype {A.dtype}, got {z.dtype}")
    return B, d_phi, A.shape[2]


def _check_write(fn, A, z, k, v, beta, eps):
    B, d_phi, d_v = _check_memory(fn, A, z)
    check_float_tensor(fn, "k", k, ndim=3, float16=False)
    n = k.shape[1]
    check_shape(fn, "k", k, (B, n, d_phi), names="B, n, d_phi")
    check_float_tensor(fn, "v", v, ndim=3, float16=False)
    check_shape(fn, "v", v, (B, n, d_v), names="B, n, d_v")
    check_float_tensor(fn, "beta", beta, ndim=2, float16=False)
    check_shape(fn, "beta", beta, (B, n), names="B, n")
    for name, t in (("k", k), ("v", v), ("beta", beta)):
        if t.dtype != A.dtype:
            raise TypeError(f"{fn}: {name} must have A's dtype {A.dtype}, got {t.dtype}")
    return _check_eps(fn, eps)


def normalizer_gain(z, k, eps=EPS):
    r""":math:`\gamma_i = \mathrm{clip}(1 - z^\top k_i / (\lVert k_i\rVert^2 + \epsilon), 0, 1)`:
    the share of key :math:`k_i` that is new to the normalizer. ``z`` (B, d_phi), ``k``
    (B, n, d_phi) -> (B, n)."""
    fn = "normalizer_gain"
    check_float_tensor(fn, "z", z, ndim=2, float16=False)
    check_float_tensor(fn, "k", k, ndim=3, float16=False)
    check_shape(fn, "k", k, (z.shape[0], k.shape[1], z.shape[1]), names="B, n, d_phi")
    eps = _check_eps(fn, eps)
    # Exercise 55.1 (1 pt): gamma = 1 - z^T k_i / (||k_i||^2 + eps) for every key, clipped to
    # [0, 1] (clip(r, 0, 1) = relu(r) - relu(r - 1)); assign the (B, n) Tensor to `gamma`.
    ### BEGIN SOLUTION
    seen = (k @ ops.expand_dims(z, -1))[..., 0]            # z^T k_i, (B, n)
    ratio = seen / ((k * k).sum(axis=-1) + eps)
    gamma = 1.0 - (ops.relu(ratio) - ops.relu(ratio - 1.0))
    ### END SOLUTION
    return gamma


def associative_write_reference(A, z, k, v, beta, eps=EPS):
    """The write as a loop over the pairs (each reads the memory of the segment before).

    Returns ``(A_new, z_new)``; see the module docstring."""
    eps = _check_write("associative_write_reference", A, z, k, v, beta, eps)
    A_new, z_new = A, z
    for i in range(k.shape[1]):
        # k_i (B, d_phi), v_i (B, d_v), b_i (B, 1)
        k_i, v_i, b_i = k[:, i], v[:, i], beta[:, i:i + 1]
        seen = (k_i * z).sum(axis=-1, keepdims=True)                # z^T k_i, (B, 1)
        v_bar = (ops.expand_dims(k_i, -1) * A).sum(axis=1) / (seen + eps)
        A_new = A_new + ops.expand_dims(k_i, -1) * ops.expand_dims(b_i * (v_i - v_bar), 1)
        ratio = seen / ((k_i * k_i).sum(axis=-1, keepdims=True) + eps)
        gamma = 1.0 - (ops.relu(ratio) - ops.relu(ratio - 1.0))
        z_new = z_new + gamma * k_i
    return A_new, z_new


def associative_write(A, z, k, v, beta, eps=EPS):
    """The write in matrix form: ``A + K^T diag(beta) (V - V_bar)``, ``z + K^T gamma``."""
    eps = _check_write("associative_write", A, z, k, v, beta, eps)
    seen = (k @ ops.expand_dims(z, -1))                               # (B, n, 1)
    v_bar = (k @ A) / (seen + eps)                                    # (B, n, d_v)
    delta = ops.expand_dims(beta, -1) * (v - v_bar)
    A_new = A + ops.swapaxes(k, -1, -2) @ delta
    gamma = normalizer_gain(z, k, eps)                                # (B, n)
    z_new = z + (ops.swapaxes(k, -1, -2) @ ops.expand_dims(gamma, -1))[..., 0]
    return A_new, z_new


def associative_read(A, z, q, eps=EPS):
    r""":math:`o_t = A^\top q_t / (z^\top q_t + \epsilon)` for the query features ``q``
    (B, T, d_phi) -> (B, T, d_v); zero while nothing is stored (A = 0)."""
    fn = "associative_read"
    B, d_phi, _ = _check_memory(fn, A, z)
    check_float_tensor(fn, "q", q, ndim=3, float16=False)
    check_shape(fn, "q", q, (B, q.shape[1], d_phi), names="B, T, d_phi")
    if q.dtype != A.dtype:
        raise TypeError(f"{fn}: q must have A's dtype {A.dtype}, got {q.dtype}")
    eps = _check_eps(fn, eps)
    # Exercise 55.2 (1 pt): the normalized read: A^T q_t divided by (z^T q_t + eps) for every
    # query; assign the (B, T, d_v) Tensor to `out`.
    ### BEGIN SOLUTION
    out = (q @ A) / (q @ ops.expand_dims(z, -1) + eps)
    ### END SOLUTION
    return out
