r"""ATLAS's Omega rule: a memory that fits a sliding window of tokens, with Muon's step.

**The Omega rule.** Titans' memory descends the loss of the current token only. The Omega
rule descends the loss of the last :math:`w` tokens (the window), each weighted by
:math:`\gamma_i`, with the keys passed through a feature map :math:`\phi`:

.. math::
    \mathcal{L}_t(M) = \sum_{i=\max(0,\, t-w+1)}^{t} \gamma_i\,
        \|\mathcal{M}(\phi(k_i)) - v_i\|^2, \\
    \nabla_t = \nabla_M \mathcal{L}_t(M_{t-1}), \qquad o_t = \mathcal{M}_t(\phi(q_t)).

For the linear memory, :math:`\nabla_t = 2 \sum_i \gamma_i \phi(k_i)(M_{t-1}^\top \phi(k_i) -
v_i)^\top`, the gradient of a weighted least-squares fit of the window's pairs; its zero is
the normal equations :math:`(\sum_i \gamma_i \phi_i \phi_i^\top) M = \sum_i \gamma_i \phi_i
v_i^\top`, so repeated steps track the sliding least-squares memory of the window (ATLAS
fits the context, not only the last token). With :math:`w = 1`, :math:`\gamma = 1` and no
feature map it is Titans' rule.

**Polynomial features.** :math:`\phi` = ``feature_map(x, "poly", degree=p)`` (chapter 20)
gives :math:`\phi(q)^\top \phi(k) = \sum_{i \le p} (q^\top k)^i / i!`: a linear memory on
:math:`\phi(k)` has :math:`\sum_{i \le p} d_k^i` rows, so it can hold more than :math:`d_k`
independent pairs (a memory on raw keys cannot: :math:`d_k` linearly independent keys at most).

**The inner optimizer.** ``"momentum"`` (Titans): :math:`\Sigma_t = \eta_t \Sigma_{t-1} -
\theta_t \nabla_t`, :math:`M_t = (1-\alpha_t) M_{t-1} + \Sigma_t`. ``"muon"`` (ATLAS):

.. math::
    \Sigma_t = \eta_t \Sigma_{t-1} + \nabla_t, \qquad
    M_t = (1-\alpha_t) M_{t-1} - \theta_t\, \mathrm{NS}_5(\Sigma_t)

per weight matrix, where :math:`\mathrm{NS}_5` (:func:`newton_schulz`) approximates the
orthogonal factor :math:`U V^\top` of :math:`\Sigma = U S V^\top`. With :math:`X_0 =
\Sigma / \|\Sigma\|_F` (all singular values in :math:`(0, 1]`), each step

.. math::
    X_{j+1} &= a X_j + b (X_j X_j^\top) X_j + c (X_j X_j^\top)^2 X_j
            = U\, p(S_j)\, V^\top, \\
    p(s) &= a s + b s^3 + c s^5,

keeps the singular vectors and maps every singular value through the odd polynomial
:math:`p` with :math:`(a, b, c) = (3.4445, -4.7750, 2.0315)` (Jordan et al.): steep at 0
(:math:`p'(0) = a`), so small singular values grow fast: after 5 steps every singular value
above about :math:`3 \cdot 10^{-3}\, \|\Sigma\|_F` lies in about :math:`[0.7, 1.2]` (smaller
ones stay small), so every direction of the momentum gets a step of about the same size.

The chunked form (``chunk_size``) takes every gradient of a chunk at the memory left by the
previous chunk and runs the two linear recurrences as matrix products, as in
:mod:`.neural_memory`.
"""
from __future__ import annotations

import numpy as np

from ...autograd import ops
from ...autograd.tensor import Tensor
from ...backend import get_xp
from ...checks import check_choice, check_float_tensor, check_int, check_real, check_shape
from ..delta.feature_maps import feature_map as apply_feature_map
from .neural_memory import _expand, _gradient, _read, check_memory_args, run_chunks

