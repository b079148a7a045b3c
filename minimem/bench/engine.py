"""Engine overhead: a small op graph, per-op cost, and a 2-layer MLP training step.

Per-op overhead is the time of a chain of ``n`` elementwise ops on an 8x8 tensor, forward and
backward, divided by ``n``: with such tiny arrays nearly all of it is bookkeeping (creating
nodes, the topological sort, accumulating gradients). When PyTorch is installed (the ``bench``
extra) the same workloads run in PyTorch CPU eager in the same process and ratios are printed.
Targets: per-op overhead within 3x of PyTorch eager, the MLP step within 1.5x.
"""
from __future__ import annotations

import numpy as np

from ._util import Row, timeit, torch_or_none, with_ratios

DESCRIPTION = "autograd overhead: op chain, small graph, 2-layer MLP step (vs PyTorch eager)"


def _chain_minimem(n):
    import minimem as mm

    x = mm.tensor(np.random.default_rng(0).standard_normal((8, 8)), requires_grad=True,
                  dtype=np.float32)

    def step():
        y = x
        for i in range(n // 2):
            y = y * 1.001
            y = y + 0.5
        y.sum().backward()
    return step


def _chain_torch(torch, n):
    x = torch.randn(8, 8, requires_grad=True)

    def step():
        y = x
        for i in range(n // 2):
            y = y * 1.001
            y = y + 0.5
        y.sum().backward()
    return step


def _graph_minimem():
    import minimem as mm

    rng = np.random.default_rng(0)
    x = mm.tensor(rng.standard_normal((32, 32)), requires_grad=True, dtype=np.float32)
    w = mm.tensor(rng.standard_normal((32, 32)), requires_grad=True, dtype=np.float32)

    def step():
        h = (x @ w).tanh()
        y = mm.softmax(h * x + h, axis=-1)
        mm.log(y + 1.0).mean().backward()
    return step


def _graph_torch(torch):
    x = torch.randn(32, 32, requires_grad=True)
    w = torch.randn(32, 32, requires_grad=True)

    def step():
        h = (x @ w).tanh()
        y = torch.softmax(h * x + h, dim=-1)
        torch.log(y + 1.0).mean().backward()
    return step


def _mlp_minimem(batch, d_in, hidden, n_class):
    import minimem as mm
    from minimem import nn, optim

    rng = np.random.default_rng(0)
    x = mm.tensor(rng.standard_normal((batch, d_in)), dtype=np.float32)
    y = rng.integers(0, n_class, batch)
    fc1, fc2 = nn.Linear(d_in, hidden, seed=0), nn.Linear(hidden, n_class, seed=1)
    opt = optim.AdamW(fc1.parameters() + fc2.parameters(), lr=1e-3)

    def step():
        loss = mm.cross_entropy(fc2(fc1(x).relu()), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def _mlp_torch(torch, batch, d_in, hidden, n_class):
    torch.manual_seed(0)
    x = torch.randn(batch, d_in)
    y = torch.randint(0, n_class, (batch,))
    fc1, fc2 = torch.nn.Linear(d_in, hidden), torch.nn.Linear(hidden, n_class)
    opt = torch.optim.AdamW(list(fc1.parameters()) + list(fc2.parameters()), lr=1e-3)

    def step():
        loss = torch.nn.functional.cross_entropy(fc2(torch.relu(fc1(x))), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def run(quick=False):
    torch = torch_or_none()
    n_chain = 200 if quick else 1000
    repeat = 3 if quick else 10
    rows = []
    work = [
        (f"op chain ({n_chain} ops, 8x8), per op", lambda: _chain_minimem(n_chain),
         (lambda t: _chain_torch(t, n_chain)), n_chain),
        ("small graph (7 ops, 32x32) fwd+bwd", _graph_minimem, _graph_torch, 1),
        ("2-layer MLP step 64x256 (AdamW)", lambda: _mlp_minimem(64, 256, 256, 10),
         lambda t: _mlp_torch(t, 64, 256, 256, 10), 1),
    ]
    for name, ours, theirs, per in work:
        rows.append(Row(name, "minimem", timeit(ours(), repeat=repeat) / per))
        if torch is not None:
            rows.append(Row(name, "pytorch eager", timeit(theirs(torch), repeat=repeat) / per))
    with_ratios(rows, "pytorch eager")
    for r in rows:
        if r.ratio is not None:
            # ratio = t_torch / t_ours; "within 3x" means ours <= 3 * torch, i.e. ratio >= 1/3
            target = 1 / 3 if "per op" in r.workload else (1 / 1.5 if "MLP" in r.workload else None)
            if target is not None:
                r.note = f"target ratio >= {target:.2f}: {'met' if r.ratio >= target else 'NOT met'}"
    if torch is None:
        rows.append(Row("(PyTorch not installed: no baseline)", "-", 0.0))
    return rows
