r"""Experiments of the product-key memory chapter: slot usage, many facts, search cost.

**Slot usage** (Lample et al. 2019, section 4.4). Over a set of inputs, slot :math:`i`
collects the weight mass :math:`m_i = \sum_{t, h, j : i_{thj} = i} w_{thj}`. With
:math:`p = m / \sum_i m_i`,

.. math:: \text{usage} = \frac{|\{i : m_i > 0\}|}{N}, \qquad
          \mathrm{KL}(p \,\|\, u) = \sum_i p_i \log (N p_i) \in [0, \log N],

0 for a perfectly even use of the slots. The Lorenz curve plots the share of the mass held by
the lightest :math:`x` fraction of the slots (the diagonal is even use).

**Many facts.** A table :math:`f : [n_a] \times [n_b] \to [n_v]` of random facts; the input is
the two tokens ``(a, b)`` and the model must output ``f(a, b)`` after reading ``b``. With
:math:`n_a n_b` much larger than what the MLP's weights can hold, the memory's
:math:`N` value rows win at equal compute (:func:`equal_compute_hidden`). The slot usage
during training (``checkpoints``) comes from the same runs.

**Seeds.** :func:`compare_pkm_mlp_over_seeds` repeats the comparison per seed (fact table,
initialization, batches); :class:`Spread` holds a number's mean, standard deviation and range
over the seeds, and :func:`seed_gaps` the seed-by-seed difference of two models.

**Cost.** :func:`search_cost` times the product search and the flat scan per query for
growing :math:`N`: :math:`O(\sqrt N\, d)` against :math:`O(N d)`.
"""
from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ...autograd.function import no_grad
from ...autograd.tensor import Tensor
from ...backend import get_rng, to_numpy
from ...checks import check_choice, check_int
from .layers import ProductKeyMemory, pkm_ffn
from .product_keys import flat_key_topk, product_key_topk


# ------------------------------------------------------------------------------------------
# Slot usage
# ------------------------------------------------------------------------------------------
def expected_usage(n_slots, k, reads):
    """The expected fraction of ``n_slots`` memory slots that ``reads`` reads touch, when
    each read picks ``k`` distinct slots uniformly at random, independently of the others:
    the usage an untrained memory would show (the baseline of the usage measured below)."""
    for name, value, low in (("n_slots", n_slots, 1), ("k", k, 1), ("reads", reads, 0)):
        check_int("expected_usage", name, value, low=low)
    if k > n_slots:
        raise ValueError(f"expected_usage: k must be <= n_slots = {n_slots}, got {k}")
    # Exercise 30.4 (2 pt): predict that fraction (linearity of expectation: the probability
    #   that one given slot is touched by at least one of the reads) and return it as a float
    #   named `usage`; the tests compare it with simulated reads.
    ### BEGIN SOLUTION
    usage = 1.0 - (1.0 - k / n_slots) ** reads
    ### END SOLUTION
    return float(usage)


@dataclass
class MemoryUsage:
    """Slot statistics of one memory layer over some inputs."""

    usage: float            # fraction of slots read with positive weight at least once
    kl: float               # KL(weight mass || uniform), nats
    mass: np.ndarray        # (N,) weight mass per slot
    n_reads: int            # number of (token, head, slot) reads counted

    def lorenz(self):
        return lorenz_curve(self.mass)


def usage_stats(mass):
    """``(usage, kl)`` of a weight-mass vector (see the module docstring)."""
    mass = np.asarray(mass, dtype=np.float64)
    if mass.ndim != 1 or mass.size == 0 or (mass < 0).any():
        raise ValueError(f"usage_stats: mass must be a non-empty 1-D array >= 0, got shape "
                         f"{mass.shape}")
    total = mass.sum()
    if total <= 0:
        raise ValueError("usage_stats: mass is all zero (nothing was read)")
    p = mass / total
    nz = p > 0
    return float(nz.mean()), float((p[nz] * np.log(p[nz] * mass.size)).sum())


