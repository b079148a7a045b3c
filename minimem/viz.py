r"""Pictures and tables for the notebooks: the computation graph, the sweep table, the V curve.

A tensor made by an operation links to its node (``tensor._ctx``); the node links to its
inputs (``ctx.inputs``). Walking these links backwards from an output gives the graph that
reverse mode traverses. :func:`compute_graph` lists it in forward order, with each node at
its *depth* (longest path from a leaf), so that every edge points to a deeper node:

.. math:: \mathrm{depth}(\text{leaf}) = 0, \qquad
          \mathrm{depth}(v) = 1 + \max_{u \to v} \mathrm{depth}(u).

:func:`draw_graph` draws it with matplotlib (one arrow per *use*: ``x * x`` shows two arrows
from ``x``, the two terms that backward accumulates); :func:`sweep_table` prints the forward
values :math:`v_i` and adjoints :math:`\bar{v}_i = \partial f / \partial v_i` node by node;
:func:`plot_eps_sweep` draws the gradient-check error against the step :math:`h` (log-log).
matplotlib is imported only when drawing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .autograd.sparse import dense_grad
from .autograd.tensor import Tensor
from .backend import to_numpy


@dataclass
class GraphNode:
    """One node of a computation graph: a leaf tensor or an operation (its output tensor)."""

    key: tuple              # ("op", id(ctx)) or ("leaf", id(tensor)); unique in the graph
    label: str              # the name: from ``names`` or generated (x0, x1, ... / v1, v2, ...)
    op: str                 # the Function's name ("Mul") or "leaf" / "const"
    depth: int
    tensor: Tensor | None   # the tensor this node holds (None if no longer reachable)
    inputs: list = field(default_factory=list)  # keys of the input nodes, one per use


@dataclass
class ComputeGraph:
    """Nodes in forward (topological) order and edges ``(from_key, to_key)``, one per use."""

    nodes: list
    edges: list

    def node(self, key) -> GraphNode:
        return next(n for n in self.nodes if n.key == key)


def compute_graph(tensor, names=None) -> ComputeGraph:
    """The graph that produced ``tensor`` (no recursion, so deep chains are fine).

    ``names`` maps tensors to labels, e.g. ``{x: "x", y: "y", f: "f"}``; the others get
    ``x0, x1, ...`` (leaves) and ``v1, v2, ...`` (operations) in forward order.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"compute_graph: expected a Tensor, got {type(tensor).__name__}")
    names = dict(names or {})
    order, seen = [], set()
    root = _key(tensor)
    # Iterative post-order DFS from the root: a node is emitted after all of its inputs.
    stack = [(root, tensor, False)]
    while stack:
        key, t, done = stack.pop()
        if done:
            order.append((key, t))
            continue
        if key in seen:
            continue
        seen.add(key)
        stack.append((key, t, True))
        for inp in _input_tensors(t):  # an op's output tensor is found as its consumer's input
            k = _key(inp)
            if k not in seen:
                stack.append((k, inp, False))

    nodes, depth = [], {}
    n_leaf, n_op = 0, 0
    for key, t in order:
        ins = [_key(i) for i in _input_tensors(t)]
        depth[key] = 1 + max((depth[k] for k in ins), default=-1)
        if t._ctx is None:
            op = "leaf" if t.requires_grad else "const"
            label = names.get(t) or f"x{n_leaf}"
            n_leaf += 1
        else:
            op = t._ctx.fn.__name__
            n_op += 1
            label = names.get(t) or f"v{n_op}"
        nodes.append(GraphNode(key, label, op, depth[key], t, ins))
    edges = [(k, n.key) for n in nodes for k in n.inputs]
    return ComputeGraph(nodes, edges)


def _key(t):
    return ("op", id(t._ctx)) if t._ctx is not None else ("leaf", id(t))


def _input_tensors(t):
    if t._ctx is None:
        return []
    return [i for i in t._ctx.inputs if isinstance(i, Tensor)]


def _value_text(t, precision=3) -> str:
    if t is None:
        return ""
    if t.size == 1:
        return f"{float(to_numpy(t.data).reshape(())):.{precision}g}"
    return "x".join(map(str, t.shape))


