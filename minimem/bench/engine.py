"""Engine speed: per-op overhead, a small graph, an MLP step, attention and transformer steps.

Per-op overhead is the time of a chain of ``n`` elementwise ops on an 8x8 tensor, forward and
backward, divided by ``n``: with such tiny arrays nearly all of it is bookkeeping (creating
nodes, the topological sort, accumulating gradients). The training rows are one AdamW step of
``nn.TransformerLM`` (loss, backward, update) at two sizes and one causal attention forward +
backward. When PyTorch is installed (the ``bench`` extra) the same workloads run in PyTorch CPU
eager in the same process, the same architecture (``F.scaled_dot_product_attention``,
``F.layer_norm``, tanh-GELU), timed in interleaved rounds (medians), one thread each: PyTorch
and Numba are set to one thread here; run with ``OPENBLAS_NUM_THREADS=1`` for NumPy's BLAS.
The times are the CPU time of this process (``time.process_time``): with one thread each that
is the time of the work itself, which other jobs on a shared machine do not stretch.

Targets (our time / PyTorch's): per-op overhead <= 3x, the MLP step <= 1.5x, the LM step
(d_model 64) <= 1.3x, the larger LM step (d_model 256) <= 1.2x, attention forward+backward
<= 1.0x. The ``ratio`` column is PyTorch's time / ours (> 1: we are faster).
"""
from __future__ import annotations

import os
import time

import numpy as np

from ._util import Row, interleaved_medians, torch_or_none, with_ratios

DESCRIPTION = ("engine speed: op chain, small graph, MLP, attention and transformer LM steps "
               "(vs PyTorch eager, one thread)")


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


# -- attention and transformer training steps ----------------------------------------------
LM_SMALL = {"vocab": 64, "d_model": 64, "n_layers": 2, "n_heads": 4, "T": 64, "batch": 32}
LM_LARGE = {"vocab": 64, "d_model": 256, "n_layers": 4, "n_heads": 4, "T": 256, "batch": 8}
ATTN = {"B": 8, "H": 4, "T": 256, "D": 32}


def _lm_data(cfg, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, cfg["vocab"], (cfg["batch"], cfg["T"]))
    return tokens, np.roll(tokens, -1, axis=1)


def _lm_minimem(cfg):
    import minimem as mm
    from minimem import nn, optim

    model = nn.TransformerLM(cfg["vocab"], cfg["d_model"], cfg["n_layers"], cfg["n_heads"],
                             cfg["T"], seed=0)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    tokens, targets = _lm_data(cfg)

    def step():
        loss = mm.cross_entropy(model(tokens), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def _torch_lm_class(torch):
    F = torch.nn.functional

    class Block(torch.nn.Module):
        def __init__(self, d, h):
            super().__init__()
            self.h = h
            self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
            self.W_q, self.W_k, self.W_v, self.W_o = (torch.nn.Linear(d, d) for _ in range(4))
            self.fc1, self.fc2 = torch.nn.Linear(d, 4 * d), torch.nn.Linear(4 * d, d)

        def forward(self, x):
            B, T, C = x.shape
            h = self.ln1(x)
            q, k, v = (w(h).view(B, T, self.h, C // self.h).transpose(1, 2)
                       for w in (self.W_q, self.W_k, self.W_v))
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.W_o(o.transpose(1, 2).reshape(B, T, C))
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))

    class LM(torch.nn.Module):
        def __init__(self, vocab, d, n_layers, h, max_len):
            super().__init__()
            self.tok, self.pos = torch.nn.Embedding(vocab, d), torch.nn.Embedding(max_len, d)
            self.blocks = torch.nn.ModuleList(Block(d, h) for _ in range(n_layers))
            self.ln_f, self.head = torch.nn.LayerNorm(d), torch.nn.Linear(d, vocab, bias=False)

        def forward(self, ids):
            x = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
            for b in self.blocks:
                x = b(x)
            return self.head(self.ln_f(x))

    return LM


def _lm_torch(torch, cfg):
    torch.manual_seed(0)
    model = _torch_lm_class(torch)(cfg["vocab"], cfg["d_model"], cfg["n_layers"],
                                   cfg["n_heads"], cfg["T"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens, targets = (torch.from_numpy(a) for a in _lm_data(cfg))

    def step():
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg["vocab"]),
                                                 targets.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def _attention_arrays(cfg, seed=0):
    rng = np.random.default_rng(seed)
    shape = (cfg["B"], cfg["H"], cfg["T"], cfg["D"])
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]


