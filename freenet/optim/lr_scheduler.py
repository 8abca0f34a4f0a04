"""Learning-rate schedules that set ``group["lr"]`` on an optimizer, with PyTorch's sequences.

Call ``scheduler.step()`` after ``optimizer.step()`` (``ReduceLROnPlateau``: ``step(metric)``, after
validation). Creating a scheduler counts as its first step (epoch 0), as in PyTorch. StepLR,
MultiStepLR, ExponentialLR and CosineAnnealingLR update the current lr recursively (so they compose
with other changes to it), exactly as PyTorch computes them. Cosines and powers
are correctly rounded (``kernels.correctly_rounded``), so the lrs are the same bits on every machine:

>>> import freenet as fn
>>> opt = fn.optim.SGD([fn.zeros(1, requires_grad=True)], lr=1.0)
>>> sched = fn.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
>>> lrs = []
>>> for _ in range(5):
...     lrs.append(sched.get_last_lr()[0]); opt.step(); sched.step()
>>> lrs
[1.0, 1.0, 0.5, 0.5, 0.25]
"""

import copy
import math
import numbers
import types
from collections.abc import Mapping

import numpy as np

from freenet.errors import FreenetError
from freenet.kernels.correctly_rounded import cos, pow_int
from freenet.optim.optimizer import Optimizer, same_kind
from freenet.validate import preview

__all__ = ["LRScheduler", "LambdaLR", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "OneCycleLR",
           "ReduceLROnPlateau"]


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


