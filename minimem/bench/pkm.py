"""``minimem bench pkm``: the product-key memory layer against a flat exact scan.

One batch of 1024 tokens, heads = 4, k = 32, d_key = 128, d_model = 256, at N = 128^2,
512^2 and 1024^2 slots (``--quick``: 64 tokens, d_model = 128, N = 32^2 and 64^2). Workloads:

* ``forward``: the whole layer (query projection and batch norm, search, softmax, read);
* ``fwd+bwd``: forward, then backward of ``sum(out * G)`` into every parameter through the
  engine (which stores dense gradients, so the value table's gradient costs O(N d) memory);
* ``search``: the key search alone (sub-scores and the two-level top-k, vs the flat scan).

Baseline: the same layer with ``impl="flat"``, an exact scan of all N keys (chunked BLAS
matmuls and a running top-k), timed in the same run up to N = 512^2 (at 1024^2 it would take
minutes). Targets: >= 50x faster than the flat scan at 512^2, and the layer's time at 1024^2
within 2x of its time at 128^2 (both reported as extras).
"""
from __future__ import annotations

from ._util import Row, timeit, with_ratios

NAME = "pkm"
ORDER = 30
DESCRIPTION = "product-key memory: layer forward/backward vs a flat exact key scan"


def _layer(n, impl, d_model, seed=0):
    from ..memory.product_keys_layer import ProductKeyMemory

    return ProductKeyMemory(d_model, d_model, n, topk=32, heads=4, d_key=128, impl=impl,
                            seed=seed)


def _workloads(layer, x, G):
    import minimem as mm

    from ..memory.product_keys_layer import _SEARCH

    def forward():
        with mm.no_grad():
            layer(x)

    def fwd_bwd():
        for p in layer.parameters():
            p.grad = None
        xx = mm.tensor(x.data, requires_grad=True)
        (layer(xx) * G).sum().backward()

    with mm.no_grad():
        q1, q2 = layer.queries(x)
    search_fn = _SEARCH[layer.impl][0]

    def search():
        with mm.no_grad():
            search_fn(q1, q2, layer.C1, layer.C2, layer.topk)

    return {"forward": forward, "fwd+bwd": fwd_bwd, "search": search}


def run(quick=False):
    import minimem as mm

    tokens, d_model = (64, 128) if quick else (1024, 256)
    sizes = [32, 64] if quick else [128, 512, 1024]
    flat_max = 64 if quick else 512
    x = mm.randn(tokens, d_model, seed=1)
    G = mm.randn(tokens, d_model, seed=2)
    rows, per_size = [], {}
    for n in sizes:
        impls = ["pkm", "flat scan"] if n <= flat_max else ["pkm"]
        for impl in impls:
            layer = _layer(n, "fast" if impl == "pkm" else "flat", d_model)
            for work, fn in _workloads(layer, x, G).items():
                t = timeit(fn, repeat=3 if impl == "pkm" else 1, warmup=1,
                           max_seconds=5 if impl == "pkm" else 1)
                rows.append(Row(f"{work} N={n}^2 ({tokens} tok)", impl, t,
                                note=f"{t / tokens * 1e6:.2f} us/token"))
                if impl == "pkm":
                    per_size[(work, n)] = t
            del layer
    rows = with_ratios(rows, "flat scan")
    lo, hi = sizes[0], sizes[-1]
    for work in ("forward", "fwd+bwd", "search"):
        t_lo, t_hi = per_size[(work, lo)], per_size[(work, hi)]
        rows.append(Row(f"{work}: N={hi}^2 vs N={lo}^2", "pkm", t_hi, baseline=f"pkm N={lo}^2",
                        ratio=t_lo / t_hi,
                        note=f"time grows x{t_hi / t_lo:.2f} for x{(hi / lo) ** 2:.0f} slots",
                        extra={"growth": t_hi / t_lo}))
    return rows
