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
from freenet.ops import activation, norm, unary
from freenet.ops.embedding import embedding, one_hot
from freenet.ops.norm import batch_norm, batch_norm_relu, group_norm, layer_norm
from freenet.ops.reduce import log_softmax, softmax
from freenet.ops.resample import interpolate
from freenet.ops.shape import pad
from freenet.ops.unary import cast, gelu, sigmoid, tanh
from freenet.tensor import Tensor, _constant, inplace, record

__all__ = ["linear", "scaled_dot_product_attention", "relu", "leaky_relu", "gelu", "silu", "sigmoid", "tanh",
           "softmax", "log_softmax", "pad", "conv1d", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm", "batch_norm_relu", "layer_norm",
           "group_norm", "dropout", "embedding", "one_hot", "interpolate", "cross_entropy", "nll_loss", "mse_loss",
           "l1_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"]

_REDUCTIONS = ("mean", "sum", "none")


def relu(input, inplace=False):
    """max(x, 0); ``inplace=True`` changes ``input`` itself (``input.relu_()``)."""
    return input.relu_() if inplace else unary.relu(input)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    if inplace:
        return _inplace(input, unary.leaky_relu, "leaky_relu_", negative_slope=negative_slope)
    return unary.leaky_relu(input, negative_slope)


def dropout(input, p=0.5, training=True, inplace=False):
    """``freenet.ops.norm.dropout``; ``inplace=True`` changes ``input`` itself."""
    if inplace:
        return _inplace(input, norm.dropout, "dropout_", p=p, training=training)
    return norm.dropout(input, p, training)


def silu(input, inplace=False):
    """x * sigmoid(x); ``inplace=True`` changes ``input`` itself."""
    if inplace:
        return _inplace(input, activation.silu, "silu_")
    return activation.silu(input)


def _inplace(input, fn, name, **options):
    return inplace(input, lambda t: fn(t, **options), name)


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


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-d cross-correlation: input (N, C, L) or (C, L), weight (K, C / groups, k), bias (K,) or None.

    ``padding`` is an int, "valid" (0) or "same" (stride 1 only; an odd total goes on the right, as
    PyTorch does). It runs as a 2-d convolution over a height-1 axis, on the conv2d kernels.
    """
    if weight.ndim != 3:
        raise FreenetError(f"conv1d: weight must be 3-d (out_channels, in_channels / groups, kernel_size), "
                           f"got shape {tuple(weight.shape)}")
    if input.ndim not in (2, 3):
        raise FreenetError(f"conv1d: input must be 3-d (N, C, L) or 2-d (C, L), got shape {tuple(input.shape)}")
    stride, padding, dilation = _single(stride, "stride"), _single(padding, "padding"), _single(dilation, "dilation")
    if padding == "valid":
        padding = 0
    elif padding == "same":
        if stride != 1:
            raise FreenetError("conv1d: padding='same' is not supported for strided convolutions")
        total = dilation * (weight.shape[2] - 1)
        padding = total // 2
        if total % 2:
            input = pad(input, (0, 1))
    elif isinstance(padding, str):
        raise FreenetError(f"conv1d: padding must be an int, 'valid' or 'same', not {padding!r}")
    batched = input.ndim == 3
    x = input.unsqueeze(2) if batched else input.unsqueeze(0).unsqueeze(2)
    out = conv2d(x, weight.unsqueeze(2), bias, (1, stride), (0, padding), (1, dilation), groups)
    return out.squeeze(2) if batched else out.squeeze(2).squeeze(0)


def _single(value, name):
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise FreenetError(f"conv1d: {name} must be an int or a 1-tuple, not {value!r}")
        value = value[0]
    return value


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """softmax(query @ key^T * scale + mask) @ value over the last two dims, as PyTorch's (composed of
    freenet's ops, not a fused kernel). ``attn_mask``: bool (True = attend) or added to the scores;
    ``is_causal``: each query attends to keys at or before its position."""
    length, source = query.shape[-2], key.shape[-2]
    scale = 1 / np.sqrt(query.shape[-1]) if scale is None else scale
    scores = (query @ key.transpose(-2, -1)) * scale
    if is_causal:
        if attn_mask is not None:
            raise FreenetError("scaled_dot_product_attention: give attn_mask or is_causal, not both")
        attn_mask = np.tril(np.ones((length, source), dtype=bool))
    if attn_mask is not None:
        mask = attn_mask._data if isinstance(attn_mask, Tensor) else np.asarray(attn_mask)
        scores = scores.masked_fill(~mask, -np.inf) if mask.dtype == np.bool_ else scores + attn_mask
    weights = softmax(scores, -1)
    if dropout_p:
        weights = norm.dropout(weights, dropout_p)
    return weights @ value


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
    t = target._data if isinstance(target, Tensor) else np.asarray(target)
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
        count = t.size // max(classes, 1)
        if isinstance(target, Tensor) and target.requires_grad:  # distillation: the target gets a gradient
            return cast(target, input.dtype) * (1 - label_smoothing) + label_smoothing / classes, count
        weights = (t * (1 - label_smoothing) + label_smoothing / classes).astype(input.dtype)
        return _constant(weights), count
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
    x, y = input._data, target._data
    losses = np.maximum(x, 0) - x * y + kernels.log1p(kernels.exp(-np.abs(x)))
    backward = lambda g: (g * (kernels.sigmoid(x) - y), -g * x if target.requires_grad else None)  # noqa: E731
    return _reduce(record(losses, (input, target), backward), reduction, losses.size)


def _legacy_reduction(size_average, reduce, reduction):
    """``reduction`` from PyTorch's deprecated ``size_average`` and ``reduce`` flags, when either is given."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return "none" if not reduce else "mean" if size_average else "sum"


