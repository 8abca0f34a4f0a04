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

import numpy as np

from freenet.errors import FreenetError
from freenet.tensor import Tensor, enable_grad


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()  # the default of an option every group must set (SGD's lr)


class Optimizer:
    """Base class: subclasses pass their ``defaults`` and implement ``step``."""

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

        Groups must match this optimizer's in number and sizes; saved arrays must have their
        parameter's shape, and floating ones are cast to the parameter's dtype (except 'step').
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise FreenetError(f"{name}.load_state_dict: expected a dict with 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise FreenetError(f"{name}.load_state_dict: the state has {len(saved_groups)} parameter groups, "
                               f"the optimizer {len(self.param_groups)}")
        by_index = {}
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(group["params"]) != len(saved["params"]):
                raise FreenetError(f"{name}.load_state_dict: group {i} has {len(saved['params'])} parameters in the "
                                   f"state and {len(group['params'])} in the optimizer")
            for k, p in zip(saved["params"], group["params"]):
                by_index[int(k)] = p
        problems, state = [], {}
        for key, entries in state_dict["state"].items():
            try:
                p = by_index[int(key)]
            except (KeyError, ValueError):
                problems.append(f"state for parameter {key!r}, which no group lists")
                continue
            restored = {}
            for k, v in entries.items():
                if isinstance(v, Tensor):
                    v = v._data
                if isinstance(v, (np.ndarray, np.generic)) and k != "step":
                    if v.ndim and v.shape != p.shape:
                        problems.append(f"parameter {key} '{k}': shape {v.shape} in the state, {p.shape} in the "
                                        "parameter")
                        continue
                    v = np.array(v, dtype=p.dtype if v.dtype.kind == "f" else v.dtype, copy=True)
                else:
                    v = copy.deepcopy(v)
                restored[k] = v
            state[p] = restored
        if problems:
            raise FreenetError(f"{name}.load_state_dict: " + "; ".join(problems))
        groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            merged = dict(group)
            merged.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})
            if isinstance(merged.get("betas"), list):
                merged["betas"] = tuple(merged["betas"])
            groups.append(merged)
        self.param_groups = groups
        self.state = state
