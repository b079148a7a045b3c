r"""Feature maps: linear attention with a kernel :math:`\kappa(q, k) = \phi(q)^\top \phi(k)`.

Softmax attention weighs :math:`v_j` by :math:`\exp(q^\top k_j)`; linear attention replaces the
exponential by a kernel that factorizes, :math:`\kappa(q, k) = \phi(q)^\top \phi(k)`, so that
:math:`\sum_j \kappa(q_t, k_j) v_j^\top = \phi(q_t)^\top \sum_j \phi(k_j) v_j^\top` is read from
the state :math:`S_t = \sum_{j \le t} \phi(k_j) v_j^\top`. The maps, for :math:`x \in
\mathbb{R}^d` (applied to the last axis):

* ``"identity"``: :math:`\phi(x) = x`, :math:`\kappa = q^\top k` (signed: weights may be < 0);
* ``"elu1"`` (Katharopoulos et al. 2020): :math:`\phi(x) = \mathrm{elu}(x) + 1 > 0`;
* ``"relu"``: :math:`\phi(x) = \max(x, 0)`;
* ``"dpfp"`` (Schlag et al. 2021), parameter :math:`\nu`: with
  :math:`r(x) = [\max(x, 0), \max(-x, 0)] \in \mathbb{R}^{2d}`,
  :math:`\phi(x)_{(j-1) 2d + i} = r_i\, r_{(i + j) \bmod 2d}` for :math:`j = 1..\nu`
  (dimension :math:`2 d \nu`, non-negative, sparse);
* ``"poly"``, parameter :math:`p` (``degree``): :math:`\phi(x) = [1, x, x^{\otimes 2}/\sqrt{2!},
  \dots, x^{\otimes p}/\sqrt{p!}]`, so that, since :math:`\langle x^{\otimes i}, y^{\otimes i}
  \rangle = (x^\top y)^i`,

  .. math:: \phi(q)^\top \phi(k) = \sum_{i=0}^{p} \frac{(q^\top k)^i}{i!},

  the degree-:math:`p` Taylor polynomial of :math:`e^{q^\top k}` (dimension
  :math:`\sum_{i \le p} d^i`; the map of ATLAS);
* ``"taylor2"`` (Based, Arora et al. 2024): ``"poly"`` with :math:`p = 2`,
  :math:`\kappa = 1 + q^\top k + (q^\top k)^2 / 2`;
* ``"performer"`` (Choromanski et al. 2021), parameters ``n_features`` :math:`m` and ``seed``:
  positive orthogonal random features

  .. math:: \phi(x) = \tfrac{1}{\sqrt m} \exp\!\big(\Omega x - \tfrac12 \|x\|^2\big),
     \qquad \mathbb{E}_\Omega[\phi(q)^\top \phi(k)] = e^{q^\top k},

  because for :math:`\omega \sim \mathcal N(0, I)`, :math:`\mathbb E[e^{\omega^\top (q + k)}] =
  e^{\|q + k\|^2 / 2}`. The rows of :math:`\Omega \in \mathbb{R}^{m \times d}` are orthogonal
  within each block of :math:`d` rows (QR of a Gaussian matrix) with chi-distributed norms, so
  each row is still marginally :math:`\mathcal N(0, I)` (the mean is unchanged) and the
  variance is lower than with independent rows. The same ``seed`` gives the same
  :math:`\Omega`, so map queries and keys with the same seed.

Every map is built from engine ops, so autograd differentiates it.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ...autograd import ops
from ...autograd.tensor import Tensor
from ...backend import get_xp
from ...checks import check_int, describe

KINDS = ("identity", "elu1", "relu", "dpfp", "poly", "taylor2", "performer")
_PARAMS = {"identity": (), "elu1": (), "relu": (), "dpfp": ("nu",), "poly": ("degree",),
           "taylor2": (), "performer": ("n_features", "seed")}


def _check_int(name, value, low, fn="feature_map"):
    return check_int(fn, name, value, low=low)


def _elu1(x):
    # elu(x) + 1 = x + 1 for x > 0 and e^x otherwise; relu(x) + exp(-relu(-x)) is both at
    # once, and exp only ever sees non-positive numbers (no overflow).
    return ops.relu(x) + ops.exp(-ops.relu(-x))


def _roll_last(x, shift):
    """``x`` with its last axis rotated left by ``shift``: entry i is x[(i + shift) mod n]."""
    n = x.shape[-1]
    shift %= n
    if shift == 0:
        return x
    return ops.concatenate([x[..., shift:], x[..., :shift]], axis=-1)


def _dpfp(x, nu):
    r = ops.concatenate([ops.relu(x), ops.relu(-x)], axis=-1)          # (..., 2d)
    return ops.concatenate([r * _roll_last(r, j) for j in range(1, nu + 1)], axis=-1)


def _poly(x, degree):
    xp = get_xp(x.data)
    lead, d = x.shape[:-1], x.shape[-1]
    terms = [Tensor(xp.ones(lead + (1,), dtype=x.dtype))]
    power = None                                   # x^{(tensor) i}, flattened: (..., d^i)
    for i in range(1, degree + 1):
        if power is None:
            power = x
        else:
            power = ops.reshape(ops.expand_dims(power, -1) * ops.expand_dims(x, -2),
                                lead + (d ** i,))
        terms.append(power * (1.0 / math.sqrt(math.factorial(i))))
    return ops.concatenate(terms, axis=-1)


def performer_projection(d, n_features, seed=0, dtype=np.float64):
    r"""The random matrix :math:`\Omega` (``(n_features, d)``) of the ``"performer"`` map:
    blocks of :math:`d` orthogonal rows, each row rescaled to the norm of a Gaussian vector."""
    d = _check_int("d", d, 1)
    m = _check_int("n_features", n_features, 1)
    if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.random.Generator)):
        raise TypeError(f"feature_map: seed must be an int or a numpy Generator, got {seed!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(int(seed))
    blocks = []
    for _ in range(-(-m // d)):
        q_, r_ = np.linalg.qr(rng.standard_normal((d, d)))
        # signs fixed by R's diagonal: then q_ is Haar-distributed, each row uniform on
        # the sphere (numpy's QR alone leaves a bias in the directions)
        blocks.append((q_ * np.sign(np.diag(r_))).T)
    omega = np.concatenate(blocks, axis=0)[:m]
    norms = np.linalg.norm(rng.standard_normal((m, d)), axis=1)   # chi(d): the Gaussian norm
    return (omega * norms[:, None]).astype(dtype)


def _performer(x, n_features, seed):
    d = x.shape[-1]
    m = d if n_features is None else n_features
    xp = get_xp(x.data)
    omega = Tensor(xp.asarray(performer_projection(d, m, seed, dtype=x.dtype)))
    proj = x @ ops.swapaxes(omega, 0, 1)                                 # (..., m)
    half_sq = ops.sum(x * x, axis=-1, keepdims=True) * 0.5
    return ops.exp(proj - half_sq) * (1.0 / math.sqrt(m))


def feature_dim(kind, d, **params):
    """The output dimension of ``feature_map(x, kind, **params)`` for inputs of size ``d``."""
    _check_kind(kind, params, "feature_dim")
    d = check_int("feature_dim", "d", d, low=1)
    if kind in ("identity", "elu1", "relu"):
        return d
    if kind == "dpfp":
        return 2 * d * _check_int("nu", params.get("nu", 3), 1)
    if kind in ("poly", "taylor2"):
        p = 2 if kind == "taylor2" else _check_int("degree", params.get("degree", 2), 0)
        return sum(d ** i for i in range(p + 1))
    n = params.get("n_features")
    return d if n is None else _check_int("n_features", n, 1)


def _check_kind(kind, params, fn="feature_map", name="kind"):
    if not isinstance(kind, str):
        raise TypeError(f"{fn}: {name} must be one of {KINDS} (a str), got {describe(kind)}")
    if kind not in KINDS:
        raise ValueError(f"{fn}: {name} must be one of {KINDS}, got {kind!r}")
    extra = sorted(set(params) - set(_PARAMS[kind]))
    if extra:
        allowed = ", ".join(_PARAMS[kind]) or "none"
        raise TypeError(f"{fn}: kind {kind!r} takes parameters ({allowed}), got "
                        f"{', '.join(extra)}")


def feature_map(x, kind, **params):
    r"""Apply the feature map ``kind`` to the last axis of the Tensor ``x`` (differentiable).

    Parameters: ``nu`` for ``"dpfp"`` (default 3), ``degree`` for ``"poly"`` (default 2),
    ``n_features`` (default :math:`d`) and ``seed`` (default 0) for ``"performer"``. Output
    size: :func:`feature_dim`.
    """
    if not isinstance(x, Tensor):
        if isinstance(x, np.ndarray) or type(x).__module__.startswith("cupy"):
            x = Tensor(x)
        else:
            raise TypeError(f"feature_map: x must be a Tensor (or an array), got "
                            f"{type(x).__name__}")
    _check_kind(kind, params)
    if x.dtype.kind != "f" or x.dtype.itemsize < 4:
        raise TypeError(f"feature_map: x must be float32 or float64, got dtype {x.dtype}")
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"feature_map: x must have a non-empty last axis, got shape {x.shape}")
    if kind == "identity":
        return x
    if kind == "elu1":
        return _elu1(x)
    if kind == "relu":
        return ops.relu(x)
    if kind == "dpfp":
        return _dpfp(x, _check_int("nu", params.get("nu", 3), 1))
    if kind == "taylor2":
        return _poly(x, 2)
    if kind == "poly":
        return _poly(x, _check_int("degree", params.get("degree", 2), 0))
    n = params.get("n_features")
    return _performer(x, None if n is None else _check_int("n_features", n, 1),
                      params.get("seed", 0))
