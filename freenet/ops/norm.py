"""Batch, layer and group normalisation, and dropout (batch norm and dropout on the Numba kernels)."""

import contextlib
import contextvars

import numpy as np

from freenet import kernels
from freenet.errors import FreenetError, op
from freenet.factory import default_generator
from freenet.tensor import record


@op
def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalises each channel (dim 1) of x (N, C, ...).

    Training: by the batch's statistics, and the running ones (ndarrays, or None) are updated in
    place with PyTorch's rule (unbiased variance). Eval: by the running statistics.
    """
    gamma = None if weight is None else weight._data
    beta = None if bias is None else bias._data
    parents = (x,) + tuple(p for p in (weight, bias) if p is not None)
    if training:
        out, mean, invstd = kernels.batch_norm_train_forward(x._data, gamma, beta, eps)
        _update_running(x, running_mean, running_var, mean, invstd, momentum, eps)

        def backward(g):
            gx, ggamma, gbeta = kernels.batch_norm_backward(g, x._data, gamma, mean, invstd)
            return (gx,) + tuple(gp for gp, p in ((ggamma, weight), (gbeta, bias)) if p is not None)

        return record(out, parents, backward, saved=(x,) if weight is None else (x, weight))
    if running_mean is None or running_var is None:
        raise FreenetError("batch_norm: eval mode needs running_mean and running_var")
    out = kernels.batch_norm_eval_forward(x._data, running_mean, running_var, gamma, beta, eps)

    def backward_eval(g):  # an affine map per channel
        axes = (0,) + tuple(range(2, x._data.ndim))
        shape = (1, -1) + (1,) * (x._data.ndim - 2)
        invstd = 1 / np.sqrt(running_var.astype(np.float64) + eps)
        scale = invstd if gamma is None else gamma * invstd
        gx = g * scale.reshape(shape).astype(g.dtype)
        grads = [gx]
        if weight is not None:
            xhat = (x._data - running_mean.reshape(shape)) * invstd.reshape(shape)
            grads.append((g * xhat).sum(axis=axes))
        if bias is not None:
            grads.append(g.sum(axis=axes))
        return tuple(grads)

    return record(out, parents, backward_eval, saved=(x,) if weight is None else (x, weight))


_deferred = contextvars.ContextVar("deferred_running_updates", default=None)


@contextlib.contextmanager
def defer_running_updates():
    """Inside, batch norm leaves its running statistics alone and appends each update it would make to
    the list this yields, as (running_mean, running_var, batch mean, unbiased batch variance, momentum);
    ``apply_running_update`` makes it later. (Data-parallel training applies every shard's updates in
    shard order, on every process.)"""
    updates = []
    token = _deferred.set(updates)
    try:
        yield updates
    finally:
        _deferred.reset(token)


def apply_running_update(running_mean, running_var, mean, var, momentum):
    kernels.batch_norm_update_running(running_mean, running_var, mean, var, momentum)


def _update_running(x, running_mean, running_var, mean, invstd, momentum, eps):
    if running_mean is not None:
        var = kernels.batch_norm_unbiased_var(invstd, eps, x._data.size // x._data.shape[1])
        deferred = _deferred.get()
        if deferred is not None:
            deferred.append((running_mean, running_var, np.array(mean, np.float64), np.array(var, np.float64),
                             momentum))
        else:
            apply_running_update(running_mean, running_var, mean, var, momentum)


@op
def batch_norm_relu(x, running_mean, running_var, weight=None, bias=None, residual=None, training=False,
                    momentum=0.1, eps=1e-5):
    """relu(batch_norm(x) + residual) (no residual: relu(batch_norm(x))), the tail of a residual block.

    Training runs one fused pass forward and one backward (the ReLU's mask is applied inside batch
    norm's backward). Without a residual the bits are those of the ops one after another; with one,
    bn(x) + residual is rounded once where the ops round twice. Eval composes the ops.
    """
    if not training:
        out = batch_norm(x, running_mean, running_var, weight, bias, False, momentum, eps)
        return (out if residual is None else out + residual).relu()
    gamma = None if weight is None else weight._data
    beta = None if bias is None else bias._data
    params = tuple(p for p in (weight, bias) if p is not None)
    if residual is None:
        out, mean, invstd = kernels.batch_norm_relu_train_forward(x._data, gamma, beta, eps)
    else:
        out, mean, invstd = kernels.batch_norm_add_relu_train_forward(x._data, residual._data, gamma, beta, eps)
    _update_running(x, running_mean, running_var, mean, invstd, momentum, eps)

    def backward(g):
        if residual is None:
            gx, ggamma, gbeta = kernels.batch_norm_relu_backward(g, out, x._data, gamma, mean, invstd)
            grads = (gx,)
        else:
            gx, gres, ggamma, gbeta = kernels.batch_norm_add_relu_backward(g, out, x._data, gamma, mean, invstd)
            grads = (gx, gres)
        return grads + tuple(gp for gp, p in ((ggamma, weight), (gbeta, bias)) if p is not None)

    return record(out, (x,) + (() if residual is None else (residual,)) + params, backward,
                  saved=(x,) if weight is None else (x, weight), output_saved=True)


@op
def dropout(x, p=0.5, training=True):
    """Zeroes each element with probability p and scales the rest by 1 / (1 - p), in training only.

    The mask comes from a counter-based hash of (seed, element index), the seed drawn from freenet's
    generator: reproducible with ``freenet.manual_seed`` and independent of the thread count.
    """
    if not 0.0 <= p < 1.0:
        raise FreenetError(f"dropout: p must be in [0, 1), not {p}")
    if not training or p == 0.0:
        return x
    seed = int(default_generator().integers(2**63))
    out, mask = kernels.dropout_forward(x._data, p, seed)
    return record(out, (x,), lambda g: (kernels.dropout_backward(g, mask, p),), saved=())


def _standardize(v, eps):
    """(v - mean) / sqrt(var + eps) for each row of the 2-d ``v`` (a new array), with the statistics
    (mean, delta, invstd), each (rows, 1), that ``_restandardize`` takes to compute it again.

    All in v's dtype, with NumPy's pairwise row sums. The mean is taken twice: first roughly, then
    ``delta``, the mean of v minus the rough mean, which is small and exact where v is near its mean
    (a float32 row of mean 1e3 and spread 1e-3 keeps the spread's digits). The variance is the biased
    one (divided by n), from the centred values.
    """
    n = v.shape[1]
    mean = np.add.reduce(v, axis=1, keepdims=True) / n
    centered = v - mean
    delta = np.add.reduce(centered, axis=1, keepdims=True) / n
    var = np.add.reduce(centered * centered, axis=1, keepdims=True) / n - delta * delta
    invstd = 1 / np.sqrt(np.maximum(var, 0) + eps)
    centered -= delta
    centered *= invstd
    return centered, (mean, delta, invstd)


def _restandardize(v, stats):
    mean, delta, invstd = stats
    xhat = v - mean
    xhat -= delta
    xhat *= invstd
    return xhat


def _affine_norm(name, x, rows, view, param_shape, param_axes, weight, bias, eps):
    """Normalisation over the rows of x seen as ``rows`` (2-d), then ``* weight + bias`` with x seen as
    ``view`` and the parameters as ``param_shape`` (their gradients summed over ``param_axes``)."""
    for label, p in (("weight", weight), ("bias", bias)):
        if p is not None and p._data.size != int(np.prod(param_shape)):
            raise FreenetError(f"{name}: {label} of shape {p._data.shape} does not fit input of shape {x._data.shape}")
    n = rows[1]
    xhat, stats = _standardize(x._data.reshape(rows), eps)
    out = xhat.reshape(view)
    w = None if weight is None else weight._data.reshape(param_shape)
    b = None if bias is None else bias._data.reshape(param_shape)
    for p, ufunc in ((w, np.multiply), (b, np.add)):
        if p is not None:
            out = ufunc(out, p, out=out) if p.dtype == out.dtype else ufunc(out, p)

    def backward(g):
        g = g.reshape(view)
        xhat = _restandardize(x._data.reshape(rows), stats).reshape(view)
        grads = [None]
        need_w = weight is not None and weight.requires_grad
        if x.requires_grad or need_w:
            g_xhat = g * xhat
        if weight is not None:
            grads.append(np.add.reduce(g_xhat, axis=param_axes).reshape(weight._data.shape) if need_w else None)
        if x.requires_grad:
            gx = g * w if w is not None else np.array(g, copy=True)  # the gradient of xhat
            if w is not None:
                g_xhat *= w  # now gx * xhat
            gx2, xhat2 = gx.reshape(rows), xhat.reshape(rows)
            c1 = np.add.reduce(gx2, axis=1, keepdims=True) / n
            c2 = np.add.reduce(g_xhat.reshape(rows), axis=1, keepdims=True) / n
            xhat2 *= c2
            gx2 -= c1
            gx2 -= xhat2
            gx2 *= stats[2]
            grads[0] = gx2.reshape(x._data.shape)
        if bias is not None:
            grads.append(np.add.reduce(g, axis=param_axes).reshape(bias._data.shape) if bias.requires_grad else None)
        return tuple(grads)

    parents = (x,) + tuple(p for p in (weight, bias) if p is not None)
    return record(out.reshape(x._data.shape), parents, backward, saved=(x,) if weight is None else (x, weight))


def _normalized_shape(normalized_shape):
    if isinstance(normalized_shape, (int, np.integer)):
        return (int(normalized_shape),)
    try:
        return tuple(int(n) for n in normalized_shape)
    except TypeError:
        raise FreenetError(f"layer_norm: normalized_shape must be an int or a sequence of ints, "
                           f"not {normalized_shape!r}") from None


@op
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalises x over its last ``len(normalized_shape)`` dims (which must be ``normalized_shape``),
    each slice by its own mean and biased variance, then ``* weight + bias`` (both of that shape)."""
    shape = _normalized_shape(normalized_shape)
    k = len(shape)
    if k == 0 or x._data.ndim < k or x._data.shape[x._data.ndim - k:] != shape:
        raise FreenetError(f"layer_norm: input of shape {x._data.shape} does not end in normalized_shape {shape}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p._data.shape != shape:
            raise FreenetError(f"layer_norm: {name} of shape {p._data.shape} must have normalized_shape {shape}")
    n = int(np.prod(shape))
    rows = (x._data.size // n if n else 0, n)
    return _affine_norm("layer_norm", x, rows, rows, (n,), (0,), weight, bias, eps)


@op
def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalises x (N, C, ...) over each group of C / num_groups channels (and all positions) per
    sample, then ``* weight + bias`` per channel (both (C,))."""
    if x._data.ndim < 2:
        raise FreenetError(f"group_norm: input must be (N, C, ...), got shape {x._data.shape}")
    n, c = x._data.shape[:2]
    if not isinstance(num_groups, (int, np.integer)) or num_groups <= 0 or c % num_groups:
        raise FreenetError(f"group_norm: num_groups={num_groups!r} must divide the {c} channels of input "
                           f"of shape {x._data.shape}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p._data.shape != (c,):
            raise FreenetError(f"group_norm: {name} of shape {p._data.shape} must be ({c},)")
    positions = int(np.prod(x._data.shape[2:]))
    rows = (n * int(num_groups), c // int(num_groups) * positions)
    return _affine_norm("group_norm", x, rows, (n, c, positions), (c, 1), (0, 2), weight, bias, eps)