OPTIMIZERS = ("momentum", "muon")
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(G, steps=5, eps=1e-7):
    r"""Muon's orthogonalization of the last two axes of ``G`` (differentiable).

    :math:`X_0 = G / \sqrt{\|G\|_F^2 + \epsilon^2}`, then ``steps`` quintic steps (see above),
    on :math:`G^\top` when :math:`G` has more rows than columns (so :math:`X X^\top` is the
    smaller Gram matrix)."""
    check_float_tensor("newton_schulz", "G", G, float16=False)
    if G.ndim < 2:
        raise ValueError(f"newton_schulz: G must have at least 2 axes (..., m, n), got shape "
                         f"{G.shape}")
    steps = check_int("newton_schulz", "steps", steps, low=0)
    eps = check_real("newton_schulz", "eps", eps, low=0, low_open=True)
    a, b, c = NS_COEFFICIENTS
    norm = ops.sqrt(ops.sum(G * G, axis=(-2, -1), keepdims=True) + eps ** 2)
    X = G / norm
    tall = G.shape[-2] > G.shape[-1]
    if tall:
        X = ops.swapaxes(X, -1, -2)
    # Exercise 25.1 (2 pt): run `steps` quintic Newton-Schulz steps on X, each
    #   X <- a X + (b A + c A A) X with the Gram matrix A = X X^T (engine ops: @, swapaxes).
    # Needs: 0.1, 0.2, 0.3, 0.5
    ### BEGIN SOLUTION
    for _ in range(steps):
        A = X @ ops.swapaxes(X, -1, -2)
        X = a * X + (b * A + c * (A @ A)) @ X
    ### END SOLUTION
    return ops.swapaxes(X, -1, -2) if tall else X


def _features(fn, x, feature_map):
    """``x`` through the feature map: None, a kind of chapter 20's ``feature_map``, or
    ``(kind, {params})``."""
    if feature_map is None:
        return x
    kind, params = (feature_map, {}) if isinstance(feature_map, str) else feature_map
    if not isinstance(kind, str) or not isinstance(params, dict):
        raise TypeError(f"{fn}: feature_map must be None, a kind (str) or (kind, dict of "
                        f"parameters), got {feature_map!r}")
    try:
        return apply_feature_map(x, kind, **params)
    except (TypeError, ValueError) as err:   # name the function the user called
        raise type(err)(f"{fn}: feature_map {feature_map!r}: {err}") from None


def _check_omega(fn, q, k, v, theta, eta, alpha, params0, window, gamma, feature_map,
                 optimizer, memory, chunk_size):
    """Checks the arguments; returns ``(phi_q, phi_k, gamma, window, chunk_size)``."""
    for name, x in (("q", q), ("k", k)):
        check_float_tensor(fn, name, x, ndim=4, float16=False)
    window = check_int(fn, "window", window, low=1)
    check_choice(fn, "optimizer", optimizer, OPTIMIZERS)
    if gamma is None:
        gamma = Tensor(get_xp(q.data).ones(q.shape[:3], dtype=q.dtype))
    check_float_tensor(fn, "gamma", gamma, float16=False)
    check_shape(fn, "gamma", gamma, q.shape[:3], "B, H, T")
    phi_q, phi_k = _features(fn, q, feature_map), _features(fn, k, feature_map)
    C = check_memory_args(fn, phi_q, phi_k, v, {"theta": theta, "eta": eta, "alpha": alpha},
                          params0, memory, chunk_size)
    return phi_q, phi_k, gamma, window, C