def _weights(name, weight, input):
    """``weight`` as an array that broadcasts to ``input``'s shape (without changing it), or None."""
    if weight is None:
        return None
    w = weight._data if isinstance(weight, Tensor) else np.asarray(weight, dtype=input.dtype)
    try:
        fits = np.broadcast_shapes(w.shape, input.shape) == input.shape
    except ValueError:
        fits = False
    if not fits:
        raise FreenetError(f"{name}: weight of shape {w.shape} does not broadcast to input of shape {input.shape}")
    return w


@op
def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean absolute error; ``input`` and ``target`` must have the same shape. The gradient is
    sign(input - target), 0 where they are equal (as in PyTorch). A ``weight`` (broadcast to the
    input's shape) multiplies each error, and "mean" then divides by the weights' sum, as PyTorch does."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check("l1_loss", input, reduction)
    target = lift(target, input)
    if target.shape != input.shape:
        raise FreenetError(f"l1_loss: input {input.shape} and target {target.shape} differ in shape")
    losses = (input - target).abs()
    if weight is None:
        return _reduce(losses, reduction, losses.numel())
    _weights("l1_loss", weight, input)
    weight = weight if isinstance(weight, Tensor) else _constant(np.asarray(weight, input.dtype))
    losses = losses * weight
    if reduction != "mean":
        return _reduce(losses, reduction, losses.numel())
    return losses.sum() / weight.expand(input.shape).sum()


@op
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """-weight [y log x + (1 - y) log(1 - x)] for probabilities x in [0, 1], each log clamped at -100
    (so x = 0 or 1 gives a finite loss), as PyTorch. The gradient (x - y) / max(x (1 - x), 1e-12) is
    PyTorch's; a target that requires grad gets -(log x - log(1 - x))."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check("binary_cross_entropy", input, reduction)
    target = lift(target, input)
    if target.shape != input.shape:
        raise FreenetError(f"binary_cross_entropy: target of shape {target.shape} must have the input's shape "
                           f"{input.shape}")
    x, y = input._data, target._data
    if x.size and not ((x >= 0) & (x <= 1)).all():
        raise FreenetError("binary_cross_entropy: all elements of input must be between 0 and 1")
    w = _weights("binary_cross_entropy", weight, input)
    log_x = np.maximum(kernels.log(x), -100)
    log_1mx = np.maximum(kernels.log(1 - x), -100)
    losses = -(y * log_x + (1 - y) * log_1mx)
    if w is not None:
        losses = losses * w

    def backward(g):
        if w is not None:
            g = g * w
        gx = g * (x - y) / np.maximum(x * (1 - x), 1e-12) if input.requires_grad else None
        gy = g * (log_1mx - log_x) if target.requires_grad else None
        return gx, gy

    saved = (input, target) + ((weight,) if isinstance(weight, Tensor) else ())
    out = record(losses.astype(x.dtype, copy=False), (input, target), backward, saved=saved)
    return _reduce(out, reduction, losses.size)
