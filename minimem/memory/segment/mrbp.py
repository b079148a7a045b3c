r"""Training a segment-recurrent model through time: BPTT and memory replay back-propagation.

A *cell* maps a segment and the memory before it to an output and the memory after it,

.. math:: (y_t, M_{t+1}) = f_\theta(x_t, M_t), \qquad
          \mathcal{L} = \sum_{t=0}^{T-1} \ell(y_t, x_t).

**BPTT** (:func:`bptt`) records the whole unrolled graph and backpropagates once: the tape holds
the activations of all T segments, so memory grows linearly in T.

**MRBP** (:func:`mrbp`, Wu et al., *Memformer*) keeps only the memories at the segment
boundaries. Pass 1 runs the cell without a tape and stores :math:`M_0, \dots, M_T` (and the
random state before each segment, so dropout masks replay identically). Pass 2 goes newest
segment first. With :math:`\bar M_T = 0` and :math:`\bar M_t = \partial\mathcal{L}/\partial M_t`,
segment t is recomputed from the stored :math:`M_t` with a tape and one joint backward of

.. math:: J_t = \ell(y_t, x_t) + \langle M_{t+1}, \bar M_{t+1} \rangle

gives, by the chain rule,

.. math:: \bar M_t = \frac{\partial J_t}{\partial M_t}, \qquad
          \bar\theta \mathrel{+}= \frac{\partial J_t}{\partial \theta},

since :math:`\partial\mathcal{L}/\partial M_t = \partial\ell_t/\partial M_t +
(\partial M_{t+1}/\partial M_t)^\top \bar M_{t+1}`. Only one segment's tape is alive at a time:
peak tape memory is flat in T, for one extra forward pass per segment.

**Truncation** ``window=k`` sets :math:`\bar M_t = 0` whenever t is a positive multiple of k,
which is exactly BPTT with the memory detached before every k-th segment.

Memories may be a Tensor or a (nested) tuple/list of Tensors (e.g. a per-layer cache); entries
that are not Tensors pass through untouched.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ... import backend
from ...autograd import ops
from ...autograd.function import enable_grad, no_grad
from ...autograd.tensor import Tensor
from ...backend import get_xp
from ...checks import check_int
from ...nn import Module

# ---- memory structures ----------------------------------------------------------------------
def _leaves(memory):
    """The Tensors of a memory structure, in a fixed order."""
    if isinstance(memory, Tensor):
        return [memory]
    if isinstance(memory, (tuple, list)):
        return [t for m in memory for t in _leaves(m)]
    return []


def _map(fn, memory):
    """The same structure with every Tensor replaced by ``fn(tensor)``."""
    if isinstance(memory, Tensor):
        return fn(memory)
    if isinstance(memory, (tuple, list)):
        return type(memory)(_map(fn, m) for m in memory)
    return memory


def _check_memory(fn_name, memory):
    if memory is None or isinstance(memory, Tensor):
        return
    if isinstance(memory, (tuple, list)):
        for m in memory:
            _check_memory(fn_name, m)
        return
    raise TypeError(f"{fn_name}: memory0 must be a Tensor or a tuple/list of Tensors, "
                    f"got {type(memory).__name__}")


def _stored(memory):
    """Pass-1 storage of a memory: its arrays (Tensors become their data, cut from any graph)."""
    return _map(lambda t: Tensor(t.data), memory)


def _fresh_leaf(memory):
    """A replay input: new leaves sharing the stored arrays; floating ones require grad."""
    return _map(lambda t: Tensor(t.data, requires_grad=t.dtype.kind == "f"), memory)


def _nbytes(memory):
    return sum(int(t.data.nbytes) for t in _leaves(memory))


# ---- random state: dropout masks must replay identically -----------------------------------
def random_generators(cell, modules=None):
    """The numpy Generators a cell may draw from: the global one and each module's own.

    ``modules``: Modules to search (default: the cell itself when it is a Module, or the Module
    of a bound method such as ``model.step``). Every ``np.random.Generator`` attribute of each
    sub-module is found (e.g. ``Dropout.rng``).
    """
    if modules is None:
        owner = cell if isinstance(cell, Module) else getattr(cell, "__self__", None)
        modules = [owner] if isinstance(owner, Module) else []
    elif isinstance(modules, Module):
        modules = [modules]
    gens, seen = [backend.get_rng()], set()
    seen.add(id(gens[0]))
    for root in modules:
        if not isinstance(root, Module):
            raise TypeError(f"random_generators: modules must be Modules, got {type(root).__name__}")
        for m in root.modules():
            for v in vars(m).values():
                if isinstance(v, np.random.Generator) and id(v) not in seen:
                    seen.add(id(v))
                    gens.append(v)
    return gens


def snapshot_rng(generators):
    """The bit-generator states (deep copies) of ``generators``."""
    return [g.bit_generator.state for g in generators]


def restore_rng(generators, states):
    for g, s in zip(generators, states):
        g.bit_generator.state = s


# ---- shared checks --------------------------------------------------------------------------
def _check_args(fn_name, cell, memory0, segments, loss_fn, window):
    if not callable(cell):
        raise TypeError(f"{fn_name}: cell must be callable (segment, memory) -> (output, memory), "
                        f"got {type(cell).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"{fn_name}: loss_fn must be callable (output, segment) -> scalar Tensor, "
                        f"got {type(loss_fn).__name__}")
    _check_memory(fn_name, memory0)
    if not isinstance(segments, (list, tuple)) or len(segments) == 0:
        got = f"an empty {type(segments).__name__}" if isinstance(segments, (list, tuple)) \
            else type(segments).__name__
        raise ValueError(f"{fn_name}: segments must be a non-empty list, got {got}")
    if window is not None:
        check_int(fn_name, "window", window, low=1)
    return list(segments)


def _segment_loss(fn_name, loss_fn, output, segment, t):
    """loss_fn's value on segment t: a scalar Tensor, or None for a segment without loss."""
    loss = loss_fn(output, segment)
    if loss is None:
        return None
    if not isinstance(loss, Tensor) or loss.size != 1:
        raise TypeError(f"{fn_name}: loss_fn must return a scalar Tensor (or None), got "
                        f"{getattr(loss, 'shape', type(loss).__name__)} on segment {t}")
    return loss


