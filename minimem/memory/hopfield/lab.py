r"""The chapter's experiments: data generated in code, capacity, spurious states, regimes.

* ``make_image_patterns``: small images of shapes (disks, squares, crosses, rings) drawn at
  random positions and sizes, as +-1 pixels (``binary=True``) or soft edges in [-1, 1];
  no downloads.
* Classical capacity: the final overlap :math:`m = x^\mu \cdot s / N` after recall from a stored
  pattern, against the load :math:`\alpha = P/N` (``capacity_curve``), and the one-step bit
  error against :math:`\tfrac12(1 - \operatorname{erf}\sqrt{N/2P})` (``one_step_error``);
  the load where that error is 0.001 (``one_step_load``) and the critical load
  :math:`\alpha_c \approx 0.138` of the zero-temperature replica-symmetric equations
  (``retrieval_load``, ``critical_load``).
* Dense memory: how many stored patterns are recalled exactly, against P and n.
* Modern network: the effective number of patterns a fixed point averages,
  :math:`n_{eff} = 1 / \sum_i p_i^2` with :math:`p = \operatorname{softmax}(\beta X^\top \xi^*)`:
  about N for small :math:`\beta` (the global average), the size of a cluster of similar
  patterns for intermediate :math:`\beta` (metastable states), 1 for large :math:`\beta`.
"""
from __future__ import annotations

import math

import numpy as np

from ... import autograd as ag
from ...backend import get_rng
from ...checks import check_int, check_real
from ...kernels.async_sweeps import async_sweeps
from .classical import TIE_TOL, ClassicalHopfield, hebbian_weights, sweep_orders
from .dense import DenseAssociativeMemory
from .modern import hopfield_energy, hopfield_retrieve_reference, retrieval_error_bound

SHAPES = ("disk", "square", "cross", "ring")


def random_patterns(P, N, seed=None):
    """P random patterns of N units, each +-1 with probability 1/2 (float64)."""
    return get_rng(seed).choice(np.array([-1.0, 1.0]), size=(P, N))