# ---------------------------------------------------------------------------------------------
def draw_graph(tensor, ax=None, names=None, show_values=True, show_grads=False, title=None):
    """Draw the computation graph of ``tensor``: leaves on the left, the output on the right.

    Boxes are nodes (blue: leaves requiring grad, grey: constants, orange: operations) with
    their value (scalars) or shape; ``show_grads`` adds ``.grad`` where it is set. Each use of
    a tensor is one arrow (a ``FancyArrowPatch``); each node is one text in ``ax.texts``.
    Returns the matplotlib ``Axes``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    graph = compute_graph(tensor, names)
    pos = _layout(graph)
    n_cols = max(n.depth for n in graph.nodes) + 1
    n_rows = max(sum(1 for n in graph.nodes if n.depth == d) for d in range(n_cols))
    if ax is None:
        _, ax = plt.subplots(figsize=(min(1.8 + 1.9 * n_cols, 16), min(1.4 + 1.1 * n_rows, 12)))
    colors = {"leaf": "#cfe2ff", "const": "#e9ecef"}
    boxes = {}
    for n in graph.nodes:
        x, y = pos[n.key]
        lines = [n.label if n.op in ("leaf", "const") else f"{n.label} = {n.op}"]
        if show_values:
            lines.append(_value_text(n.tensor))
        if show_grads and n.tensor is not None and n.tensor.grad is not None:
            lines.append("grad " + _value_text(Tensor(dense_grad(n.tensor.grad))))
        box = FancyBboxPatch((x - _BOX_W / 2, y - _BOX_H / 2), _BOX_W, _BOX_H,
                             boxstyle="round,pad=0.04", fc=colors.get(n.op, "#ffe5b4"),
                             ec="0.3", zorder=3)
        ax.add_patch(box)
        boxes[n.key] = box
        ax.text(x, y, "\n".join(lines), ha="center", va="center", fontsize=9, zorder=4)
    multiplicity, drawn = {}, {}
    for e in graph.edges:
        multiplicity[e] = multiplicity.get(e, 0) + 1
    depth = {n.key: n.depth for n in graph.nodes}
    for src, dst in graph.edges:
        j = drawn[(src, dst)] = drawn.get((src, dst), -1) + 1
        m = multiplicity[(src, dst)]
        rad = 0.5 * (j - (m - 1) / 2)  # repeated uses (x * x) fan out as arcs
        if depth[dst] - depth[src] > 1:  # skips a column: bend around the boxes in between,
            up = pos[src][1] + pos[dst][1] >= 0  # away from the middle of the figure
            rad += -0.45 if up else 0.45
        ax.add_patch(FancyArrowPatch(
            pos[src], pos[dst], arrowstyle="-|>", mutation_scale=14, color="0.35",
            connectionstyle=f"arc3,rad={rad}", patchA=boxes[src], patchB=boxes[dst], zorder=2))
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.9, max(xs) + 0.9)
    ax.set_ylim(min(ys) - 0.9, max(ys) + 0.9)
    ax.set_axis_off()
    ax.set_title(title or f"computation graph: {len(graph.nodes)} nodes, {len(graph.edges)} edges")
    return ax


_BOX_W, _BOX_H = 1.1, 0.75  # node boxes, in data units (columns are 1.8 apart, rows 1.2)


def _layout(graph):
    """x = depth; within a column, nodes sorted by the mean height of their inputs (fewer
    crossings) and spread evenly around y = 0."""
    by_depth = {}
    for n in graph.nodes:
        by_depth.setdefault(n.depth, []).append(n)
    pos = {}
    for d in sorted(by_depth):
        column = by_depth[d]
        if d > 0:
            column = sorted(column, key=lambda n: -np.mean([pos[k][1] for k in n.inputs]))
        for i, n in enumerate(column):
            pos[n.key] = (1.8 * d, 1.2 * ((len(column) - 1) / 2 - i))
    return pos


# ---------------------------------------------------------------------------------------------
def sweep_table(tensor, names=None, precision=4) -> str:
    """The forward and backward sweeps as a table: node, operation, inputs, value, adjoint.

    Adjoints are the ``.grad`` of each node's tensor: call ``retain_grad()`` on intermediate
    tensors before ``backward()`` to see them (leaves always keep theirs).
    """
    graph = compute_graph(tensor, names)
    label = {n.key: n.label for n in graph.nodes}
    rows = [("node", "op", "inputs", "value v", "adjoint v_bar")]
    for n in graph.nodes:
        t = n.tensor
        rows.append((
            n.label,
            "" if n.op in ("leaf", "const") else n.op,
            ", ".join(label[k] for k in n.inputs),
            _array_text(t, precision),
            (_array_text(Tensor(dense_grad(t.grad)), precision)
             if t is not None and t.grad is not None else "-"),
        ))
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    lines = ["  ".join(s.ljust(w) for s, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _array_text(t, precision) -> str:
    if t is None:
        return ""
    a = to_numpy(t.data)
    if a.size == 1:
        return f"{float(a.reshape(())):.{precision}g}"
    return np.array2string(a, precision=precision, separator=", ").replace("\n", "")


# ---------------------------------------------------------------------------------------------
def plot_eps_sweep(sweeps, ax=None, guides=True, title=None):
    """Log-log plot of gradient-check error against the step ``h`` for each sweep.

    ``sweeps``: :class:`minimem.autograd.experiments.EpsSweep` results. The best ``h`` of each
    curve is marked; ``guides`` adds the slopes of truncation (:math:`h^2`) and round-off
    (:math:`\\epsilon/h`, one line per dtype). Returns the ``Axes``.
    """
    import matplotlib.pyplot as plt

    if not isinstance(sweeps, (list, tuple)):
        sweeps = [sweeps]
    if not sweeps:
        raise ValueError("plot_eps_sweep: expected at least one sweep")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5))
    styles = {np.dtype(np.float64): "-", np.dtype(np.float32): "--"}
    for s in sweeps:
        (line,) = ax.loglog(s.eps, np.maximum(s.errors, 1e-17), styles.get(s.dtype, ":"),
                            marker=".", label=f"{s.name} ({s.dtype}), best h={s.best_eps:.0e}")
        ax.loglog([s.best_eps], [s.best_error], "o", ms=9, mfc="none", color=line.get_color())
    if guides:
        h = np.asarray(sweeps[0].eps)
        ax.loglog(h, h ** 2 / 6, color="0.6", lw=1, ls=":", label=r"truncation $h^2/6$")
        for dt in dict.fromkeys(s.dtype for s in sweeps):
            ax.loglog(h, np.finfo(dt).eps / h, color="0.3", lw=1, ls="-.",
                      label=rf"round-off $\epsilon/h$ ({dt})")
    errs = np.concatenate([np.asarray(s.errors) for s in sweeps])
    ax.set_ylim(max(errs[errs > 0].min() / 10, 1e-17), 10)
    ax.set_xlabel("step h")
    ax.set_ylabel(r"central-difference error / $\Vert v^\top J\Vert$")
    ax.set_title(title or "gradient-check error against the step h")
    ax.legend(fontsize=7, loc="best")
    return ax
