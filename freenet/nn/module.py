"""Module: the base class of layers and models, holding parameters, buffers and submodules by name.

Assigning a ``Parameter`` or a ``Module`` as an attribute registers it; ``register_buffer`` registers
state that is saved but not trained (running statistics, say). Names nest with dots, as in PyTorch:

>>> import freenet as fn
>>> model = fn.nn.Sequential(fn.nn.Linear(2, 3), fn.nn.ReLU(), fn.nn.Linear(3, 1))
>>> [name for name, _ in model.named_parameters()]
['0.weight', '0.bias', '2.weight', '2.bias']
"""

from collections import OrderedDict, namedtuple

import numpy as np

from freenet import devices as _device
from freenet.errors import FreenetError
from freenet.factory import from_numpy
from freenet.nn.parameter import Parameter
from freenet.tensor import Tensor

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict(..., strict=False)`` skipped: keys the model has and the state lacks, and
    keys the state has and the model lacks."""

    __slots__ = ()


def _check_name(owner, name, kind):
    if not isinstance(name, str):
        raise FreenetError(f"{owner}: {kind} name must be a string, not {type(name).__name__}")
    if not name or "." in name:
        raise FreenetError(f"{owner}: {kind} name {name!r} must be non-empty and contain no '.'")


def _addindent(text, spaces):
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


class Module:
    """Base class for layers and models: subclasses set parameters and submodules in ``__init__``
    (after ``super().__init__()``) and compute in ``forward``; calling the module calls ``forward``.
    """

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", {})

    def forward(self, *args, **kwargs):
        raise FreenetError(f"{type(self).__name__} has no forward(); subclasses of Module must define it")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- registration ------------------------------------------------------------------------------
    def _registry(self, kind):
        registry = self.__dict__.get(kind)
        if registry is None:
            raise FreenetError(f"{type(self).__name__}: call super().__init__() before assigning parameters, "
                               "buffers or submodules")
        return registry

    def _forget(self, name, keep):
        """Drops ``name`` from the registries other than ``keep`` (so re-assigning keeps its place)."""
        for kind in ("_parameters", "_buffers", "_modules"):
            if kind != keep:
                self.__dict__[kind].pop(name, None)
        self._non_persistent.discard(name)
        self.__dict__.pop(name, None)

    def register_parameter(self, name, param):
        """Registers ``param`` (a Parameter, or None for an absent one such as ``bias=False``)."""
        params = self._registry("_parameters")
        _check_name(type(self).__name__, name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise FreenetError(f"{type(self).__name__}: cannot register a {type(param).__name__} as parameter "
                               f"'{name}' (expected freenet.nn.Parameter or None)")
        if name not in params and hasattr(self, name):
            raise FreenetError(f"{type(self).__name__}: attribute '{name}' already exists")
        self._forget(name, "_parameters")
        params[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Registers non-trained state: a Tensor or ndarray (kept as a Tensor sharing its array), or None.

        Persistent buffers go into ``state_dict``; all buffers are listed by ``buffers()``.
        """
        buffers = self._registry("_buffers")
        _check_name(type(self).__name__, name, "buffer")
        if name not in buffers and hasattr(self, name):
            raise FreenetError(f"{type(self).__name__}: attribute '{name}' already exists")
        tensor = self._as_buffer(name, tensor)
        self._forget(name, "_buffers")
        buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def _as_buffer(self, name, value):
        if value is None or isinstance(value, Tensor):
            return value
        if isinstance(value, np.ndarray):
            return from_numpy(value)
        raise FreenetError(f"{type(self).__name__}: buffer '{name}' must be a Tensor, an ndarray or None, "
                           f"not {type(value).__name__}")

    def add_module(self, name, module):
        """Registers ``module`` (or None) as a child under ``name``."""
        modules = self._registry("_modules")
        _check_name(type(self).__name__, name, "module")
        if module is not None and not isinstance(module, Module):
            raise FreenetError(f"{type(self).__name__}: cannot add a {type(module).__name__} as module "
                               f"'{name}' (expected a Module or None)")
        if name not in modules and hasattr(self, name):
            raise FreenetError(f"{type(self).__name__}: attribute '{name}' already exists")
        self._forget(name, "_modules")
        modules[name] = module

    register_module = add_module

    def __setattr__(self, name, value):
        d = self.__dict__
        params, buffers, modules = d.get("_parameters"), d.get("_buffers"), d.get("_modules")
        if isinstance(value, Parameter):
            self._registry("_parameters")
            self._forget(name, "_parameters")
            params[name] = value
        elif params is not None and name in params:
            if value is not None:
                raise FreenetError(f"{type(self).__name__}: cannot assign a {type(value).__name__} to parameter "
                                   f"'{name}' (expected freenet.nn.Parameter or None)")
            params[name] = None
        elif isinstance(value, Module):
            self._registry("_modules")
            self._forget(name, "_modules")
            modules[name] = value
        elif modules is not None and name in modules:
            if value is not None:
                raise FreenetError(f"{type(self).__name__}: cannot assign a {type(value).__name__} to submodule "
                                   f"'{name}' (expected a Module or None)")
            modules[name] = None
        elif buffers is not None and name in buffers:
            buffers[name] = self._as_buffer(name, value)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):  # only called when ordinary lookup fails
        d = self.__dict__
        for kind in ("_parameters", "_buffers", "_modules"):
            registry = d.get(kind)
            if registry is not None and name in registry:
                return registry[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        d = self.__dict__
        for kind in ("_parameters", "_buffers", "_modules"):
            if name in d.get(kind, ()):
                del d[kind][name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))

    # -- traversal ---------------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """(dotted name, module) for this module (name ``prefix``) and every module below it."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, kind, prefix, recurse, remove_duplicate):
        seen = set()
        owners = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for owner_name, owner in owners:
            for name, value in getattr(owner, kind).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield owner_name + ("." if owner_name else "") + name, value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(dotted name, Parameter) pairs; a parameter shared by two modules appears once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Calls ``fn`` on every submodule (children first) and then on this module; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # -- modes and gradients -----------------------------------------------------------------------
    def train(self, mode=True):
        """Sets the ``training`` flag of this module and all below it; returns self."""
        if not isinstance(mode, bool):
            raise FreenetError(f"train: mode must be a bool, not {type(mode).__name__}")
        for module in self.modules():
            module.training = mode
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none=True):
        """Drops every parameter's gradient (or fills it with zeros if ``set_to_none`` is false)."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad._data[...] = 0

    def to(self, *args, dtype=None, device=None, non_blocking=False):
        """``to(dtype)``, ``to(device)`` or ``to(device, dtype)``: casts floating-point parameters, their gradients
        and buffers to ``dtype``, in place, and returns self (the device is always the CPU)."""
        for arg in args:
            if isinstance(arg, (str, _device.device)) and str(arg).partition(":")[0] in ("cpu", "cuda", "mps"):
                device = arg
            else:
                dtype = arg.dtype if isinstance(arg, Tensor) else arg
        _device.check(device)
        if dtype is None:
            return self
        dtype = np.dtype(dtype)
        if dtype not in _FLOATS:
            raise FreenetError(f"to: modules can be cast to float32 or float64, not {dtype}")
        for t in list(self.parameters()) + list(self.buffers()):
            if t._data.dtype in _FLOATS and t._data.dtype != dtype:
                t._data = t._data.astype(dtype)
                if t.grad is not None:
                    t.grad._data = t.grad._data.astype(dtype)
        return self

    def cpu(self):
        return self

    def cuda(self, device=None):
        _device.device("cuda")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    # -- saving and loading ------------------------------------------------------------------------
    def _state_items(self, prefix=""):
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                yield prefix + name, b
        for name, module in self._modules.items():
            if module is not None:
                yield from module._state_items(prefix + name + ".")

    def state_dict(self, prefix="", keep_vars=False):
        """An ordered dict from dotted name to every parameter and persistent buffer, in registration order,
        as PyTorch names them (``0.weight``, ``fc.bias``): detached tensors on the same memory, as in PyTorch
        (training on changes them; ``copy.deepcopy`` the dict to keep a snapshot).

        ``keep_vars=True`` gives the Tensors themselves. A tensor shared by two modules appears under both names.
        """
        return OrderedDict((name, t if keep_vars else t.detach()) for name, t in self._state_items(prefix))

    def load_state_dict(self, state_dict, strict=True):
        """Copies ``state_dict`` values (ndarrays, Tensors, or anything with ``__array__``) into this
        module's existing parameter and buffer arrays.

        Shapes and dtypes must match exactly. With ``strict`` (the default), missing and unexpected
        keys are errors too; otherwise they are returned as ``IncompatibleKeys``. Every problem is
        listed in one ``FreenetError``, and nothing is copied unless there are none.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise FreenetError(f"load_state_dict: expected a dict of arrays, not {type(state_dict).__name__}")
        own = OrderedDict(self._state_items())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in own]
        problems, copies = [], []
        for name, target in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            if isinstance(value, Tensor):
                value = value._data
            elif not isinstance(value, (np.ndarray, np.generic)) and hasattr(value, "__array__"):
                value = np.asarray(value)
            if not isinstance(value, (np.ndarray, np.generic)):
                problems.append(f"'{name}': got a {type(value).__name__}, expected an ndarray or Tensor")
            elif value.shape != target._data.shape:
                problems.append(f"'{name}': shape {tuple(value.shape)} in the state dict, "
                                f"{tuple(target._data.shape)} in the model")
            elif value.dtype != target._data.dtype:
                problems.append(f"'{name}': dtype {value.dtype} in the state dict, {target._data.dtype} in the model")
            else:
                copies.append((target, value))
        if strict:
            if missing:
                problems.insert(0, "missing keys: " + ", ".join(f"'{k}'" for k in missing))
            if unexpected:
                problems.insert(1 if missing else 0, "unexpected keys: " + ", ".join(f"'{k}'" for k in unexpected))
        if problems:
            raise FreenetError(f"load_state_dict: {len(problems)} error(s) loading the state dict into "
                               f"{type(self).__name__}:\n  " + "\n  ".join(problems))
        for target, value in copies:
            np.copyto(target._data, value)
        return IncompatibleKeys(missing, unexpected)

    # -- printing ----------------------------------------------------------------------------------
    def extra_repr(self):
        """The text inside this module's parentheses in ``repr`` (its settings); empty by default."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + _addindent(repr(module), 2) for name, module in self._modules.items()]
        lines = extra_lines + child_lines
        text = type(self).__name__ + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                text += extra_lines[0]
            else:
                text += "\n  " + "\n  ".join(lines) + "\n"
        return text + ")"
