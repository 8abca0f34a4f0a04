"""RMSprop (Hinton's lecture 6e), with PyTorch's momentum and centered variants."""

import numpy as np

from freenet.errors import FreenetError
from freenet.optim.optimizer import Optimizer


class RMSprop(Optimizer):
    """PyTorch's RMSprop, step for step. With g the gradient (plus ``weight_decay * p``):

        v = alpha * v + (1 - alpha) * g * g
        m = lerp(m, g, 1 - alpha)                      (centered only: the mean gradient)
        avg = sqrt(v - m * m) if centered else sqrt(v), then avg = avg + eps
        b = momentum * b + g / avg, p = p - lr * b     (momentum > 0; b starts at zero)
        p = p - lr * g / avg                           (momentum = 0)

    eps is added after the square root, as in PyTorch (Adadelta adds it before). State per
    parameter: "step" (an int), "square_avg", and "momentum_buffer" / "grad_avg" when used, in
    the parameter's dtype.
    """

    _state_arrays = ("square_avg", "momentum_buffer", "grad_avg")  # what load_state_dict accepts (Optimizer)
    _state_required = ("step", "square_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 maximize=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def _check_group(self, group):
        for key in ("lr", "alpha", "eps", "weight_decay", "momentum"):
            if not group[key] >= 0:
                raise FreenetError(f"RMSprop: {key} must be >= 0, got {group[key]}")

    def step(self, closure=None):
        loss = self._evaluate(closure)
        for group in self.param_groups:
            lr, alpha, eps = float(group["lr"]), float(group["alpha"]), float(group["eps"])
            weight_decay, momentum = float(group["weight_decay"]), float(group["momentum"])
            centered, maximize = group["centered"], group["maximize"]
            for p, param, grad in self._grads(group):
                state = self.state.setdefault(p, {})
                if not state:
                    state["step"] = 0
                    state["square_avg"] = np.zeros_like(param)
                if momentum > 0 and "momentum_buffer" not in state:
                    state["momentum_buffer"] = np.zeros_like(param)
                if centered and "grad_avg" not in state:
                    state["grad_avg"] = np.zeros_like(param)
                state["step"] = int(state["step"]) + 1
                grad = self._regularised(grad, param, weight_decay, maximize)
                square_avg = state["square_avg"]
                square_avg *= alpha
                scratch = np.multiply(grad, 1 - alpha)
                scratch *= grad
                square_avg += scratch
                if centered:
                    grad_avg = state["grad_avg"]
                    _lerp_(grad_avg, grad, 1 - alpha)
                    avg = np.multiply(grad_avg, grad_avg, out=scratch)
                    np.subtract(square_avg, avg, out=avg)
                    np.sqrt(avg, out=avg)
                else:
                    avg = np.sqrt(square_avg, out=scratch)
                avg += eps
                if momentum > 0:
                    buf = state["momentum_buffer"]
                    buf *= momentum
                    buf += np.divide(grad, avg, out=avg)
                    param -= np.multiply(buf, lr, out=avg)
                else:
                    update = np.multiply(grad, -lr)
                    update /= avg
                    param += update
        return loss


def _lerp_(start, end, weight):
    """start += weight * (end - start) in place, rounded as PyTorch's CPU lerp rounds it."""
    diff = np.subtract(end, start)
    if abs(weight) < 0.5:
        diff *= weight
        start += diff
    else:
        diff *= 1 - weight
        np.subtract(end, diff, out=start)
