"""Adam and AdamW (Adam with decoupled weight decay)."""

import math

import numpy as np

from freenet.errors import FreenetError
from freenet.kernels import correctly_rounded
from freenet.optim.optimizer import Optimizer


class Adam(Optimizer):
    """PyTorch's Adam, step for step. At step t, with g the gradient (plus ``weight_decay * p``):

        m = m + (1 - beta1) * (g - m)
        v = beta2 * v + (1 - beta2) * g * g            (v_max = max(v_max, v) with amsgrad)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    State per parameter: "step" (an int), "exp_avg", "exp_avg_sq" (and "max_exp_avg_sq"), in the
    parameter's dtype. Updates work in place with one scratch array per parameter. beta^t is
    correctly rounded (not the libm's pow, whose last bit varies between machines).
    """

    _state_arrays = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")  # what load_state_dict accepts (Optimizer)
    _state_required = ("step", "exp_avg", "exp_avg_sq")

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _check_group(self, group):
        name = type(self).__name__
        for key in ("lr", "eps", "weight_decay"):
            if not group[key] >= 0:
                raise FreenetError(f"{name}: {key} must be >= 0, got {group[key]}")
        betas = group["betas"]
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise FreenetError(f"{name}: betas must be two numbers in [0, 1), got {betas}")
        group["betas"] = tuple(betas)

    def step(self, closure=None):
        loss = self._evaluate(closure)
        for group in self.param_groups:
            lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
            beta1, beta2 = (float(b) for b in group["betas"])
            amsgrad, maximize = group["amsgrad"], group["maximize"]
            for p, param, grad in self._grads(group):
                state = self.state.setdefault(p, {})
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = np.zeros_like(param)
                    state["exp_avg_sq"] = np.zeros_like(param)
                if amsgrad and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = np.zeros_like(param)
                state["step"] = t = int(state["step"]) + 1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                if maximize:
                    grad = np.negative(grad)
                if weight_decay != 0:
                    if self._decoupled:
                        param *= 1 - lr * weight_decay
                    else:
                        grad = grad + weight_decay * param
                scratch = np.subtract(grad, m)
                scratch *= 1 - beta1
                m += scratch
                v *= beta2
                np.multiply(grad, grad, out=scratch)
                scratch *= 1 - beta2
                v += scratch
                if amsgrad:
                    np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
                    v = state["max_exp_avg_sq"]
                step_size = lr / (1 - correctly_rounded.pow_int(beta1, t))
                bias_correction2_sqrt = math.sqrt(1 - correctly_rounded.pow_int(beta2, t))
                denom = np.sqrt(v, out=scratch)
                denom /= bias_correction2_sqrt
                denom += eps
                update = np.divide(m, denom, out=scratch)
                update *= step_size
                param -= update
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter): before the Adam step,
    p = p * (1 - lr * weight_decay); the gradient itself is not changed."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize)
