"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay."""

import numpy as np

from freenet.errors import FreenetError
from freenet.optim.optimizer import Optimizer, required


class SGD(Optimizer):
    """PyTorch's SGD, step for step. With g the gradient (plus ``weight_decay * p``):

        b = g on the first step, else momentum * b + (1 - dampening) * g
        d = g + momentum * b if nesterov else b        (d = g when momentum is 0)
        p = p - lr * d

    State per parameter: "momentum_buffer" (only when momentum is not 0).
    """

    _state_arrays = ("momentum_buffer",)  # what load_state_dict accepts (Optimizer)
    _state_required = ()

    def __init__(self, params, lr=required, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _check_group(self, group):
        for key in ("lr", "momentum", "weight_decay"):
            if not group[key] >= 0:
                raise FreenetError(f"SGD: {key} must be >= 0, got {group[key]}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise FreenetError("SGD: nesterov momentum needs momentum > 0 and dampening = 0")

    def step(self, closure=None):
        loss = self._evaluate(closure)
        for group in self.param_groups:
            lr, momentum, dampening = float(group["lr"]), float(group["momentum"]), float(group["dampening"])
            weight_decay, nesterov, maximize = float(group["weight_decay"]), group["nesterov"], group["maximize"]
            for p, param, grad in self._grads(group):
                d, owned = grad, False  # owned: d is a scratch array this step may overwrite
                if maximize:
                    d, owned = np.negative(grad), True
                if weight_decay != 0:
                    decay = np.multiply(param, weight_decay)
                    d, owned = np.add(d, decay, out=decay), True
                if momentum != 0:
                    state = self.state.setdefault(p, {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = np.array(d, copy=True)
                    else:
                        buf *= momentum
                        if dampening == 0:
                            buf += d
                        else:
                            buf += (1 - dampening) * d
                    if nesterov:
                        if owned:
                            d += momentum * buf
                        else:
                            d, owned = d + momentum * buf, True
                    else:
                        d, owned = buf, False
                if owned:
                    d *= lr
                    param -= d
                else:
                    param -= lr * d
        return loss