class LRScheduler:
    """Base class: subclasses compute the next lrs in ``get_lr`` from ``last_epoch`` (already advanced).

    ``load_state_dict`` checks a saved state against the scheduler's own (``_checked``): subclasses name
    their counters (``_counts``, ints >= 0) and check their other values in ``_check_values``.
    """

    _counts = ("last_epoch", "_step_count")
    _optional = ("_is_initial",)  # newer than the first checkpoints; False once a scheduler is built

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise FreenetError(f"{type(self).__name__}: {type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise FreenetError(f"{type(self).__name__}: param_groups[{i}] has no 'initial_lr', needed to "
                                       f"resume at last_epoch={last_epoch} (load the optimizer's state first)")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._is_initial = True
        self.step()
        self._is_initial = False

    def get_lr(self):
        raise NotImplementedError

    def get_last_lr(self):
        """The lrs the last ``step`` set, one per parameter group."""
        return list(self._last_lr)

    def step(self):
        self._step_count += 1
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        """Everything but the optimizer, as plain numbers, strings and lists (JSON-ready)."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        """Restores a state saved by ``state_dict``, checked first (see ``_checked``): a damaged one is a
        FreenetError here, and the scheduler is left as it was, rather than failing steps later."""
        self.__dict__.update(self._checked(state_dict))

    def _checked(self, state_dict, skip=()):
        """``state_dict`` (less the keys in ``skip``) checked against this scheduler's own state: the same
        keys (only those in ``_optional`` may be missing), each value of the kind of the one it replaces
        (``same_kind``: lists as long, dicts with the same keys), counters ints >= 0, then ``_check_values``."""
        who = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise FreenetError(f"{who}: expected a dict, not {preview(state_dict)}")
        current = {k: v for k, v in self.state_dict().items() if k not in skip}
        saved = {k: v for k, v in state_dict.items() if k not in skip}
        unknown = sorted(map(str, set(saved) - set(current)))
        missing = sorted(set(current) - set(saved) - set(self._optional))
        if unknown or missing:
            raise FreenetError(f"{who}: " + "; ".join(
                ([f"unknown entries {', '.join(unknown)}"] if unknown else [])
                + ([f"missing entries {', '.join(missing)}"] if missing else [])))
        checked = {k: same_kind(v, current[k], f"{who}: {k}", finite=False) for k, v in saved.items()}
        for key in self._counts:
            if key in checked and not (_is_int(checked[key]) and checked[key] >= 0):
                raise FreenetError(f"{who}: {key} must be an int >= 0, not {preview(checked[key])}")
        self._check_values(checked, who)
        return checked

    def _check_values(self, state, who):
        """Subclasses: a FreenetError for values of the right kind that the schedule still cannot use."""


def _check_positive(state, key, who, integer=False):
    value = state.get(key)
    if value is not None and not (value > 0 and math.isfinite(value) and (not integer or _is_int(value))):
        raise FreenetError(f"{who}: {key} must be a positive {'int' if integer else 'number'}, not {preview(value)}")


def _current(optimizer):
    return [group["lr"] for group in optimizer.param_groups]


class LambdaLR(LRScheduler):
    """lr_t = base_lr * lr_lambda(t): one function for every group, or a list of one per group.

    ``state_dict`` leaves plain functions and lambdas out (they are code, not data); of a callable
    object it keeps the attributes (its ``__dict__``), which ``load_state_dict`` puts back, as in PyTorch.
    """

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise FreenetError(f"LambdaLR: {type(optimizer).__name__} is not an Optimizer")
        count = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != count:
                raise FreenetError(f"LambdaLR: expected {count} lr_lambdas (one per parameter group), "
                                   f"got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * count
        for f in self.lr_lambdas:
            if not callable(f):
                raise FreenetError(f"LambdaLR: lr_lambda must be callable, got {type(f).__name__}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base_lr * lr_lambda(self.last_epoch) for lr_lambda, base_lr in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self):
        state = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = [None if isinstance(f, types.FunctionType) or not hasattr(f, "__dict__")
                               else copy.deepcopy(f.__dict__) for f in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict):
        state = self._checked(state_dict, skip=("lr_lambdas",))
        saved = state_dict.get("lr_lambdas") or [None] * len(self.lr_lambdas)
        if not isinstance(saved, (list, tuple)) or len(saved) != len(self.lr_lambdas):
            raise FreenetError(f"LambdaLR.load_state_dict: the state has {preview(saved)} as lr_lambdas, for "
                               f"the scheduler's {len(self.lr_lambdas)}")
        current = self.state_dict()["lr_lambdas"]  # the attributes of callable objects, None for functions
        attributes = [None if a is None else same_kind(a, c if c is not None else {}, f"LambdaLR.load_state_dict: "
                                                       f"lr_lambdas[{i}]", finite=False)
                      for i, (a, c) in enumerate(zip(saved, current))]
        self.__dict__.update(state)
        for f, a in zip(self.lr_lambdas, attributes):
            if a is not None:
                f.__dict__.update(a)


class StepLR(LRScheduler):
    """Multiplies the lr by ``gamma`` every ``step_size`` steps: lr_t = base_lr * gamma ** (t // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        if not isinstance(step_size, int) or step_size <= 0:
            raise FreenetError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def _check_values(self, state, who):
        _check_positive(state, "step_size", who, integer=True)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return _current(self.optimizer)
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        return [base_lr * pow_int(self.gamma, self.last_epoch // self.step_size) for base_lr in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiplies the lr by ``gamma`` at each milestone epoch (by gamma ** n at one listed n times):
    lr_t = base_lr * gamma ** (number of milestones <= t)."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        milestones = list(milestones)
        if not all(isinstance(m, (int, np.integer)) and not isinstance(m, bool) for m in milestones):
            raise FreenetError(f"MultiStepLR: milestones must be ints, got {milestones!r}")
        self.milestones = sorted(int(m) for m in milestones)  # a list, not PyTorch's Counter: JSON keeps it
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def load_state_dict(self, state_dict):
        state = self._checked(state_dict, skip=("milestones",))  # a saved schedule may have other milestones
        milestones = state_dict.get("milestones", self.milestones)
        if not isinstance(milestones, (list, tuple)) or not all(_is_int(m) for m in milestones):
            raise FreenetError(f"MultiStepLR.load_state_dict: milestones must be a list of ints, not "
                               f"{preview(milestones)}")
        self.__dict__.update(state, milestones=sorted(int(m) for m in milestones))

    def get_lr(self):
        hits = self.milestones.count(self.last_epoch)
        if hits == 0:
            return _current(self.optimizer)
        factor = pow_int(self.gamma, hits)
        return [group["lr"] * factor for group in self.optimizer.param_groups]


class ExponentialLR(LRScheduler):
    """Multiplies the lr by ``gamma`` every step: lr_t = base_lr * gamma ** t, computed recursively."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:  # also when resuming at last_epoch > 0: the lr is already the saved one
            return _current(self.optimizer)
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class CosineAnnealingLR(LRScheduler):
    """lr_t = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2, computed recursively as
    PyTorch does; past T_max the cosine continues (rising again), without restarts."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        if not T_max > 0:
            raise FreenetError(f"CosineAnnealingLR: T_max must be positive, got {T_max!r}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def _check_values(self, state, who):
        _check_positive(state, "T_max", who)
        if not math.isfinite(state.get("eta_min", 0.0)):
            raise FreenetError(f"{who}: eta_min must be finite, not {state['eta_min']}")

    def get_lr(self):
        t, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        groups = self.optimizer.param_groups
        if self._is_initial:
            return _current(self.optimizer)
        if self._step_count == 1 and t > 0:  # resumed at last_epoch > 0: use the closed form once
            return self._get_closed_form_lr()
        if (t - 1 - T) % (2 * T) == 0:
            return [group["lr"] + (base_lr - eta_min) * (1 - cos(math.pi / T)) / 2
                    for base_lr, group in zip(self.base_lrs, groups)]
        return [(1 + cos(math.pi * t / T)) / (1 + cos(math.pi * (t - 1) / T)) * (group["lr"] - eta_min)
                + eta_min for group in groups]

    def _get_closed_form_lr(self):
        return [self.eta_min + (base_lr - self.eta_min) * (1 + cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base_lr in self.base_lrs]


def _per_group(name, optimizer, value):
    groups = optimizer.param_groups
    if isinstance(value, (list, tuple)):
        if len(value) != len(groups):
            raise FreenetError(f"OneCycleLR: {name} has {len(value)} values for {len(groups)} parameter groups")
        return list(value)
    return [value] * len(groups)


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith and Topin), as PyTorch's OneCycleLR: the lr goes from max_lr / div_factor
    up to max_lr over the first ``pct_start`` of ``total_steps``, then anneals down to
    initial_lr / final_div_factor (cosine or linear). With ``cycle_momentum`` (the default, needs an
    optimizer with momentum or betas), momentum (SGD) or beta1 (Adam) moves inversely between
    ``max_momentum`` and ``base_momentum``. ``three_phase`` uses the paper's symmetric schedule.

    Step it once per batch; stepping more than ``total_steps`` times is an error.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                 div_factor=25.0, final_div_factor=1e4, three_phase=False, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise FreenetError(f"OneCycleLR: {type(optimizer).__name__} is not an Optimizer")
        if total_steps is not None:
            if not isinstance(total_steps, int) or total_steps <= 0:
                raise FreenetError(f"OneCycleLR: total_steps must be a positive int, got {total_steps!r}")
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            for name, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
                if not isinstance(v, int) or v <= 0:
                    raise FreenetError(f"OneCycleLR: {name} must be a positive int, got {v!r}")
            self.total_steps = epochs * steps_per_epoch
        else:
            raise FreenetError("OneCycleLR: give total_steps, or epochs and steps_per_epoch")
        if not isinstance(pct_start, (int, float)) or not 0 <= pct_start <= 1:
            raise FreenetError(f"OneCycleLR: pct_start must be a number in [0, 1], got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise FreenetError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', not {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        up = float(pct_start * self.total_steps) - 1
        if three_phase:
            self._schedule_phases = [
                dict(end_step=up, start_lr="initial_lr", end_lr="max_lr",
                     start_momentum="max_momentum", end_momentum="base_momentum"),
                dict(end_step=float(2 * pct_start * self.total_steps) - 2, start_lr="max_lr", end_lr="initial_lr",
                     start_momentum="base_momentum", end_momentum="max_momentum"),
                dict(end_step=self.total_steps - 1, start_lr="initial_lr", end_lr="min_lr",
                     start_momentum="max_momentum", end_momentum="max_momentum"),
            ]
        else:
            self._schedule_phases = [
                dict(end_step=up, start_lr="initial_lr", end_lr="max_lr",
                     start_momentum="max_momentum", end_momentum="base_momentum"),
                dict(end_step=self.total_steps - 1, start_lr="max_lr", end_lr="min_lr",
                     start_momentum="base_momentum", end_momentum="max_momentum"),
            ]
        max_lrs = _per_group("max_lr", optimizer, max_lr)
        if last_epoch == -1:
            for lr, group in zip(max_lrs, optimizer.param_groups):
                group["initial_lr"] = lr / div_factor
                group["max_lr"] = lr
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise FreenetError("OneCycleLR: cycle_momentum needs an optimizer with momentum or betas "
                                   "(pass cycle_momentum=False)")
            self.use_beta1 = "betas" in optimizer.defaults
            max_momenta = _per_group("max_momentum", optimizer, max_momentum)
            base_momenta = _per_group("base_momentum", optimizer, base_momentum)
            if last_epoch == -1:
                for top, bottom, group in zip(max_momenta, base_momenta, optimizer.param_groups):
                    self._set_momentum(group, top)
                    group["max_momentum"], group["base_momentum"] = top, bottom
        super().__init__(optimizer, last_epoch)

    _PHASE_KEYS = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")  # group keys phases name

    def _check_values(self, state, who):
        _check_positive(state, "total_steps", who, integer=True)
        if state.get("anneal_strategy", "cos") not in ("cos", "linear"):
            raise FreenetError(f"{who}: anneal_strategy must be 'cos' or 'linear', not {state['anneal_strategy']!r}")
        for key in ("cycle_momentum", "use_beta1"):  # these follow from the optimizer, which is this one
            if key in state and state[key] != getattr(self, key):
                raise FreenetError(f"{who}: {key} is {state[key]} in the state but {getattr(self, key)} here")
        ends = []
        for phase in state.get("_schedule_phases", ()):
            for key, value in phase.items():
                if key != "end_step" and value not in self._PHASE_KEYS:
                    raise FreenetError(f"{who}: a phase's {key} names {value!r}, not one of {self._PHASE_KEYS}")
            ends.append(phase["end_step"])
        # get_lr divides by the length of the phase a step falls in (the first starts at 0): none may be empty.
        if not all(math.isfinite(e) for e in ends) or any(b == a for a, b in zip([0] + ends, ends)):
            raise FreenetError(f"{who}: the phases end at steps {ends}: one of them is empty or endless")

    def _set_momentum(self, group, value):
        if self.use_beta1:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise FreenetError(f"OneCycleLR: tried to step {step} times; total_steps is {self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end = phase["end_step"]
                if step <= end or i == len(self._schedule_phases) - 1:
                    pct = (step - start) / (end - start)
                    lrs.append(self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct))
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(group[phase["start_momentum"]],
                                                               group[phase["end_momentum"]], pct))
                    break
                start = end
        return lrs


class ReduceLROnPlateau(LRScheduler):
    """Divides the lr when a metric stops improving, as PyTorch's ReduceLROnPlateau: call ``step(metric)``
    after each validation.

    A metric is an improvement on the best so far when it is below best * (1 - threshold) (mode
    "min", threshold_mode "rel") or best - threshold ("abs"); in mode "max", above best * (1 +
    threshold) or best + threshold. After more than ``patience`` epochs in a row without one, each
    group's lr becomes max(lr * factor, min_lr), unless that lowers it by ``eps`` or less; then
    ``cooldown`` epochs pass in which epochs without improvement are not counted.
    """

    _counts = ("num_bad_epochs",)  # (it has no _step_count, and any epoch may be passed to step)

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0.0, eps=1e-8):
        if not isinstance(optimizer, Optimizer):
            raise FreenetError(f"ReduceLROnPlateau: {type(optimizer).__name__} is not an Optimizer")
        if not factor < 1.0:
            raise FreenetError(f"ReduceLROnPlateau: factor must be < 1, got {factor!r}")
        self.optimizer = optimizer
        self.factor = factor
        count = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != count:
                raise FreenetError(f"ReduceLROnPlateau: expected {count} min_lrs (one per parameter group), "
                                   f"got {len(min_lr)}")
            self.default_min_lr, self.min_lrs = None, list(min_lr)
        else:
            self.default_min_lr, self.min_lrs = min_lr, [min_lr] * count
        self.patience, self.cooldown, self.eps = patience, cooldown, eps
        self.last_epoch = 0
        self._last_lr = _current(optimizer)
        self._init_is_better(mode, threshold, threshold_mode)
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def _init_is_better(self, mode, threshold, threshold_mode):
        if mode not in ("min", "max"):
            raise FreenetError(f"ReduceLROnPlateau: mode must be 'min' or 'max', not {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise FreenetError(f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', not {threshold_mode!r}")
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def _is_better(self, a, best):
        if self.mode == "min":
            return a < best * (1.0 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (self.threshold + 1.0) if self.threshold_mode == "rel" else a > best + self.threshold

    def step(self, metrics, epoch=None):
        """Records one epoch's metric (a number or a one-element tensor) and lowers the lrs if it is time."""
        try:
            current = float(metrics)
        except (TypeError, ValueError) as e:
            raise FreenetError(f"ReduceLROnPlateau.step: the metric must be a number, got {type(metrics).__name__} "
                               f"({e})") from None
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = _current(self.optimizer)

    def _reduce_lr(self):
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise FreenetError(f"ReduceLROnPlateau: the optimizer has {len(groups)} parameter groups, "
                                   f"min_lr gives {len(self.min_lrs)} (set min_lrs to match)")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                group["lr"] = new

    def _check_values(self, state, who):
        if state.get("mode", "min") not in ("min", "max") or state.get("threshold_mode", "rel") not in ("rel", "abs"):
            raise FreenetError(f"{who}: mode must be 'min' or 'max' and threshold_mode 'rel' or 'abs', not "
                               f"{state.get('mode')!r} and {state.get('threshold_mode')!r}")
        if not state.get("factor", 0.0) < 1.0:
            raise FreenetError(f"{who}: factor must be < 1, not {state['factor']}")

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._init_is_better(self.mode, self.threshold, self.threshold_mode)
