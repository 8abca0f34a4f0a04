"""Optimizer: the base class holding parameter groups and per-parameter state.

Parameters come as an iterable of tensors, or as a list of dicts (groups) with per-group options
that override the optimizer's defaults, as in PyTorch:

>>> import freenet as fn
>>> a, b = fn.zeros(2, requires_grad=True), fn.zeros(3, requires_grad=True)
>>> opt = fn.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=0.1, momentum=0.9)
>>> [g["lr"] for g in opt.param_groups]
[0.1, 0.01]

``state_dict()`` is plain data: ``{"state": {index: {name: ndarray or number}}, "param_groups":
[{option: value, "params": [index, ...]}]}``, parameters numbered in group order as PyTorch does,
so the arrays can go to safetensors and the rest to JSON.
"""

import copy
import math
import numbers

import numpy as np

from freenet.errors import FreenetError
from freenet.tensor import Tensor, enable_grad
from freenet.validate import preview


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()  # the default of an option every group must set (SGD's lr)
_ABSENT = object()  # no current value to compare a saved one with


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def same_kind(value, current, where, finite=True):
    """``value``, from a saved state, if it is the same kind of value as ``current``, the one it replaces: a
    bool for a bool, a number for a number (finite, or with ``finite=False`` at least not NaN), a string for
    a string, a list of as many values of the same kinds for a list or tuple (returned as ``current``'s
    type), a dict with the same keys for a dict; where nothing (None) is current, None, a bool or a number.
    Otherwise a FreenetError naming ``where``. States come from files, and the code that uses them does
    arithmetic on whatever it finds."""
    number = _is_number(value) and (math.isfinite(value) if finite else not math.isnan(value))
    if isinstance(current, (bool, np.bool_)):
        ok = isinstance(value, (bool, np.bool_))
    elif _is_number(current):
        ok = number
    elif current is None or current is _ABSENT:  # an option not set, or one this optimizer lacks: a scalar
        ok = number or value is None or isinstance(value, (bool, np.bool_))
    elif isinstance(current, str):
        ok = isinstance(value, str)
    elif isinstance(current, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(current):
            raise FreenetError(f"{where}: must be a list of {len(current)}, not {preview(value)}")
        return type(current)(same_kind(v, c, f"{where}[{i}]", finite) for i, (v, c) in enumerate(zip(value, current)))
    elif isinstance(current, dict):
        if not isinstance(value, dict) or set(value) != set(current):
            raise FreenetError(f"{where}: must be a dict with the keys {sorted(map(str, current))}, "
                               f"not {preview(value)}")
        return {k: same_kind(value[k], c, f"{where}: {k}", finite) for k, c in current.items()}
    else:
        ok = type(value) is type(current)
    if not ok:
        wanted = ("true or false" if isinstance(current, (bool, np.bool_)) else "a string" if isinstance(current, str)
                  else "a number" if _is_number(current) else "null, true, false or a number"
                  if current is None or current is _ABSENT else type(current).__name__)
        raise FreenetError(f"{where}: must be {wanted}, not {preview(value)}")
    return copy.deepcopy(value)


def _index(key):
    """A parameter's index from a saved state (an int, or a decimal string from JSON), or None."""
    if isinstance(key, str) and key.isascii() and key.isdigit():
        return int(key)
    if isinstance(key, numbers.Integral) and not isinstance(key, (bool, np.bool_)) and key >= 0:
        return int(key)
    return None


# More steps than any run takes; Adam's beta ** step (correctly_rounded.pow_int) slows, then fails, far past it.
MAX_STEPS = 2**32


def _count_problem(value):
    """None if ``value`` is a step count (a whole number in [0, MAX_STEPS], maybe a one-element array); else
    what is wrong."""
    if isinstance(value, (np.ndarray, np.generic)):
        if value.size != 1 or value.dtype.kind not in "iuf":
            return f"must be a count, not an array of {value.dtype} and shape {value.shape}"
        value = value.item()
    if not _is_number(value) or not 0 <= value <= MAX_STEPS or value != int(value):
        return f"must be a whole number from 0 to {MAX_STEPS}, not {preview(value)}"
    return None


class Optimizer:
    """Base class: subclasses pass their ``defaults`` and implement ``step``.

    A subclass also says what its per-parameter state holds, for ``load_state_dict`` to check: the names of
    arrays of the parameter's shape (``_state_arrays``) and the names any non-empty state has
    (``_state_required``; "step" is a count). With ``_state_arrays`` None, a state may hold anything.
    """

    _state_arrays = None
    _state_required = ()

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}  # parameter -> dict of its state (Tensor hashes by identity)
        self.param_groups = []
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise FreenetError(f"{name}: params must be an iterable of Tensors or of dicts, not a single Tensor "
                               "(wrap it in a list)")
        if isinstance(params, (set, frozenset)):
            raise FreenetError(f"{name}: params must be an ordered iterable, not a set (its order changes between "
                               "runs, and state_dict refers to parameters by position)")
        groups = list(params)
        if not groups:
            raise FreenetError(f"{name}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        return "\n".join(lines) + "\n)"

    def add_param_group(self, group):
        """Adds a group: a dict with "params" (a tensor or an iterable of them) and optional options."""
        name = type(self).__name__
        if not isinstance(group, dict):
            raise FreenetError(f"{name}: a parameter group must be a dict, not {type(group).__name__}")
        if "params" not in group:
            raise FreenetError(f"{name}: a parameter group needs a 'params' entry")
        group = dict(group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise FreenetError(f"{name}: a group's params must be ordered, not a set")
        params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise FreenetError(f"{name}: can only optimize Tensors, got a {type(p).__name__}"
                                   + (" (pass model.parameters(), not named_parameters())"
                                      if isinstance(p, tuple) else ""))
            if not p.is_leaf:
                raise FreenetError(f"{name}: can't optimize a non-leaf tensor (shape {p.shape})")
            if p.dtype.kind != "f":
                raise FreenetError(f"{name}: can only optimize float tensors, not {p.dtype}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids) or seen & set(ids):
            raise FreenetError(f"{name}: some parameters appear more than once (in one group or across groups)")
        group["params"] = params
        for key, default in self.defaults.items():
            if default is required and key not in group:
                raise FreenetError(f"{name}: parameter group didn't specify a value of required option '{key}'")
            group.setdefault(key, default)
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group):
        """Validates a group's options; subclasses raise FreenetError on bad values."""

    def zero_grad(self, set_to_none=True):
        """Drops the gradient of every parameter (or fills it with zeros if ``set_to_none`` is false)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad._data[...] = 0

    def step(self, closure=None):
        raise NotImplementedError

    @staticmethod
    def _evaluate(closure):
        """The loss from ``closure()`` (run with grad enabled), or None."""
        if closure is None:
            return None
        with enable_grad():
            return closure()

    def _grads(self, group):
        """(parameter, its array, its gradient array) for the group's parameters that have a gradient."""
        for p in group["params"]:
            if p.grad is not None:
                yield p, p._data, p.grad._data

    @staticmethod
    def _regularised(grad, param, weight_decay, maximize):
        """The gradient as torch.optim's RMSprop, Adadelta and Adam first make it: negated for
        ``maximize``, plus ``weight_decay * param`` (a new array when either applies)."""
        if maximize:
            grad = np.negative(grad)
        if weight_decay != 0:
            grad = grad + weight_decay * param
        return grad

    # -- saving and loading ------------------------------------------------------------------------
    def state_dict(self):
        """The optimizer's state as plain data (copies): see the module docstring for the layout."""
        index, groups, start = {}, [], 0
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = list(range(start, start + len(group["params"])))
            for i, p in enumerate(group["params"]):
                index[id(p)] = start + i
            start += len(group["params"])
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: (v.copy() if isinstance(v, np.ndarray) else copy.deepcopy(v))
                                           for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restores options and state saved by ``state_dict`` (keys may be ints or, from JSON, strings).

        A state may come from a damaged or hostile file, so all of it is checked before any of it is used:
        groups must match this optimizer's in number and sizes, each option must be of the kind of the one
        it replaces and pass the optimizer's own checks; saved arrays must have their parameter's shape
        (floating ones are cast to the parameter's dtype), "step" must be a count, and an optimizer that
        says what its state holds gets nothing else. Anything wrong is a FreenetError, and nothing changes.
        """
        who = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise FreenetError(f"{who}: expected a dict with 'state' and 'param_groups'")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not all(isinstance(g, dict) for g in saved_groups):
            raise FreenetError(f"{who}: 'param_groups' must be a list of dicts, not {preview(saved_groups)}")
        if not isinstance(saved_state, dict):
            raise FreenetError(f"{who}: 'state' must be a dict of parameter index -> state, not "
                               f"{preview(saved_state)}")
        if len(saved_groups) != len(self.param_groups):
            raise FreenetError(f"{who}: the state has {len(saved_groups)} parameter groups, "
                               f"the optimizer {len(self.param_groups)}")
        by_index = {}
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            indices = saved.get("params")
            if not isinstance(indices, (list, tuple)):
                raise FreenetError(f"{who}: group {i} has no list of 'params' (parameter indices)")
            if len(group["params"]) != len(indices):
                raise FreenetError(f"{who}: group {i} has {len(indices)} parameters in the "
                                   f"state and {len(group['params'])} in the optimizer")
            for k, p in zip(indices, group["params"]):
                index = _index(k)
                if index is None or index in by_index:
                    raise FreenetError(f"{who}: group {i} lists parameter {preview(k)}, "
                                       + ("which is not an index" if index is None else "twice"))
                by_index[index] = p
        state = self._restored_state(saved_state, by_index, who)
        groups = [self._restored_group(group, saved, f"{who}: group {i}")
                  for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups))]
        self.param_groups = groups
        self.state = state

    def _restored_group(self, group, saved, where):
        """``group`` with the options of ``saved``, each checked against the one it replaces."""
        merged = dict(group)
        for key, value in saved.items():
            if key != "params":
                merged[key] = same_kind(value, group.get(key, _ABSENT), f"{where}: {key!r}")
        self._check_group(merged)
        return merged

    def _restored_state(self, saved_state, by_index, who):
        """The per-parameter state of ``saved_state`` (parameter index -> {name: value}), checked and copied."""
        declared = self._state_arrays is not None
        known = set(self._state_arrays or ()) | set(self._state_required)
        problems, state = [], {}
        for key, entries in saved_state.items():
            p = by_index.get(_index(key))
            if p is None:
                problems.append(f"state for parameter {key!r}, which no group lists")
                continue
            if p in state:
                problems.append(f"two states for parameter {key!r}")
                continue
            if not isinstance(entries, dict):
                problems.append(f"parameter {key}: its state must be a dict, not {preview(entries)}")
                continue
            restored = {}
            for k, v in entries.items():
                if isinstance(v, Tensor):
                    v = v._data
                problem = None
                if k == "step" and (not declared or k in known):
                    problem = _count_problem(v)
                    v = int(np.asarray(v).item()) if problem is None else v
                elif declared and k not in known:
                    problem = f"not part of {type(self).__name__}'s state"
                elif declared and v is None and k not in self._state_required:
                    continue  # as if absent: the step makes it (PyTorch saves SGD's unused buffer as None)
                elif isinstance(v, (np.ndarray, np.generic)):
                    if (declared or v.ndim) and v.shape != p.shape:
                        problem = f"shape {v.shape} in the state, {p.shape} in the parameter"
                    elif declared and v.dtype.kind != "f":
                        problem = f"must be a float array, not {v.dtype}"
                    else:
                        v = np.array(v, dtype=p.dtype if v.dtype.kind == "f" else v.dtype, copy=True)
                elif declared:
                    problem = f"must be an array of shape {p.shape}, not {preview(v)}"
                else:
                    v = copy.deepcopy(v)
                if problem:
                    problems.append(f"parameter {key} '{k}': {problem}")
                else:
                    restored[k] = v
            lacking = [k for k in self._state_required if k not in restored]
            if restored and lacking:
                problems.append(f"parameter {key}: its state lacks {', '.join(lacking)}")
            state[p] = restored
        if problems:
            raise FreenetError(f"{who}: " + "; ".join(problems))
        return state