def flip_bits(x, fraction, seed=None):
    """A copy of +-1 patterns (N,) or (B, N) with round(fraction * N) random bits flipped per row."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"flip_bits: fraction must lie in [0, 1], got {fraction!r}")
    rng = get_rng(seed)
    out = np.array(x, dtype=np.float64, ndmin=2)
    k = int(round(fraction * out.shape[1]))
    for row in out:
        row[rng.choice(out.shape[1], size=k, replace=False)] *= -1
    return out.reshape(np.shape(x))


def overlap(s, x):
    """m = s . x / N along the last axis."""
    s, x = np.asarray(s, np.float64), np.asarray(x, np.float64)
    return (s * x).sum(axis=-1) / s.shape[-1]


def _shape_distance(kind, yy, xx, cy, cx, r):
    """A signed distance (negative inside) of one shape on the pixel grid."""
    if kind == "disk":
        return np.hypot(yy - cy, xx - cx) - r
    if kind == "square":
        return np.maximum(abs(yy - cy), abs(xx - cx)) - r
    if kind == "cross":
        w = max(1.0, r / 3)
        arm = lambda a, b: np.maximum(abs(a) - w, abs(b) - r)
        return np.minimum(arm(yy - cy, xx - cx), arm(xx - cx, yy - cy))
    if kind == "ring":
        return abs(np.hypot(yy - cy, xx - cx) - r) - max(1.0, r / 4)
    raise ValueError(f"make_image_patterns: unknown shape {kind!r}; choose from {SHAPES}")


def make_image_patterns(n_per_class=8, size=16, shapes=SHAPES, binary=True, jitter=0.25,
                        noise=0.0, seed=0):
    """Images of shapes at random positions and sizes: ``(patterns (n, size*size), labels)``.

    The centre moves by up to ``jitter * size`` from the middle and the radius varies by up to
    ``jitter * size / 4``: a small jitter makes each shape a tight cluster of similar patterns.
    ``binary=True``: pixels +-1 (inside the shape +1); else soft edges tanh(-distance) in [-1, 1].
    ``noise``: the fraction of pixels flipped (binary) or the std of added Gaussian noise.
    """
    check_int("make_image_patterns", "size", size, low=6)
    rng = get_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    images, labels = [], []
    for label, kind in enumerate(shapes):
        for _ in range(n_per_class):
            r = (0.26 + rng.uniform(-jitter, jitter) / 4) * size
            cy, cx = (size - 1) / 2 + rng.uniform(-jitter, jitter, size=2) * size
            dist = _shape_distance(kind, yy, xx, cy, cx, r)
            if binary:
                img = np.where(dist <= 0, 1.0, -1.0)
                img[rng.random(img.shape) < noise] *= -1
            else:
                img = np.tanh(-dist) + noise * rng.standard_normal(dist.shape)
            images.append(img)
            labels.append(label)
    return np.stack(images).reshape(len(images), -1), np.asarray(labels)


def center_normalize(X):
    """Patterns minus their mean pattern, each scaled to unit norm (so beta has one scale)."""
    Xc = np.asarray(X, np.float64) - np.mean(X, axis=0)
    return Xc / np.maximum(np.linalg.norm(Xc, axis=1, keepdims=True), 1e-12)


def mask_half(x, size, fill=0.0):
    """Images (..., size*size) with their bottom half set to ``fill``."""
    out = np.array(x, dtype=np.float64)
    img = out.reshape(out.shape[:-1] + (size, size))
    img[..., size // 2:, :] = fill
    return out


# -- classical network --------------------------------------------------------------------------
def capacity_curve(N, alphas, n_probes=20, max_sweeps=50, seed=0):
    """Mean final overlap after async recall started at stored patterns, for each load alpha."""
    rng = get_rng(seed)
    m = []
    for alpha in alphas:
        P = max(1, int(round(alpha * N)))
        X = random_patterns(P, N, rng)
        net = ClassicalHopfield(N).store(X)
        k = min(P, n_probes)
        final = net.recall_many(X[:k], max_sweeps=max_sweeps, seed=rng)
        m.append(overlap(final, X[:k]).mean())
    return np.asarray(m)


def one_step_error_theory(alpha):
    """P_err = 1/2 (1 - erf(sqrt(1 / (2 alpha)))), alpha = P / N (elementwise)."""
    a = np.asarray(alpha, np.float64)
    return 0.5 * (1 - np.vectorize(math.erf)(np.sqrt(1 / (2 * a))))


def one_step_load(p_err):
    """The load alpha = P / N at which :func:`one_step_error_theory` equals ``p_err``:
    alpha = 1 / (2 x^2) with (1 - erf x) / 2 = p_err (x found by bisection; 0.105 for
    p_err = 0.001)."""
    p_err = check_real("one_step_load", "p_err", p_err, low=0, high=0.5, low_open=True,
                       high_open=True)
    lo, hi = 0.0, 30.0                      # (1 - erf x) / 2 falls from 1/2 at 0 to ~0 at 30
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if 0.5 * math.erfc(mid) > p_err else (lo, mid)
    return 1.0 / (2.0 * (0.5 * (lo + hi)) ** 2)


def retrieval_load(y):
    r"""The load :math:`\alpha(y) = \tfrac12\big(\operatorname{erf}(y)/y
    - \tfrac{2}{\sqrt\pi} e^{-y^2}\big)^2` at which :math:`y = m/\sqrt{2\alpha r}` solves
    the zero-temperature replica-symmetric equations of Amit, Gutfreund and Sompolinsky
    (the retrieval state then has overlap :math:`m = \operatorname{erf}(y)`); elementwise,
    ``y > 0``."""
    y = np.asarray(y, np.float64)
    if not (np.isfinite(y).all() and (y > 0).all()):
        raise ValueError(f"retrieval_load: y must be finite and > 0, got {y!r}")
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * (erf(y) / y - 2 / math.sqrt(math.pi) * np.exp(-y * y)) ** 2


def _critical_y(tol):
    """The peak y_c of :func:`retrieval_load` (golden-section search on [0.5, 3], where it
    has its one maximum)."""
    g = (math.sqrt(5) - 1) / 2
    a, b = 0.5, 3.0
    while b - a > tol:
        c, d = b - g * (b - a), a + g * (b - a)
        a, b = (a, d) if retrieval_load(c) > retrieval_load(d) else (c, b)
    return 0.5 * (a + b)


def critical_load(tol=1e-12):
    """``(alpha_c, m_c)``: the largest load with a retrieval state, the maximum of
    :func:`retrieval_load` over y, and the overlap m_c = erf(y_c) of that state (0.138 and
    0.967)."""
    y = _critical_y(check_real("critical_load", "tol", tol, low=0, low_open=True))
    return float(retrieval_load(y)), math.erf(y)


def retrieval_branch(n=200, y_max=5.0):
    """The retrieval state of the replica-symmetric theory as a curve ``(alphas, m)``: for y
    from y_c to ``y_max`` the load alpha(y) of :func:`retrieval_load` and m = erf(y), from
    (alpha_c, m_c) down to small loads where m -> 1 (the branch with the larger overlap,
    which recall from a stored pattern reaches)."""
    n = check_int("retrieval_branch", "n", n, low=2)
    y_c = _critical_y(1e-12)
    y_max = check_real("retrieval_branch", "y_max", y_max, low=y_c, low_open=True)
    y = np.linspace(y_c, y_max, n)
    return retrieval_load(y), np.vectorize(math.erf, otypes=[np.float64])(y)


def one_step_error_exact(N, P):
    """The exact probability that one update flips a bit of a stored pattern (random +-1
    patterns, Hebbian weights with W_ii = 0, a tie keeps the bit) at finite N and P."""
    for name, value in (("N", N), ("P", P)):
        check_int("one_step_error_exact", name, value, low=1)
    # Exercise 10.6 (2 pt): derive, without the Gaussian approximation of
    #   one_step_error_theory, the exact one-step bit-error probability p_err for N units and
    #   P random patterns: x_i h_i = (N - 1)/N + (crosstalk), where the crosstalk is a sum of
    #   independent +-1/N terms (how many?); a bit flips when x_i h_i < 0. Return a float.
    ### BEGIN SOLUTION
    n = (P - 1) * (N - 1)  # crosstalk = (2B - n) / N, B ~ Binomial(n, 1/2) of the +1 terms
    # x_i h_i < 0  <=>  2B - n < -(N - 1)  <=>  B < (n - N + 1) / 2
    below = math.ceil((n - N + 1) / 2)  # B = 0 .. below - 1 flip the bit
    log_c = math.lgamma(n + 1) - n * math.log(2.0)  # P(B = b) = exp(log_c - lgamma terms)
    p_err = math.fsum(math.exp(log_c - math.lgamma(b + 1) - math.lgamma(n - b + 1))
                      for b in range(max(below, 0)))
    ### END SOLUTION
    return float(p_err)


def one_step_error(N, P, trials=1, seed=0):
    """Fraction of bits a single update flips when started at a stored pattern (all P, N units).

    A bit is an error when its field points the other way, x_i h_i < 0 (ties keep the bit).
    """
    rng = get_rng(seed)
    errors = 0
    for _ in range(trials):
        X = random_patterns(P, N, rng)
        H = X @ hebbian_weights(X)  # row mu: the fields at pattern mu (W symmetric)
        errors += int((X * H < -TIE_TOL).sum())
    return errors / (trials * P * N)


def mixture_state(patterns):
    """The symmetric mixture sgn(x^1 + x^2 + x^3) of three (an odd number of) patterns."""
    X = np.asarray(patterns, np.float64)
    if X.ndim != 2 or X.shape[0] % 2 == 0:
        raise ValueError(f"mixture_state: expected an odd number of patterns (k, N), got {X.shape}")
    return np.sign(X.sum(axis=0))


def find_sync_two_cycle(net, n_tries=200, max_sweeps=50, seed=0):
    """A synchronous recall (``RecallResult`` with ``cycle == 2``) from a random probe, or None."""
    rng = get_rng(seed)
    for _ in range(n_tries):
        probe = rng.choice(np.array([-1.0, 1.0]), size=net.n_units)
        res = net.recall(probe, max_sweeps=max_sweeps, mode="sync")
        if res.cycle == 2:
            return res
    return None


# -- dense associative memory -----------------------------------------------------------------
def dense_recall_count(N, n, P, F="poly", noise=0.1, seed=0, max_sweeps=20, n_probes=None):
    """How many of P random stored patterns a dense memory recalls exactly from noisy probes.

    With ``n_probes`` only that many patterns are probed and the count is estimated as
    P times the fraction recalled (the cost then no longer grows with P squared).
    """
    rng = get_rng(seed)
    X = random_patterns(P, N, rng)
    mem = DenseAssociativeMemory(X, F=F, n=n)
    k = P if n_probes is None else min(P, n_probes)
    final = mem.recall_many(flip_bits(X[:k], noise, rng), max_sweeps=max_sweeps, seed=rng)
    recalled = int(np.all(final == X[:k], axis=1).sum())
    return recalled if k == P else int(round(P * recalled / k))


def dense_capacity_theory(N, n):
    """Krotov & Hopfield's error-free capacity N^(n-1) / (2 (2n-3)!! ln N) for F(z) = z^n."""
    double_factorial = math.prod(range(2 * n - 3, 0, -2))
    return float(N) ** (n - 1) / (2 * double_factorial * math.log(N))


