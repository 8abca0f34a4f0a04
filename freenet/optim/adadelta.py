"""Adadelta (Zeiler, 2012): steps scaled by the ratio of running RMS of updates and of gradients."""

import numpy as np

from freenet.errors import FreenetError
from freenet.optim.optimizer import Optimizer


class Adadelta(Optimizer):
    """PyTorch's Adadelta, step for step. With g the gradient (plus ``weight_decay * p``):

        v = rho * v + (1 - rho) * g * g
        d = sqrt(u + eps) / sqrt(v + eps) * g
        u = rho * u + (1 - rho) * d * d
        p = p - lr * d

    eps is added inside both square roots, as in PyTorch. State per parameter: "step" (an int),
    "square_avg" (v) and "acc_delta" (u), in the parameter's dtype.
    """

    _state_arrays = ("square_avg", "acc_delta")  # what load_state_dict accepts (Optimizer)
    _state_required = ("step", "square_avg", "acc_delta")

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize))

    def _check_group(self, group):
        for key in ("lr", "eps", "weight_decay"):
            if not group[key] >= 0:
                raise FreenetError(f"Adadelta: {key} must be >= 0, got {group[key]}")
        if not 0 <= group["rho"] <= 1:
            raise FreenetError(f"Adadelta: rho must be in [0, 1], got {group['rho']}")

    def step(self, closure=None):
        loss = self._evaluate(closure)
        for group in self.param_groups:
            lr, rho, eps = float(group["lr"]), float(group["rho"]), float(group["eps"])
            weight_decay, maximize = float(group["weight_decay"]), group["maximize"]
            for p, param, grad in self._grads(group):
                state = self.state.setdefault(p, {})
                if not state:
                    state["step"] = 0
                    state["square_avg"] = np.zeros_like(param)
                    state["acc_delta"] = np.zeros_like(param)
                state["step"] = int(state["step"]) + 1
                grad = self._regularised(grad, param, weight_decay, maximize)
                square_avg, acc_delta = state["square_avg"], state["acc_delta"]
                square_avg *= rho
                scratch = np.multiply(grad, 1 - rho)
                scratch *= grad
                square_avg += scratch
                std = np.add(square_avg, eps, out=scratch)
                np.sqrt(std, out=std)
                delta = np.add(acc_delta, eps)
                np.sqrt(delta, out=delta)
                delta /= std
                delta *= grad
                acc_delta *= rho
                np.multiply(delta, 1 - rho, out=scratch)
                scratch *= delta
                acc_delta += scratch
                delta *= lr
                param -= delta
        return loss