def _attention_minimem(cfg):
    import minimem as mm
    from minimem import nn

    q, k, v, do = _attention_arrays(cfg)
    leaves = [mm.tensor(a, requires_grad=True) for a in (q, k, v)]

    def step():
        for t in leaves:
            t.grad = None
        nn.scaled_dot_product_attention(*leaves, causal=True).backward(do)
    return step


def _attention_torch(torch, cfg):
    leaves = [torch.from_numpy(a).requires_grad_(True) for a in _attention_arrays(cfg)[:3]]
    do = torch.from_numpy(_attention_arrays(cfg)[3])
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def step():
        for t in leaves:
            t.grad = None
        sdpa(*leaves, is_causal=True).backward(do)
    return step


def _lm_name(cfg):
    return (f"LM step {cfg['n_layers']}L d{cfg['d_model']} T{cfg['T']} B{cfg['batch']} "
            "(AdamW)")


def workloads(n_chain):
    """(name, minimem step factory, PyTorch step factory (torch -> step), calls per step, target
    of our time / PyTorch's or None)."""
    a = ATTN
    return [
        (f"op chain ({n_chain} ops, 8x8), per op", lambda: _chain_minimem(n_chain),
         lambda t: _chain_torch(t, n_chain), n_chain, 3.0),
        ("small graph (7 ops, 32x32) fwd+bwd", _graph_minimem, _graph_torch, 1, None),
        ("2-layer MLP step 64x256 (AdamW)", lambda: _mlp_minimem(64, 256, 256, 10),
         lambda t: _mlp_torch(t, 64, 256, 256, 10), 1, 1.5),
        (f"attention fwd+bwd B{a['B']} H{a['H']} T{a['T']} D{a['D']} causal",
         lambda: _attention_minimem(a), lambda t: _attention_torch(t, a), 1, 1.0),
        (_lm_name(LM_SMALL), lambda: _lm_minimem(LM_SMALL), lambda t: _lm_torch(t, LM_SMALL),
         1, 1.3),
        (_lm_name(LM_LARGE), lambda: _lm_minimem(LM_LARGE), lambda t: _lm_torch(t, LM_LARGE),
         1, 1.2),
    ]


def _one_thread():
    """Numba (and PyTorch, in run) to one thread; returns a function that restores them."""
    import numba

    prev = numba.get_num_threads()
    numba.set_num_threads(1)
    return lambda: numba.set_num_threads(prev)


def run(quick=False, only=None):
    """Time every workload (or those whose name contains ``only``) against PyTorch eager."""
    torch = torch_or_none()
    prev_torch = torch.get_num_threads() if torch is not None else None
    restore_numba = _one_thread()
    if torch is not None:
        torch.set_num_threads(1)
    n_chain = 200 if quick else 1000
    repeat = 3 if quick else 15
    rows = []
    try:
        for name, ours, theirs, per, target in workloads(n_chain):
            if only is not None and only not in name:
                continue
            fns = {"minimem": ours()}
            if torch is not None:
                fns["pytorch eager"] = theirs(torch)
            med = interleaved_medians(fns, repeat=repeat, warmup=1 if quick else 2,
                                      clock=time.process_time)
            mine = Row(name, "minimem", med["minimem"] / per)
            rows.append(mine)
            if torch is not None:
                rows.append(Row(name, "pytorch eager", med["pytorch eager"] / per))
                with_ratios(rows, "pytorch eager")
                if target is not None:
                    slow = 1 / mine.ratio   # our time / PyTorch's
                    mine.note = (f"{slow:.2f}x PyTorch's time; target <= {target:g}x: "
                                 f"{'met' if slow <= target else 'NOT met'}")
    finally:
        restore_numba()
        if torch is not None:
            torch.set_num_threads(prev_torch)
    if torch is None:
        rows.append(Row("(PyTorch not installed: no baseline; pip install minimem[bench])",
                        "-", 0.0))
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        rows.append(Row("(set OPENBLAS_NUM_THREADS=1 for one BLAS thread, as PyTorch here)",
                        "-", 0.0))
    return rows