def lorenz_curve(mass):
    """``(x, y)``: the lightest fraction ``x`` of the slots holds the share ``y`` of the mass."""
    m = np.sort(np.asarray(mass, dtype=np.float64))
    if m.ndim != 1 or m.size == 0 or m.sum() <= 0:
        raise ValueError("lorenz_curve: mass must be a 1-D array with a positive sum")
    x = np.arange(m.size + 1) / m.size
    y = np.concatenate([[0.0], np.cumsum(m) / m.sum()])
    return x, y


def _pkm_layers(model):
    if isinstance(model, ProductKeyMemory):
        return [model]
    mods = getattr(model, "modules", None)
    layers = [m for m in mods() if isinstance(m, ProductKeyMemory)] if mods else []
    if not layers:
        raise ValueError(f"memory_usage: {type(model).__name__} holds no ProductKeyMemory layer")
    return layers


def memory_usage(model_or_layer, batches, layer=None):
    """Slot usage of a ProductKeyMemory (or of the one in a model) over ``batches``.

    ``batches``: one input (array or Tensor) or an iterable of inputs, each passed as
    ``model_or_layer(batch)``. Runs in eval mode under ``no_grad`` (the mode is restored).
    ``layer``: which memory layer of a model holding several (index in module order).
    Returns a :class:`MemoryUsage`.
    """
    layers = _pkm_layers(model_or_layer)
    if layer is None and len(layers) > 1:
        raise ValueError(f"memory_usage: the model holds {len(layers)} ProductKeyMemory layers; "
                         f"pass layer= (0 to {len(layers) - 1})")
    if layer is not None and not (isinstance(layer, numbers.Integral) and 0 <= layer < len(layers)):
        raise ValueError(f"memory_usage: layer must be an int in [0, {len(layers)}), got {layer!r}")
    mem = layers[layer or 0]
    if isinstance(batches, (np.ndarray, Tensor)):
        batches = [batches]
    mass = np.zeros(mem.n_slots)
    n_reads = 0
    was_training = model_or_layer.training
    model_or_layer.eval()
    try:
        with no_grad():
            for batch in batches:
                model_or_layer(batch)
                slots = to_numpy(mem.last_slots).ravel()
                mass += np.bincount(slots, weights=to_numpy(mem.last_weights).ravel(),
                                    minlength=mem.n_slots)
                n_reads += slots.size
    finally:
        model_or_layer.train(was_training)
    if n_reads == 0:
        raise ValueError("memory_usage: batches was empty")
    usage, kl = usage_stats(mass)
    return MemoryUsage(usage, kl, mass, n_reads)


# ------------------------------------------------------------------------------------------
# The many-facts lookup task and the PKM-vs-MLP comparison
# ------------------------------------------------------------------------------------------
@dataclass
class FactsTask:
    """``table[a, b]`` = value of fact (a, b); ``inputs``/``targets`` (n_a n_b, 2) list all."""

    table: np.ndarray
    inputs: np.ndarray
    targets: np.ndarray
    vocab: int


def many_facts(n_a, n_b, n_values, seed=0):
    """All ``n_a * n_b`` facts as sequences ``[a, n_a + b]`` with target ``n_a + n_b + f(a, b)``
    at the second position (-100 at the first). Token ids: a, then b, then values."""
    for name, v in (("n_a", n_a), ("n_b", n_b), ("n_values", n_values)):
        check_int("many_facts", name, v, low=1)
    rng = get_rng(seed)
    table = rng.integers(0, n_values, size=(n_a, n_b))
    a, b = np.meshgrid(np.arange(n_a), np.arange(n_b), indexing="ij")
    inputs = np.stack([a.ravel(), n_a + b.ravel()], axis=1).astype(np.int64)
    targets = np.stack([np.full(a.size, -100), n_a + n_b + table.ravel()], axis=1)
    return FactsTask(table, inputs, targets.astype(np.int64), n_a + n_b + n_values)


def mlp_flops_per_token(d_model, hidden):
    """Multiply-adds per token of the transformer MLP d -> hidden -> d."""
    return 2 * d_model * hidden


def equal_compute_hidden(memory):
    """The MLP hidden size whose multiply-adds per token match ``memory.flops_per_token()``."""
    return max(1, round(memory.flops_per_token() / (2 * memory.d_in)))


