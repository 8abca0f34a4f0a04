"""Gradient utilities: clipping by total norm or by value, in place on ``p.grad``."""

import math

import numpy as np

from freenet import kernels
from freenet.errors import FreenetError
from freenet.factory import tensor
from freenet.tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad._data for p in parameters if p.grad is not None]


def _norm(array, p):
    """The p-norm of an array's elements, in float64."""
    flat = array.reshape(-1).astype(np.float64)
    if p == math.inf:
        return float(np.max(np.abs(flat))) if flat.size else 0.0
    if p == -math.inf:
        return float(np.min(np.abs(flat))) if flat.size else math.inf
    if p == 0:
        return float(np.count_nonzero(flat))
    if p == 2:
        return math.sqrt(float(np.sum(flat * flat)))
    return float(kernels.power(np.sum(kernels.power(np.abs(flat), p)), 1.0 / p))  # not NumPy's CPU-dependent power


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scales all gradients together so that their joint ``norm_type``-norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: the total norm is the norm of the per-parameter norms, the
    gradients are multiplied by min(1, max_norm / (total + 1e-6)), and the total norm (before
    clipping) is returned as a 0-d tensor. Parameters without a gradient are skipped.

    >>> import freenet as fn
    >>> w = fn.tensor([0.0, 0.0], requires_grad=True)
    >>> (w * fn.tensor([3.0, 4.0])).sum().backward()
    >>> fn.nn.utils.clip_grad_norm_([w], 1.0)
    tensor(5.)
    >>> w.grad.tolist() == [float(fn.tensor(3 / (5 + 1e-6))), float(fn.tensor(4 / (5 + 1e-6)))]
    True
    """
    grads = _grads(parameters)
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not grads:
        return tensor(0.0)
    total = _norm(np.array([_norm(g, norm_type) for g in grads]), norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise FreenetError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {total}; "
                           "pass error_if_nonfinite=False to clip anyway")
    coef = max_norm / (total + 1e-6)
    if not coef >= 1.0:  # also when total is nan, as PyTorch
        for g in grads:
            g *= coef
    return tensor(total, dtype=np.result_type(*grads))


def clip_grad_value_(parameters, clip_value):
    """Limits every gradient element to [-clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        np.clip(g, -clip_value, clip_value, out=g)