def omega_memory_reference(q, k, v, theta, eta, alpha, params0, window=1, gamma=None,
                           feature_map=None, optimizer="momentum", memory="linear",
                           chunk_size=1):
    """The token loop of the Omega rule, the window's gradient summed term by term (with
    ``chunk_size > 1`` every gradient of a chunk is taken at the memory before the chunk).
    Returns ``(o, final params)``."""
    fn = "omega_memory_reference"
    phi_q, phi_k, gamma, w, C = _check_omega(fn, q, k, v, theta, eta, alpha, params0, window,
                                             gamma, feature_map, optimizer, memory,
                                             chunk_size)
    params = tuple(params0)
    surprise = None
    outs = []
    for t in range(q.shape[2]):
        if t % C == 0:
            base = params
        # Exercise 25.2 (3 pt): the gradient at the weights `base` of the window's loss,
        #   sum over i = max(0, t - w + 1) .. t of gamma_i ||M(phi_k_i) - v_i||^2: a tuple
        #   `grads` with one Tensor per weight (memory_gradient gives one token's terms).
        # Needs: 25.1
        ### BEGIN SOLUTION
        grads = None
        for i in range(max(0, t - w + 1), t + 1):
            g_i = _gradient(memory, base, phi_k[:, :, i], v[:, :, i])
            g_i = tuple(_expand(gamma[:, :, i]) * g for g in g_i)
            grads = g_i if grads is None else tuple(a + b for a, b in zip(grads, g_i))
        ### END SOLUTION
        th, et, al = (_expand(x[:, :, t]) for x in (theta, eta, alpha))
        sign = -th if optimizer == "momentum" else 1.0      # muon: Sigma accumulates +grad
        surprise = tuple(sign * g if surprise is None else et * s + sign * g   # Sigma_0 = 0
                         for s, g in zip(surprise or grads, grads))
        if optimizer == "momentum":
            params = tuple((1 - al) * p + s for p, s in zip(params, surprise))
        else:
            params = tuple((1 - al) * p - th * newton_schulz(s)
                           for p, s in zip(params, surprise))
        outs.append(_read(memory, params, phi_q[:, :, t]))
    if not outs:
        return Tensor(get_xp(q.data).zeros(v.shape, dtype=q.dtype)), params
    return ops.stack(outs, axis=2), params


def _band(c, lo, t0, window, like):
    """(c, n) 0/1 matrix: row t (token t0 + t) sums the tokens lo + i in its window."""
    rows = t0 + np.arange(c)[:, None]
    cols = lo + np.arange(c + t0 - lo)[None, :]
    band = ((cols <= rows) & (cols > rows - window)).astype(like.dtype)
    return Tensor(get_xp(like.data).asarray(band))


def omega_memory(q, k, v, theta, eta, alpha, params0, window=1, gamma=None, feature_map=None,
                 optimizer="momentum", memory="linear", chunk_size=1):
    r"""The Omega rule (see the module docstring); returns ``(o (B,H,T,D_v), final params)``.

    ``q, k (B, H, T, d)``, ``v (B, H, T, D_v)``; ``theta, eta, alpha, gamma (B, H, T)``
    (``gamma`` default ones); ``feature_map``: None, a kind of chapter 20's ``feature_map``
    (``"poly"``, ``"elu1"``, ...) or ``(kind, {params})``, e.g. ``("poly", {"degree": 2})``;
    ``params0`` as in :func:`~minimem.memory.titans.neural_memory`, its ``D_k`` the feature
    dimension. Per chunk, the gradients of all tokens in reach (the chunk and the ``window - 1``
    tokens before it) are taken at once and summed over each window with one banded product.
    """
    phi_q, phi_k, gamma, w, C = _check_omega("omega_memory", q, k, v, theta, eta, alpha,
                                             params0, window, gamma, feature_map, optimizer,
                                             memory, chunk_size)

    def chunk_gradients(base, t0, t1):
        lo = max(0, t0 - w + 1)
        at_base = tuple(ops.expand_dims(p, 2) for p in base)
        per_token = _gradient(memory, at_base, phi_k[:, :, lo:t1], v[:, :, lo:t1])
        weight = _expand(gamma[:, :, lo:t1])
        band = _band(t1 - t0, lo, t0, w, q)
        return tuple(ops.einsum("ti,bhi...->bht...", band, weight * g) for g in per_token)

    return run_chunks(phi_q, v, theta, eta, alpha, params0, memory, C, chunk_gradients,
                      optimizer=optimizer, orthogonalize=newton_schulz)
