"""Activations and losses, as functions on tensors (PyTorch's ``torch.nn.functional``).

Losses take ``reduction`` = "mean" (default), "sum" or "none", and are stable for logits of any size:

>>> import freenet as fn
>>> from freenet.nn import functional as F
>>> logits = fn.tensor([[1e4, 0.0, -1e4]], requires_grad=True)
>>> F.cross_entropy(logits, fn.tensor([1]))
tensor(10000., requires_grad=True)
"""

import numpy as np

from freenet import kernels
from freenet.errors import FreenetError, op
from freenet.ops.arith import lift
from freenet.ops.conv import adaptive_avg_pool2d, avg_pool2d, conv2d, max_pool2d
from freenet.ops.norm import batch_norm, batch_norm_relu, dropout
from freenet.ops.reduce import log_softmax, softmax
from freenet.ops.shape import pad
from freenet.ops.unary import gelu, leaky_relu, relu, sigmoid, tanh
from freenet.tensor import Tensor, _constant, record

__all__ = ["linear", "relu", "leaky_relu", "gelu", "sigmoid", "tanh", "softmax", "log_softmax", "pad", "conv2d", "max_pool2d",
           "avg_pool2d", "adaptive_avg_pool2d", "batch_norm", "batch_norm_relu", "dropout", "cross_entropy", "nll_loss", "mse_loss",
           "binary_cross_entropy_with_logits"]

_REDUCTIONS = ("mean", "sum", "none")


def linear(input, weight, bias=None):
    """``input @ weight.T + bias`` for ``input`` of shape (..., in), ``weight`` (out, in), ``bias`` (out,).

    Inputs of more than 2 dims are multiplied as one (N, in) matrix, so the weight's gradient is a
    single product rather than one per batch item.
    """
    if input.ndim < 1 or input.shape[-1] != weight.shape[1]:
        raise FreenetError(f"linear: input of shape {tuple(input.shape)} does not end in "
                           f"in_features={weight.shape[1]}")
    if input.ndim > 2:
        lead = input.shape[:-1]
        out = input.reshape(-1, input.shape[-1]) @ weight.T
        if bias is not None:
            out = out + bias
        return out.reshape(lead + (weight.shape[0],))
    out = input @ weight.T
    return out if bias is None else out + bias



def _reduce(losses, reduction, count):
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    return total / count if count else total * np.nan  # every target ignored: nan, as in PyTorch


def _check(name, input, reduction):
    if reduction not in _REDUCTIONS:
        raise FreenetError(f"{name}: reduction must be one of {_REDUCTIONS}, not {reduction!r}")
    if not isinstance(input, Tensor) or input.dtype.kind != "f":
        raise FreenetError(f"{name}: input must be a float tensor")


def _target_weights(name, input, target, class_dim, label_smoothing, ignore_index, allow_probabilities):
    """Per-class weights of -log p in the loss, and how many targets the mean divides by."""
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    classes = input.shape[class_dim]
    if t.dtype.kind in "iu":
        expected = input.shape[:class_dim] + input.shape[class_dim + 1:]
        if t.shape != expected:
            raise FreenetError(f"{name}: target of shape {t.shape} does not fit input of shape {input.shape} "
                               f"(expected class indices of shape {expected})")
        valid = t != ignore_index
        bad = valid & ((t < 0) | (t >= classes))
        if bad.any():
            raise FreenetError(f"{name}: target {t[bad].flat[0]} is out of range for {classes} classes")
        weights = np.zeros(input.shape, dtype=input.dtype)
        np.put_along_axis(weights, np.expand_dims(np.where(valid, t, 0), class_dim), 1.0, axis=class_dim)
        weights = weights * (1 - label_smoothing) + label_smoothing / classes
        weights *= np.expand_dims(valid, class_dim)
        return _constant(weights), int(valid.sum())
    if t.dtype.kind == "f" and allow_probabilities:
        if t.shape != input.shape:
            raise FreenetError(f"{name}: probability target of shape {t.shape} must match input {input.shape}")
        weights = (t * (1 - label_smoothing) + label_smoothing / classes).astype(input.dtype)
        return _constant(weights), t.size // max(classes, 1)
    raise FreenetError(f"{name}: target must hold integer class indices"
                       + (" or float probabilities" if allow_probabilities else "") + f", not {t.dtype}")


@op
def cross_entropy(input, target, reduction="mean", label_smoothing=0.0, ignore_index=-100):
    """Softmax cross-entropy of logits ``input`` (N, C, ...) or (C,).

    ``target`` holds class indices (N, ...) or probabilities shaped like ``input`` (a search
    distribution, say). ``label_smoothing`` mixes the target with the uniform distribution; targets
    equal to ``ignore_index`` count for nothing, and the mean is over the others.
    """
    _check("cross_entropy", input, reduction)
    if input.ndim == 0:
        raise FreenetError("cross_entropy: input must have a class dim")
    if not 0.0 <= label_smoothing <= 1.0:
        raise FreenetError(f"cross_entropy: label_smoothing must be in [0, 1], not {label_smoothing}")
    class_dim = 1 if input.ndim > 1 else 0
    weights, count = _target_weights("cross_entropy", input, target, class_dim, label_smoothing, ignore_index,
                                     allow_probabilities=True)
    losses = -(log_softmax(input, dim=class_dim) * weights).sum(class_dim)
    return _reduce(losses, reduction, count)


@op
def nll_loss(input, target, reduction="mean", ignore_index=-100):
    """Negative log-likelihood of class indices, given log-probabilities ``input`` (N, C, ...) or (C,)."""
    _check("nll_loss", input, reduction)
    if input.ndim == 0:
        raise FreenetError("nll_loss: input must have a class dim")
    class_dim = 1 if input.ndim > 1 else 0
    weights, count = _target_weights("nll_loss", input, target, class_dim, 0.0, ignore_index,
                                     allow_probabilities=False)
    return _reduce(-(input * weights).sum(class_dim), reduction, count)


@op
def mse_loss(input, target, reduction="mean"):
    """Mean squared error; ``input`` and ``target`` must have the same shape."""
    _check("mse_loss", input, reduction)
    target = lift(target, input)
    if target.shape != input.shape:
        raise FreenetError(f"mse_loss: input {input.shape} and target {target.shape} differ in shape")
    diff = input - target
    return _reduce(diff * diff, reduction, diff.numel())


@op
def binary_cross_entropy_with_logits(input, target, reduction="mean"):
    """-[y log s(x) + (1 - y) log(1 - s(x))] for logits x, computed without overflow."""
    _check("binary_cross_entropy_with_logits", input, reduction)
    target = lift(target, input)
    if target.shape != input.shape:
        raise FreenetError(f"binary_cross_entropy_with_logits: input {input.shape} and target {target.shape} "
                           "differ in shape")
    x, y = input.data, target.data
    losses = np.maximum(x, 0) - x * y + kernels.log1p(kernels.exp(-np.abs(x)))
    backward = lambda g: (g * (kernels.sigmoid(x) - y), -g * x if target.requires_grad else None)  # noqa: E731
    return _reduce(record(losses, (input, target), backward), reduction, losses.size)
