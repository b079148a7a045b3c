"""``Module`` and ``Parameter``: the PyTorch-style container for layers and their weights.

A Module registers every ``Parameter`` and sub-``Module`` assigned as an attribute, so
``parameters()``, ``state_dict()`` and ``zero_grad()`` find them without bookkeeping by hand.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..autograd.tensor import Tensor
from ..backend import get_xp, to_device, to_numpy
from ..checks import check_float_tensor, check_shape


class Parameter(Tensor):
    """A leaf tensor that a Module learns; always ``requires_grad=True``."""

    __slots__ = ()

    def __init__(self, data, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype)

    def __repr__(self):
        return "Parameter(" + super().__repr__()[len("tensor("):]


class Module:
    """Base class of layers. Subclasses set attributes in ``__init__`` and define ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes"
            )
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array):
        """A non-learned array saved in ``state_dict`` (e.g. BatchNorm running statistics)."""
        object.__setattr__(self, name, array)
        self._buffers[name] = True

    def forward(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} (a Module) must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- traversal --------------------------------------------------------------------------
    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) for every parameter, each shared one listed once."""
        seen = set()
        for mod_name, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters()))

    # -- modes and gradients ----------------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    # -- state --------------------------------------------------------------------------------
    def _named_buffers(self):
        for mod_name, m in self.named_modules():
            for name in m._buffers:
                yield (f"{mod_name}.{name}" if mod_name else name), m, name

    def state_dict(self):
        """{dotted name: NumPy copy} of every parameter and buffer."""
        sd = OrderedDict((n, to_numpy(p.data).copy()) for n, p in self.named_parameters())
        for full, m, name in self._named_buffers():
            sd[full] = to_numpy(getattr(m, name)).copy()
        return sd

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the parameters and buffers; shapes must match."""
        own = dict(self.named_parameters())
        bufs = {full: (m, name) for full, m, name in self._named_buffers()}
        missing = [k for k in list(own) + list(bufs) if k not in state]
        unexpected = [k for k in state if k not in own and k not in bufs]
        if strict and (missing or unexpected):
            raise KeyError(
                f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}"
            )
        for k, v in state.items():
            if k in own:
                p = own[k]
                if tuple(v.shape) != p.shape:
                    raise ValueError(
                        f"load_state_dict: '{k}' has shape {tuple(v.shape)}, expected {p.shape}"
                    )
                p.data = get_xp(p.data).asarray(v, dtype=p.dtype).copy()
            elif k in bufs:
                m, name = bufs[k]
                old = getattr(m, name)
                object.__setattr__(m, name, get_xp(old).asarray(v, dtype=old.dtype).copy())
        return self

    def save(self, path):
        """Write ``state_dict()`` to an ``.npz`` file."""
        np.savez(path, **self.state_dict())

    def load(self, path, strict=True):
        with np.load(path) as f:
            return self.load_state_dict({k: f[k] for k in f.files}, strict=strict)

    def to(self, device=None, dtype=None):
        """Move (and/or cast) every parameter and buffer in place; returns self."""
        for p in self.parameters():
            data = to_device(p.data, device) if device else p.data
            p.data = data.astype(dtype) if dtype is not None else data
            p.grad = None
        for _, m, name in self._named_buffers():
            data = getattr(m, name)
            data = to_device(data, device) if device else data
            object.__setattr__(m, name, data.astype(dtype) if dtype is not None else data)
        return self

    def double(self):
        return self.to(dtype=np.float64)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"


class ModuleList(Module):
    """A list of Modules, registered as children ``0, 1, ...``."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList.append: expected a Module, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


def _parameter_slots(module):
    """(owning module, attribute name) of each parameter, in ``parameters()`` order."""
    seen, slots = set(), []
    for _, m in module.named_modules():
        for name, p in m._parameters.items():
            if id(p) not in seen:
                seen.add(id(p))
                slots.append((m, name))
    return slots


def functional_call(module, params, *args, **kwargs):
    """Run ``module(*args)`` with its parameters replaced by the tensors ``params``.

    ``params`` lists one tensor per ``module.parameters()`` entry, in that order, or is a dict
    from the names of ``module.named_parameters()`` to tensors (as
    ``torch.func.functional_call``; every name must be given). Each replacement is a floating
    Tensor of the parameter's shape (never broadcast). This is how a gradient check treats a
    layer's weights as inputs.
    """
    fn = "functional_call"
    if not isinstance(module, Module):
        raise TypeError(f"{fn}: module must be a Module, got {type(module).__name__}")
    slots = _parameter_slots(module)
    if isinstance(params, dict):
        names = [n for n, _ in module.named_parameters()]
        unknown = sorted(set(params) - set(names))
        missing = [n for n in names if n not in params]
        if unknown or missing:
            raise ValueError(f"{fn}: params must name each of the module's parameters "
                             f"{names}; unknown {unknown}, missing {missing}")
        params = [params[n] for n in names]
    elif not isinstance(params, (list, tuple)):
        raise TypeError(f"{fn}: params must be a list or a dict of Tensors, got "
                        f"{type(params).__name__}")
    if len(params) != len(slots):
        raise ValueError(
            f"{fn}: expected {len(slots)} parameter tensors, got {len(params)}"
        )
    for i, ((m, name), t) in enumerate(zip(slots, params)):
        check_float_tensor(fn, f"params[{i}]", t)
        check_shape(fn, f"params[{i}] ({name})", t, m._parameters[name].shape)
    for (m, name), t in zip(slots, params):
        object.__setattr__(m, name, t)
    try:
        return module(*args, **kwargs)
    finally:
        for m, name in slots:
            object.__setattr__(m, name, m._parameters[name])
