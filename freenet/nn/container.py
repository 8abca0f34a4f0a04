"""Containers of modules: Sequential (chains them in forward), ModuleList and ModuleDict (just hold them)."""

import operator
from collections import OrderedDict
from collections.abc import Mapping

from freenet.errors import FreenetError
from freenet.nn.conv import MaxPool2d
from freenet.nn.layers import ReLU
from freenet.nn.module import Module
from freenet.nn.norm import _BatchNorm

__all__ = ["Sequential", "ModuleList", "ModuleDict"]


def _index(container, idx):
    """``idx`` as a non-negative position in ``container``, with Python's negative indexing."""
    try:
        i = operator.index(idx)
    except TypeError:
        raise FreenetError(f"{type(container).__name__} indices must be ints or slices, "
                           f"not {type(idx).__name__}") from None
    n = len(container)
    if not -n <= i < n:
        raise IndexError(f"index {i} is out of range for {type(container).__name__} of length {n}")
    return i % n


class _Indexed(Module):
    """Shared list behaviour over ``_modules``, whose keys are '0', '1', ... (or user names in Sequential)."""

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def _key(self, idx):
        return list(self._modules)[_index(self, idx)]

    def __setitem__(self, idx, module):
        self.add_module(self._key(idx), module)

    def __delitem__(self, idx):
        if isinstance(idx, slice):
            keys = list(self._modules)[idx]
        else:
            keys = [self._key(idx)]
        for key in keys:
            del self._modules[key]
        self._renumber()

    def _renumber(self):
        if all(k.isdigit() for k in self._modules):
            modules = list(self._modules.values())
            self._modules.clear()
            for i, m in enumerate(modules):
                self._modules[str(i)] = m

    def append(self, module):
        """Adds ``module`` at the end; returns self."""
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        if isinstance(modules, Module) and not isinstance(modules, _Indexed):
            raise FreenetError(f"{type(self).__name__}.extend: expected an iterable of modules, not a "
                               f"{type(modules).__name__}")
        for m in list(modules):
            self.append(m)
        return self

    def insert(self, index, module):
        n = len(self)
        index = max(0, min(n, index + n if index < 0 else index))
        if not isinstance(module, Module):
            raise FreenetError(f"{type(self).__name__}.insert: expected a Module, not {type(module).__name__}")
        modules = list(self._modules.values())
        modules.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(modules):
            self.add_module(str(i), m)

    def __dir__(self):
        return [k for k in super().__dir__() if not k.isdigit()]


class Sequential(_Indexed):
    """Modules called one after another: ``Sequential(a, b, c)(x) == c(b(a(x)))``.

    Children are named '0', '1', ..., or by the keys of an (ordered) dict passed as the only argument.
    Indexing gives a module, slicing a new Sequential holding the same modules.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            for name, module in modules[0].items():
                self._add(name, module)
        else:
            for i, module in enumerate(modules):
                self._add(str(i), module)

    def _add(self, name, module):
        if not isinstance(module, Module):
            raise FreenetError(f"Sequential: item {name!r} is a {type(module).__name__}, not a Module")
        self.add_module(name, module)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        return self._modules[self._key(idx)]

    def append(self, module):
        if not isinstance(module, Module):
            raise FreenetError(f"Sequential.append: expected a Module, not {type(module).__name__}")
        return super().append(module)

    def forward(self, input):
        modules = list(self._modules.values())
        i = 0
        while i < len(modules):
            module, after = modules[i], type(modules[i + 1]) if i + 1 < len(modules) else None
            if after is ReLU and module.training and isinstance(module, _BatchNorm):
                input = module(input, relu=True)  # one fused pass instead of two
                i += 2
            elif type(module) is ReLU and after is MaxPool2d:
                # max and ReLU commute (to the bit, gradients too): the ReLU on the pooled output
                # touches a quarter of the values (2x2 pooling)
                input = module(modules[i + 1](input))
                i += 2
            else:
                input = module(input)
                i += 1
        return input


class ModuleList(_Indexed):
    """A list of modules whose parameters the owner sees; it has no forward of its own."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return ModuleList(list(self._modules.values())[idx])
        return self._modules[self._key(idx)]

    def append(self, module):
        if not isinstance(module, Module):
            raise FreenetError(f"ModuleList.append: expected a Module, not {type(module).__name__}")
        return super().append(module)

    def __iadd__(self, modules):
        return self.extend(modules)

    def __add__(self, other):
        return ModuleList(list(self) + list(other))

    def forward(self, *args, **kwargs):
        raise FreenetError("ModuleList has no forward(); iterate over it and call its modules")


class ModuleDict(Module):
    """An ordered dict of modules by string key, whose parameters the owner sees (named ``key.weight``);
    it has no forward of its own. Keys keep insertion order; ``update`` takes a mapping or (key, module)
    pairs.

    >>> import freenet as fn
    >>> heads = fn.nn.ModuleDict({"policy": fn.nn.Linear(4, 2), "value": fn.nn.Linear(4, 1)})
    >>> list(heads.keys()), heads["value"].out_features
    (['policy', 'value'], 1)
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        if not isinstance(module, Module):
            raise FreenetError(f"ModuleDict: item {key!r} is a {type(module).__name__}, not a Module")
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def clear(self):
        self._modules.clear()

    def pop(self, key):
        """Removes ``key`` and returns its module."""
        module = self[key]
        del self[key]
        return module

    def keys(self):
        return self._modules.keys()

    def items(self):
        return self._modules.items()

    def values(self):
        return self._modules.values()

    def update(self, modules):
        """Adds (or replaces) the modules of a mapping, a ModuleDict, or an iterable of (key, module) pairs."""
        if isinstance(modules, (Mapping, ModuleDict)):
            pairs = list(modules.items())
        elif isinstance(modules, Module):
            raise FreenetError(f"ModuleDict.update: expected a mapping or (key, module) pairs, not a "
                               f"{type(modules).__name__}")
        else:
            pairs = []
            for j, pair in enumerate(modules):
                if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                    raise FreenetError(f"ModuleDict.update: element {j} of the iterable is not a (key, module) pair")
                pairs.append(tuple(pair))
        for key, module in pairs:
            self[key] = module

    def forward(self, *args, **kwargs):
        raise FreenetError("ModuleDict has no forward(); look its modules up by key and call them")