@dataclass
class FactsRun:
    """One trained model of :func:`compare_pkm_mlp`."""

    name: str
    seed: int
    accuracy: float                 # fraction of all facts recalled after training
    history: dict                   # step, loss, train_acc, eval_step, eval_acc
    flops_per_token: int            # of the feed-forward part (MLP or memory)
    n_params: int
    usage: MemoryUsage | None = None
    snapshots: list = field(default_factory=list)   # [(step, MemoryUsage)], memories only
    extra: dict = field(default_factory=dict)


def _facts_lm(task, d_model, ffn, seed):
    from ...nn.attention import TransformerLM

    return TransformerLM(task.vocab, d_model, n_layers=1, n_heads=2, max_len=2, ffn=ffn,
                         seed=seed)


def _shuffled_batches(task, batch_size, seed):
    """``step -> (inputs, targets)``: ``batch_size`` facts at a time, reshuffled each epoch;
    the stream carries on across calls of ``fit``, so training in pieces sees the batches
    one call would."""
    rng = get_rng(seed)
    state = {"perm": np.empty(0, np.int64), "i": 0}

    def next_batch(step):
        if state["i"] + batch_size > state["perm"].size:
            state["perm"], state["i"] = rng.permutation(len(task.inputs)), 0
        idx = state["perm"][state["i"]:state["i"] + batch_size]
        state["i"] += batch_size
        return task.inputs[idx], task.targets[idx]

    return next_batch


def _train_facts(model, task, steps, opt, batch_size, eval_every, checkpoints, seed,
                 snapshot):
    """Train ``model`` on all facts for ``steps`` steps; evaluate on all facts every
    ``eval_every`` steps and at each of ``checkpoints``, where (with ``snapshot``) the
    memory's slot usage is also recorded.

    Training runs in pieces between those steps (one batch stream, one optimizer), so the
    snapshots come from this run itself. Returns ``(history, snapshots)``.
    """
    from ...train import evaluate, fit

    stops = sorted(set(range(eval_every, steps + 1, eval_every)) | {steps}
                   | {c for c in checkpoints if c <= steps})
    batches = _shuffled_batches(task, batch_size, seed)
    hist = {key: [] for key in ("step", "loss", "train_acc", "eval_step", "eval_acc")}
    snapshots, done = [], 0
    if 0 in checkpoints and snapshot:
        snapshots.append((0, memory_usage(model, task.inputs)))
    for stop in (s for s in stops if s > 0):
        part = fit(model, batches, stop - done, opt, batch_size=batch_size,
                   eval_every=stop - done, progress=False)
        hist["step"] += [done + s for s in part["step"]]
        hist["loss"] += part["loss"]
        hist["train_acc"] += part["train_acc"]
        done = stop
        hist["eval_step"].append(done)
        hist["eval_acc"].append(evaluate(model, task.inputs, task.targets))
        if done in checkpoints and snapshot:
            snapshots.append((done, memory_usage(model, task.inputs)))
    return hist, snapshots


def _check_checkpoints(fn, checkpoints, steps):
    return {check_int(fn, "checkpoints", c, low=0, high=steps) for c in checkpoints}