def dense_capacity(N, n, F="poly", noise=0.1, P_grid=None, seed=0, n_probes=None):
    """The largest exact-recall count over P in ``P_grid`` (default: 2, 3, 4, 6, 8, ... 2048)."""
    if P_grid is None:
        P_grid = sorted({int(round(2 ** (k / 2))) for k in range(2, 23)})
    best = 0
    for P in P_grid:
        count = dense_recall_count(N, n, P, F, noise, seed, n_probes=n_probes)
        best = max(best, count)
        if count < best / 2:  # well past the peak: larger P only recalls fewer
            break
    return best


# -- modern continuous network ------------------------------------------------------------------
def softmax_weights(query, stored, beta):
    """p = softmax(beta X^T xi) for one query (d,) and stored patterns (N, d)."""
    z = beta * np.asarray(stored, np.float64) @ np.asarray(query, np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def effective_patterns(p):
    """n_eff = 1 / sum_i p_i^2: 1 for a single pattern, N for the uniform average."""
    p = np.asarray(p, np.float64)
    return 1.0 / (p * p).sum(axis=-1)


def beta_regimes(stored, betas, queries=None, steps=30):
    """Mean n_eff at the state reached after ``steps`` updates from each query, per beta."""
    Y = np.asarray(stored, np.float64)
    Q = Y if queries is None else np.asarray(queries, np.float64)
    out = []
    for beta in betas:
        fixed = hopfield_retrieve_reference(Q, Y, beta, steps)
        out.append(np.mean([effective_patterns(softmax_weights(f, Y, beta)) for f in fixed]))
    return np.asarray(out)


def retrieval_trajectory(query, stored, beta, steps=5):
    """The states xi^(0), ..., xi^(steps) of repeated updates, shape (steps + 1, d)."""
    xs = [np.asarray(query, np.float64)]
    for _ in range(steps):
        xs.append(hopfield_retrieve_reference(xs[-1], stored, beta, 1))
    return np.stack(xs)


def energy_grid(stored, beta, lim=1.5, n=61):
    """The energy on an n x n grid of 2-D states in [-lim, lim]^2: ``(xs, ys, E (n, n))``."""
    Y = np.asarray(stored, np.float64)
    if Y.ndim != 2 or Y.shape[1] != 2:
        raise ValueError(f"energy_grid: stored must be (N, 2) patterns, got shape {Y.shape}")
    xs = ys = np.linspace(-lim, lim, n)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    E = hopfield_energy(ag.tensor(grid, dtype=np.float64), ag.tensor(Y, dtype=np.float64), beta)
    return xs, ys, E.numpy().reshape(n, n)


def error_vs_bound(stored, betas, i=0, query=None):
    """One-step retrieval error ||xi_new - x_i|| and its bound, for each beta: two arrays."""
    Y = np.asarray(stored, np.float64)
    xi = Y[i] if query is None else np.asarray(query, np.float64)
    err = [np.linalg.norm(hopfield_retrieve_reference(xi, Y, b) - Y[i]) for b in betas]
    bound = [retrieval_error_bound(xi, Y, i, b) for b in betas]
    return np.asarray(err), np.asarray(bound)




def recall_strip(net, probe, n_sweeps, seed=None):
    """The state before and after each of ``n_sweeps`` asynchronous sweeps of ``net``
    (a :class:`ClassicalHopfield`), ``(n_sweeps + 1, N)``: the frames of a recall."""
    rng = get_rng(seed)
    s = np.asarray(probe, dtype=np.float64)
    frames = [s]
    for _ in range(n_sweeps):
        s, _, _ = async_sweeps(net.W, net.b, s, sweep_orders(rng, net.n_units, 1), TIE_TOL)
        frames.append(s)
    return np.stack(frames)


def fixed_points(query, stored, betas, steps=30):
    """The state reached after ``steps`` modern-Hopfield updates from ``query``, per beta,
    ``(len(betas), d)``: the global average, a metastable blend or one pattern."""
    return np.stack([hopfield_retrieve_reference(query, stored, beta, steps) for beta in betas])
