"""``minimem bench pkm``: the product-key memory layer against a flat exact scan.

One batch of 1024 tokens, heads = 4, k = 32, d_key = 128, at N = 128^2, 512^2 and 1024^2
slots, at two widths d_model = d_out: 1024 (the paper's memory layers) and 256 (a narrow model).
``--quick``: 64 tokens, d_model = 128, N = 32^2 and 64^2. Workloads:

* ``forward``: the whole layer (query projection and batch norm, search, softmax, read);
* ``fwd+bwd``: forward, then backward of ``sum(out * G)`` into every parameter through the
  engine, with the value table's gradient dense (a lazily zeroed array of the table's size, of
  which the scatter-add touches one page per row read: at 1024^2 x 1024 that is ~130k page
  faults, most of the backward's time);
* ``fwd+bwd sparse``: the same with ``sparse_grad=True``: the table's gradient is a
  RowSparseGrad that keeps the read's factors (rows, weights, upstream rows; nothing of the
  table's size, nor of size M H k d, is allocated), the setting for large tables;
* ``train step sparse`` (pkm only): ``fwd+bwd sparse`` then one ``optim.SparseAdam`` step,
  which sums the repeated rows and updates m, v and the table in the ~M H k rows read. No
  target: it moves O(M H k d) numbers in rows scattered over the table (and faults in the
  pages of m and v the first time a row is read), which a bigger table makes slower;
* ``search``: the key search alone (sub-scores and the two-level top-k, vs the flat scan).

Baseline: the same layer with ``impl="flat"``, an exact scan of all N keys (chunked BLAS
matmuls and a running top-k), timed in the same run up to N = 512^2 (at 1024^2 it would take
minutes). Targets: >= 50x faster than the flat scan at 512^2, and the layer's time at 1024^2
within 2x of its time at 128^2 (the "growth" rows, per width).

Why the width matters for the growth: the query projection and the read cost O(d_model) per
token whatever N is, while the sub-key scoring grows like sqrt(N) (2 n d_key/2 per head and
token) and the read's rows stop fitting in cache. At d_model = 256 the N-independent part is
small, so the growth shows the sqrt(N) terms; at the paper's width they are a minor share.
"""
from __future__ import annotations

from ._util import Row, timeit, with_ratios

DESCRIPTION = "product-key memory: layer forward/backward vs a flat exact key scan"
TOKENS = 1024


def _layer(n, d_model, impl="fast", seed=0):
    from ..memory.product_keys.layers import ProductKeyMemory

    return ProductKeyMemory(d_model, d_model, n, topk=32, heads=4, d_key=128, impl=impl,
                            seed=seed)


def _workloads(layer, x, G):
    import minimem as mm

    from ..memory.product_keys.layers import _SEARCH

    def forward():
        with mm.no_grad():
            layer(x)

    def fwd_bwd(sparse, optimizer=None):
        def run():
            layer.sparse_grad = sparse
            for p in layer.parameters():
                p.grad = None
            xx = mm.tensor(x.data, requires_grad=True)
            (layer(xx) * G).sum().backward()
            layer.sparse_grad = False
            if optimizer is not None:
                optimizer.step()
        return run

    with mm.no_grad():
        q1, q2 = layer.queries(x)

    def search():
        with mm.no_grad():
            _SEARCH[layer.impl][0](q1, q2, layer.C1, layer.C2, layer.topk)

    work = {"forward": forward, "fwd+bwd": fwd_bwd(False), "fwd+bwd sparse": fwd_bwd(True),
            "search": search}
    if layer.impl == "fast":
        work["train step sparse"] = fwd_bwd(True, mm.optim.SparseAdam(layer.parameters(),
                                                                      lr=1e-4))
    return work


def _time_width(tokens, d_model, sizes, flat_max):
    """Rows for one width; the same layer (same parameters) is timed with both searches."""
    import minimem as mm

    x = mm.randn(tokens, d_model, seed=1)
    G = mm.randn(tokens, d_model, seed=2)
    rows, per_size = [], {}
    for n in sizes:
        layer = _layer(n, d_model)
        for impl in (["pkm", "flat scan"] if n <= flat_max else ["pkm"]):
            layer.impl = "fast" if impl == "pkm" else "flat"
            for work, fn in _workloads(layer, x, G).items():
                # best of 7: a busy machine's pauses only ever add time
                t = timeit(fn, repeat=7 if impl == "pkm" else 1, warmup=1,
                           max_seconds=5 if impl == "pkm" else 1)
                rows.append(Row(f"{work} N={n}^2 d={d_model}", impl, t,
                                note=f"{t / tokens * 1e6:.2f} us/token"))
                if impl == "pkm":
                    per_size[(work, n)] = t
        del layer
    rows = with_ratios(rows, "flat scan")
    lo, hi = sizes[0], sizes[-1]
    for work in ("forward", "fwd+bwd", "fwd+bwd sparse", "search", "train step sparse"):
        t_lo, t_hi = per_size[(work, lo)], per_size[(work, hi)]
        growth = t_hi / t_lo
        note = f"time grows x{growth:.2f} for x{(hi / lo) ** 2:.0f} slots"
        if work in ("forward", "fwd+bwd", "fwd+bwd sparse"):
            note += f" (target <= 2x: {'met' if growth <= 2 else 'MISSED'})"
        rows.append(Row(f"{work}: N={hi}^2 vs {lo}^2 d={d_model}", "pkm", t_hi,
                        baseline=f"pkm N={lo}^2", ratio=t_lo / t_hi, note=note,
                        extra={"growth": growth}))
    return rows


def run(quick=False):
    if quick:
        return _time_width(64, 128, [32, 64], flat_max=64)
    rows = []
    for d_model in (1024, 256):
        rows += _time_width(TOKENS, d_model, [128, 512, 1024], flat_max=512)
    return rows
