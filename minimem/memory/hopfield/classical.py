r"""The classical binary Hopfield network (Hopfield 1982).

N units :math:`s_i \in \{-1, +1\}` store P patterns :math:`x^\mu \in \{-1,+1\}^N` with the
Hebbian rule, zero diagonal:

.. math:: W = \frac1N \sum_{\mu=1}^P x^\mu x^{\mu\top}, \qquad W_{ii} = 0 .

Energy and local field, with thresholds :math:`b` (zero unless given):

.. math:: E(s) = -\tfrac12 s^\top W s + b^\top s, \qquad h_i = \sum_j W_{ij} s_j - b_i .

*Asynchronous* update: visit the units one at a time in a random order (a fresh permutation per
sweep, drawn from ``seed``) and set :math:`s_i \leftarrow \operatorname{sgn}(h_i)`; a flip
changes the energy by :math:`-(s_i^{new} - s_i)h_i \le 0`, so the state ends in a local minimum
(a fixed point). *Synchronous* update: :math:`s \leftarrow \operatorname{sgn}(W s - b)` for all
units at once; the energy may go up, and the state can oscillate between two states (a
2-cycle). Ties (:math:`|h_i| \le 10^{-9}`) keep the unit's value.

Capacity (Amit, Gutfreund & Sompolinsky 1985): with load :math:`\alpha = P/N` the patterns are
retrieved (overlap :math:`m = x^\mu \cdot s / N \approx 1`) up to :math:`\alpha_c \approx 0.138`.
One step from a stored pattern flips bit i when the crosstalk, a sum of about PN random
:math:`\pm 1/N` terms (variance :math:`P/N`), beats the signal 1:

.. math:: P_{err} = \Pr\big(\mathcal N(0, P/N) > 1\big)
          = \tfrac12\Big(1 - \operatorname{erf}\sqrt{N / 2P}\Big).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...backend import get_rng
from ...checks import check_bool, check_int
from ...kernels.async_sweeps import async_sweeps, async_sweeps_reference

TIE_TOL = 1e-9  # |h_i| below this counts as a tie (the unit keeps its value)


def _as_pm1(fn, name, x, n_units=None, ndim=(1,)):
    """A float64 copy of ``x`` after checking that it holds only -1 and +1."""
    arr = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
    if arr.ndim not in ndim:
        raise ValueError(f"{fn}: {name} must have {' or '.join(map(str, ndim))} dims, "
                         f"got shape {arr.shape}")
    if n_units is not None and arr.shape[-1] != n_units:
        raise ValueError(f"{fn}: {name} must have {n_units} units in its last axis, "
                         f"got shape {arr.shape}")
    if arr.size and not np.all((arr == 1) | (arr == -1)):
        raise ValueError(f"{fn}: {name} must contain only -1 and +1 values")
    return arr.astype(np.float64)


def hebbian_weights(patterns):
    """W = (1/N) sum_mu x^mu x^mu^T with a zero diagonal, for ``patterns`` (P, N) of +-1."""
    X = _as_pm1("hebbian_weights", "patterns", patterns, ndim=(2,))
    # Exercise 10.1 (2 pt): the Hebbian weights W (N, N) of the patterns X (P, N):
    # W = (1/N) sum_mu x^mu x^mu^T, with W_ii = 0.
    ### BEGIN SOLUTION
    N = X.shape[1]
    W = X.T @ X / N
    np.fill_diagonal(W, 0.0)
    ### END SOLUTION
    return W


def _real_array(fn, name, x):
    """``x`` (an array, a list or a Tensor) as float64, refusing what is not real numbers."""
    arr = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{fn}: {name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _check_network(fn, W, b, s, state_ndim=(1,)):
    """W (N, N), b (N,) and a state s (N,) (or (B, N)) as float64 arrays; errors name fn."""
    W, b, s = (_real_array(fn, name, a) for name, a in (("W", W), ("b", b), ("s", s)))
    if W.ndim != 2 or W.shape[0] != W.shape[1] or b.shape != W.shape[:1]:
        raise ValueError(f"{fn}: expected W (N, N) and b (N,), got {W.shape}, {b.shape}")
    if s.shape[-1:] != b.shape or s.ndim not in state_ndim:
        want = "(N,)" if state_ndim == (1,) else "(N,) or (B, N)"
        raise ValueError(f"{fn}: the state must be {want} with N={b.shape[0]}, got {s.shape}")
    return W, b, s


def classical_energy(W, b, s):
    """E(s) = -1/2 s^T W s + b^T s; ``s`` (N,) or a batch (B, N) -> scalar or (B,)."""
    W, b, s = _check_network("classical_energy", W, b, s, state_ndim=(1, 2))
    # Exercise 10.3 (1 pt): the energy E of the state(s) s (last axis = units), a float for
    # s of shape (N,) and an array (B,) for s of shape (B, N).
    ### BEGIN SOLUTION
    E = -0.5 * np.einsum("...i,ij,...j->...", s, W, s) + s @ b
    ### END SOLUTION
    return E if s.ndim == 2 else float(E)


def sweep_orders(rng, n_units, n_sweeps):
    """``n_sweeps`` independent random permutations of the units, one per row."""
    return rng.permuted(np.tile(np.arange(n_units), (n_sweeps, 1)), axis=1)


@dataclass
class RecallResult:
    """What ``recall`` returns; unpacks as ``state, energies = net.recall(...)``.

    ``energies[0]`` is the probe's energy, ``energies[t]`` the energy after sweep t;
    ``converged``: the last sweep changed nothing; ``cycle``: 2 when synchronous updates
    entered a 2-cycle (else 0); ``states``: every synchronous state (None for async).
    """

    state: np.ndarray
    energies: np.ndarray
    sweeps: int
    converged: bool
    cycle: int = 0
    states: list | None = field(default=None, repr=False)

    def __iter__(self):
        return iter((self.state, self.energies))


def async_recall(W, b, probe, max_sweeps=100, seed=None, kernel=True, chunk=8):
    """Asynchronous recall from ``probe``: sweeps in random orders until a fixed point."""
    W, b, s = _check_network("async_recall", W, b, probe)
    check_int("async_recall", "max_sweeps", max_sweeps, low=1)
    check_int("async_recall", "chunk", chunk, low=1)
    check_bool("async_recall", "kernel", kernel)
    rng = get_rng(seed)
    run = async_sweeps if kernel else async_sweeps_reference
    energies, converged, done = [classical_energy(W, b, s)], False, 0
    while done < max_sweeps and not converged:
        k = min(chunk, max_sweeps - done)  # permutations are drawn a few sweeps at a time
        s, e, converged = run(W, b, s, sweep_orders(rng, s.shape[0], k), TIE_TOL)
        energies.extend(e.tolist())
        done += len(e)
    return RecallResult(s, np.asarray(energies), done, converged)


def sync_recall(W, b, probe, max_sweeps=100):
    """Synchronous recall s <- sgn(W s - b); stops at a fixed point or a 2-cycle."""
    W, b, s = _check_network("sync_recall", W, b, probe)
    check_int("sync_recall", "max_sweeps", max_sweeps, low=1)
    states, energies = [s], [classical_energy(W, b, s)]
    converged, cycle = False, 0
    for _ in range(max_sweeps):
        h = W @ s - b
        s = np.where(np.abs(h) <= TIE_TOL, s, np.sign(h))
        states.append(s)
        energies.append(classical_energy(W, b, s))
        if np.array_equal(s, states[-2]):
            converged = True
            break
        if len(states) >= 3 and np.array_equal(s, states[-3]):
            cycle = 2  # s(t+1) = s(t-1) != s(t): it will alternate forever
            break
    return RecallResult(s, np.asarray(energies), len(states) - 1, converged, cycle, states)


class ClassicalHopfield:
    """A binary Hopfield network of ``n_units`` units with Hebbian storage.

    ``store(patterns)`` adds patterns (P, N) of +-1 to the weights (Hebbian learning is
    additive); ``recall(probe, max_sweeps=100, mode="async"|"sync", seed=None)`` returns a
    :class:`RecallResult` (``state, energies = ...``); ``energy(state)``.
    """

    def __init__(self, n_units, bias=None):
        check_int("ClassicalHopfield", "n_units", n_units, low=1)
        self.n_units = int(n_units)
        self.W = np.zeros((n_units, n_units))
        self.b = np.zeros(n_units) if bias is None else np.asarray(bias, np.float64).copy()
        if self.b.shape != (n_units,):
            raise ValueError(f"ClassicalHopfield: bias must have shape ({n_units},), "
                             f"got {self.b.shape}")
        self.patterns = np.zeros((0, n_units))

    @property
    def n_patterns(self):
        return self.patterns.shape[0]

    @property
    def load(self):
        """alpha = P / N."""
        return self.n_patterns / self.n_units

    def store(self, patterns):
        X = _as_pm1("ClassicalHopfield.store", "patterns", patterns, self.n_units, ndim=(1, 2))
        X = X.reshape(-1, self.n_units)
        self.W = self.W + hebbian_weights(X)
        self.patterns = np.concatenate([self.patterns, X])
        return self

    def energy(self, state):
        s = _as_pm1("ClassicalHopfield.energy", "state", state, self.n_units, ndim=(1, 2))
        return classical_energy(self.W, self.b, s)

    def field(self, state):
        """Local fields h = W s - b."""
        s = _as_pm1("ClassicalHopfield.field", "state", state, self.n_units, ndim=(1, 2))
        return s @ self.W - self.b  # W is symmetric

    def recall(self, probe, max_sweeps=100, mode="async", seed=None, kernel=True):
        """Update ``probe`` until a fixed point (or ``max_sweeps``; sync: or a 2-cycle).

        ``kernel=False`` runs the plain NumPy loop instead of the Numba kernel (same result).
        """
        s = _as_pm1("ClassicalHopfield.recall", "probe", probe, self.n_units)
        check_int("ClassicalHopfield.recall", "max_sweeps", max_sweeps, low=1)
        if mode == "async":
            return async_recall(self.W, self.b, s, max_sweeps, seed, kernel)
        if mode == "sync":
            return sync_recall(self.W, self.b, s, max_sweeps)
        raise ValueError(f"ClassicalHopfield.recall: mode must be 'async' or 'sync', got {mode!r}")

    def recall_many(self, probes, max_sweeps=100, seed=None):
        """Final async states (B, N) for probes (B, N); each probe's order seed is drawn from ``seed``."""
        S = _as_pm1("ClassicalHopfield.recall_many", "probes", probes, self.n_units, ndim=(2,))
        rng = get_rng(seed)
        seeds = rng.integers(0, 2**63 - 1, size=len(S))
        return np.stack([async_recall(self.W, self.b, s, max_sweeps, int(k)).state
                         for s, k in zip(S, seeds)]) if len(S) else S.copy()

    def __repr__(self):
        return f"ClassicalHopfield(n_units={self.n_units}, n_patterns={self.n_patterns})"