def _cut(t, window):
    """Is the memory entering segment t detached (a truncation boundary)?"""
    return window is not None and t > 0 and t % window == 0


# ---- BPTT: the reference --------------------------------------------------------------------
def bptt(cell, memory0, segments, loss_fn, window=None):
    """Backpropagation through time over the whole unrolled graph (the reference).

    Returns the total loss (float); parameter gradients accumulate in ``.grad`` and, when
    ``memory0`` requires grad, its gradient reaches ``memory0.grad`` (or its graph).
    ``window=k`` detaches the memory before every k-th segment (truncated BPTT).
    """
    segments = _check_args("bptt", cell, memory0, segments, loss_fn, window)
    memory, total, value = memory0, None, 0.0
    for t, seg in enumerate(segments):
        if _cut(t, window):
            memory = _map(lambda m: m.detach(), memory)
        output, memory = cell(seg, memory)
        loss = _segment_loss("bptt", loss_fn, output, seg, t)
        if loss is None:
            continue
        value += float(loss.item())
        if loss.requires_grad:
            total = loss if total is None else total + loss
    if total is not None:
        total.backward()
    return value


# ---- MRBP -----------------------------------------------------------------------------------
@dataclass
class MRBPStats:
    """What one :func:`mrbp` call kept and checked."""

    n_segments: int = 0
    stored_bytes: int = 0          # the boundary memories kept between the two passes
    replay_max_abs_diff: float = 0.0  # replayed vs stored memories (0.0 when exact)
    segment_losses: list = field(default_factory=list)


def store_boundaries(cell, memory0, segments, loss_fn, generators=()):
    """Pass 1 of MRBP: run every segment without a tape.

    Returns ``(boundaries, rng_states, losses)``: the memories :math:`M_0..M_T` (arrays cut from
    any graph), the random state before each segment, and each segment's loss (float or None).
    """
    boundaries, rng_states, losses = [_stored(memory0)], [], []
    with no_grad():
        memory = boundaries[0]
        for t, seg in enumerate(segments):
            rng_states.append(snapshot_rng(generators))
            output, memory = cell(seg, memory)
            loss = _segment_loss("mrbp", loss_fn, output, seg, t)
            losses.append(None if loss is None else float(loss.item()))
            boundaries.append(_stored(memory))
    return boundaries, rng_states, losses