def compare_pkm_mlp(n_a=32, n_b=32, n_values=32, d_model=32, n_sub_keys=32, topk=8, heads=2,
                    d_key=16, steps=300, batch_size=128, lr=1e-2, query_norms=("batch", None),
                    seed=0, checkpoints=(), eval_every=None, sparse_updates=False):
    """Train the same one-block LM with a ProductKeyMemory (one per entry of ``query_norms``)
    and with an MLP of equal multiply-adds per token on :func:`many_facts`; returns
    ``{name: FactsRun}`` with names ``"mlp"``, ``"pkm (batch norm)"``, ``"pkm (no norm)"``.

    ``seed`` sets the fact table, every model's initialization and the batch order.
    ``checkpoints``: steps (0 to ``steps``) at which each memory's slot usage over all facts
    is recorded in ``FactsRun.snapshots`` (the slot hits of the same training run).
    ``eval_every``: steps between evaluations on all facts (default ``steps // 10``).
    All train with Adam; with ``sparse_updates`` the memories instead keep a row-sparse value
    gradient (``sparse_grad=True``) and train with ``SparseAdam`` (lazy Adam on the values).
    """
    from ...nn.layers import MLP
    from ...optim import Adam, SparseAdam
    from ...train import evaluate

    fn = "compare_pkm_mlp"
    task = many_facts(n_a, n_b, n_values, seed=seed)
    steps = check_int(fn, "steps", steps, low=1)
    batch_size = check_int(fn, "batch_size", batch_size, low=1, high=len(task.inputs))
    eval_every = check_int(fn, "eval_every", eval_every if eval_every is not None
                           else max(1, steps // 10), low=1)
    checkpoints = _check_checkpoints(fn, checkpoints, steps)
    for norm in query_norms:
        check_choice(fn, "query_norms", norm, ("batch", None))
    probe = ProductKeyMemory(d_model, d_model, n_sub_keys, topk=topk, heads=heads, d_key=d_key)
    hidden = equal_compute_hidden(probe)
    configs = [("mlp", lambda d_model, n_heads, layer: MLP(d_model, hidden, seed=seed),
                mlp_flops_per_token(d_model, hidden))]
    for norm in query_norms:
        configs.append((_memory_name(norm),
                        pkm_ffn(n_sub_keys, topk=topk, heads=heads, d_key=d_key,
                                query_norm=norm, sparse_grad=sparse_updates, seed=seed),
                        probe.flops_per_token()))
    runs = {}
    for name, ffn, flops in configs:
        model = _facts_lm(task, d_model, ffn, seed)
        is_mlp = name == "mlp"
        opt_cls = SparseAdam if sparse_updates and not is_mlp else Adam
        hist, snapshots = _train_facts(model, task, steps, opt_cls(model.parameters(), lr=lr),
                                       batch_size, eval_every, checkpoints, seed,
                                       snapshot=not is_mlp)
        usage = None if is_mlp else memory_usage(model, task.inputs)
        runs[name] = FactsRun(name, seed, evaluate(model, task.inputs, task.targets), hist,
                              flops, model.num_parameters(), usage, snapshots,
                              {"hidden": hidden} if is_mlp else {"optimizer": opt_cls.__name__})
    return runs


def _memory_name(norm):
    return "pkm (batch norm)" if norm == "batch" else "pkm (no norm)"


def compare_pkm_mlp_over_seeds(seeds=(0, 1, 2), **kwargs):
    """:func:`compare_pkm_mlp` once per seed (its own facts, initialization and batches);
    ``kwargs`` go to every run. Returns ``{name: [FactsRun, ...]}``, one run per seed in the
    order of ``seeds``."""
    seeds = [check_int("compare_pkm_mlp_over_seeds", "seeds", s, low=0) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"compare_pkm_mlp_over_seeds: seeds must be distinct ints, at least "
                         f"one, got {seeds!r}")
    out = {}
    for seed in seeds:
        for name, run in compare_pkm_mlp(seed=seed, **kwargs).items():
            out.setdefault(name, []).append(run)
    return out


# ------------------------------------------------------------------------------------------
# Mean and spread over seeds
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spread:
    """A number measured once per seed: its values, mean, standard deviation (over the
    seeds, ddof=0) and range."""

    values: tuple

    def __post_init__(self):
        v = np.asarray(self.values, dtype=np.float64)
        if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all():
            raise ValueError(f"Spread: values must be a non-empty list of finite numbers, got "
                             f"{self.values!r}")

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        return float(np.std(self.values))

    @property
    def min(self) -> float:
        return float(np.min(self.values))

    @property
    def max(self) -> float:
        return float(np.max(self.values))

    def text(self, fmt=".2f"):
        """``"mean ± std [min, max]"`` with each number in the format ``fmt``."""
        return (f"{self.mean:{fmt}} ± {self.std:{fmt}} "
                f"[{self.min:{fmt}}, {self.max:{fmt}}]")


def spread(runs, metric):
    """The :class:`Spread` of ``metric`` over a list of :class:`FactsRun` (one per seed):
    ``"accuracy"``, or the final slot ``"usage"`` / ``"kl"`` of a memory."""
    check_choice("spread", "metric", metric, ("accuracy", "usage", "kl"))
    if metric == "accuracy":
        return Spread(tuple(r.accuracy for r in runs))
    if any(r.usage is None for r in runs):
        raise ValueError(f"spread: metric {metric!r} needs memory runs; "
                         f"{runs[0].name!r} has no slot usage")
    return Spread(tuple(getattr(r.usage, metric) for r in runs))


def snapshot_spread(runs):
    """``[(step, Spread of usage, Spread of KL), ...]`` over the seeds, one per checkpoint
    of :func:`compare_pkm_mlp` (every run must hold the same checkpoints)."""
    steps = [[s for s, _ in r.snapshots] for r in runs]
    if not steps[0] or any(s != steps[0] for s in steps):
        raise ValueError(f"snapshot_spread: the runs must hold snapshots at the same steps, "
                         f"got {steps}")
    out = []
    for j, step in enumerate(steps[0]):
        usages = [r.snapshots[j][1] for r in runs]
        out.append((step, Spread(tuple(u.usage for u in usages)),
                    Spread(tuple(u.kl for u in usages))))
    return out


def seed_gaps(runs, better, worse, metric="accuracy"):
    """``metric`` of ``runs[better]`` minus that of ``runs[worse]``, seed by seed (runs from
    :func:`compare_pkm_mlp_over_seeds`): a claim "better beats worse" holds on every seed
    when all of it is > 0."""
    a, b = runs[better], runs[worse]
    if [r.seed for r in a] != [r.seed for r in b]:
        raise ValueError(f"seed_gaps: {better!r} and {worse!r} were run on different seeds")
    return np.array(spread(a, metric).values) - np.array(spread(b, metric).values)


# ------------------------------------------------------------------------------------------
# Search cost
# ------------------------------------------------------------------------------------------
def search_cost(n_sub_keys=(32, 64, 128, 256, 512, 1024), n_queries=256, d_key=64, k=32,
                flat_max_slots=2 ** 18, repeat=3, seed=0):
    """Seconds per query of the product search and of the flat scan, for N = n^2 slots.

    Returns ``{"n_slots", "product", "flat"}`` arrays (``flat`` is NaN above
    ``flat_max_slots``, where the scan would take long). Both are exact and return the same
    slots (checked here on the first query rows).
    """
    rng = get_rng(seed)
    dh = d_key // 2
    q1 = Tensor(rng.standard_normal((n_queries, dh)).astype(np.float32))
    q2 = Tensor(rng.standard_normal((n_queries, dh)).astype(np.float32))
    out = {"n_slots": [], "product": [], "flat": []}
    for n in n_sub_keys:
        C1 = Tensor(rng.standard_normal((n, dh)).astype(np.float32))
        C2 = Tensor(rng.standard_normal((n, dh)).astype(np.float32))
        kk = min(k, n * n)
        t_prod = _best(partial(product_key_topk, q1, q2, C1, C2, kk), repeat)
        t_flat = float("nan")
        if n * n <= flat_max_slots:
            t_flat = _best(partial(flat_key_topk, q1, q2, C1, C2, kk), repeat)
            a = product_key_topk(q1[:8], q2[:8], C1, C2, kk)[1]
            b = flat_key_topk(q1[:8], q2[:8], C1, C2, kk)[1]
            if not (np.sort(a, axis=1) == np.sort(b, axis=1)).all():
                raise AssertionError("search_cost: product search and flat scan disagree")
        out["n_slots"].append(n * n)
        out["product"].append(t_prod / n_queries)
        out["flat"].append(t_flat / n_queries)
    return {key: np.asarray(v) for key, v in out.items()}


def _best(fn, repeat, budget=0.3):
    """Best time of at least ``repeat`` calls, more while under ``budget`` seconds (a busy
    machine's pauses only ever add time, so the minimum is the honest figure)."""
    fn()  # warm-up (and Numba compilation)
    best, start, calls = float("inf"), time.perf_counter(), 0
    while calls < repeat or (time.perf_counter() - start < budget and calls < 50):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return best