def _joint_objective(loss, memory_out, grad_out):
    r"""J = loss + sum_k <M_out^k, grad^k> over the memory leaves that carry a gradient."""
    terms = [] if loss is None or not loss.requires_grad else [loss]
    if grad_out is not None:
        for m, g in zip(_leaves(memory_out), grad_out):
            if g is not None and m.requires_grad:
                terms.append(ops.sum(m * Tensor(g)))
    if not terms:
        return None
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _memory_grad(memory_in):
    """The gradient arrays of the replay's input leaves (None where none arrived)."""
    grads = [None if t.grad is None else t.grad.data for t in _leaves(memory_in)]
    return None if all(g is None for g in grads) else grads


def _replay_diff(replayed, stored, t, check):
    """Largest |replayed - stored| over the memory leaves; raises when check and not exact."""
    worst = 0.0
    for a, b in zip(_leaves(replayed), _leaves(stored)):
        if a.shape != b.shape:
            raise RuntimeError(f"mrbp: the replay of segment {t} gave a memory of shape {a.shape}, "
                               f"the stored one is {b.shape}")
        xp = get_xp(a.data)
        if a.size:
            worst = max(worst, float(xp.abs(a.data - b.data).max()))
    if check and worst != 0.0:
        raise RuntimeError(
            f"mrbp: replaying segment {t} did not reproduce its stored memory (max |diff| "
            f"{worst:.3e}); the cell draws randomness mrbp does not restore (pass modules= with "
            "every Module that owns a Generator) or is not deterministic; check_replay=False skips "
            "this check"
        )
    return worst


def mrbp(cell, memory0, segments, loss_fn, window=None, modules=None, check_replay=True,
         return_stats=False):
    """Memory replay back-propagation: BPTT's gradients with one segment's tape at a time.

    ``cell(segment, memory) -> (output, new_memory)``; ``loss_fn(output, segment)`` -> scalar
    Tensor (or None: no loss on that segment). Returns the total loss (float), or
    ``(loss, MRBPStats)`` with ``return_stats=True``; gradients accumulate in the parameters'
    ``.grad`` and in ``memory0.grad`` when it requires grad, exactly as :func:`bptt` would leave
    them. ``window=k`` truncates (BPTT with a detach before every k-th segment). ``modules``:
    where to find the random generators to replay (default: the cell's own Module). With
    ``check_replay`` every replayed memory must equal the stored one bit for bit.
    """
    segments = _check_args("mrbp", cell, memory0, segments, loss_fn, window)
    n = len(segments)
    gens = random_generators(cell, modules)
    boundaries, rng_states, losses = store_boundaries(cell, memory0, segments, loss_fn, gens)
    end_state = snapshot_rng(gens)
    worst = 0.0
    # Exercise 50.1 (3 pt): the MRBP replay loop. Newest segment first: restore the random state
    # of segment t, recompute it with a tape from a fresh leaf copy of its stored input memory,
    # backpropagate its loss plus <new memory, incoming gradient> in one joint backward, and hand
    # the input memory's gradient to segment t - 1 (None across a truncation boundary, _cut).
    # Keep `worst` = the largest replay difference (_replay_diff) and leave the gradient of
    # memory0 in `grad_mem`.
    # Needs: 0.1, 0.3, 0.5
    ### BEGIN SOLUTION
    grad_mem = None
    for t in reversed(range(n)):
        restore_rng(gens, rng_states[t])
        memory_in = _fresh_leaf(boundaries[t])
        with enable_grad():
            output, memory_out = cell(segments[t], memory_in)
            loss = _segment_loss("mrbp", loss_fn, output, segments[t], t)
            objective = _joint_objective(loss, memory_out, grad_mem)
        worst = max(worst, _replay_diff(memory_out, boundaries[t + 1], t, check_replay))
        if objective is not None:
            objective.backward()
        grad_mem = None if _cut(t, window) else _memory_grad(memory_in)
    ### END SOLUTION
    restore_rng(gens, end_state)
    if grad_mem is not None:  # hand the gradient of M_0 to memory0 (and to its graph, if any)
        tail = _joint_objective(None, memory0, grad_mem)
        if tail is not None:
            tail.backward()
    value = float(sum(v for v in losses if v is not None))
    if not return_stats:
        return value
    return value, MRBPStats(n, sum(_nbytes(b) for b in boundaries), worst, losses)
