"""Batch normalisation and dropout, on the Numba kernels."""

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
    gamma = None if weight is None else weight.data
    beta = None if bias is None else bias.data
    parents = (x,) + tuple(p for p in (weight, bias) if p is not None)
    if training:
        out, mean, invstd = kernels.batch_norm_train_forward(x.data, gamma, beta, eps)
        _update_running(x, running_mean, running_var, mean, invstd, momentum, eps)

        def backward(g):
            gx, ggamma, gbeta = kernels.batch_norm_backward(g, x.data, gamma, mean, invstd)
            return (gx,) + tuple(gp for gp, p in ((ggamma, weight), (gbeta, bias)) if p is not None)

        return record(out, parents, backward)
    if running_mean is None or running_var is None:
        raise FreenetError("batch_norm: eval mode needs running_mean and running_var")
    out = kernels.batch_norm_eval_forward(x.data, running_mean, running_var, gamma, beta, eps)

    def backward_eval(g):  # an affine map per channel
        axes = (0,) + tuple(range(2, x.data.ndim))
        shape = (1, -1) + (1,) * (x.data.ndim - 2)
        invstd = 1 / np.sqrt(running_var.astype(np.float64) + eps)
        scale = invstd if gamma is None else gamma * invstd
        gx = g * scale.reshape(shape).astype(g.dtype)
        grads = [gx]
        if weight is not None:
            xhat = (x.data - running_mean.reshape(shape)) * invstd.reshape(shape)
            grads.append((g * xhat).sum(axis=axes))
        if bias is not None:
            grads.append(g.sum(axis=axes))
        return tuple(grads)

    return record(out, parents, backward_eval)


def _update_running(x, running_mean, running_var, mean, invstd, momentum, eps):
    if running_mean is not None:
        var = kernels.batch_norm_unbiased_var(invstd, eps, x.data.size // x.data.shape[1])
        kernels.batch_norm_update_running(running_mean, running_var, mean, var, momentum)


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
    gamma = None if weight is None else weight.data
    beta = None if bias is None else bias.data
    params = tuple(p for p in (weight, bias) if p is not None)
    if residual is None:
        out, mean, invstd = kernels.batch_norm_relu_train_forward(x.data, gamma, beta, eps)
    else:
        out, mean, invstd = kernels.batch_norm_add_relu_train_forward(x.data, residual.data, gamma, beta, eps)
    _update_running(x, running_mean, running_var, mean, invstd, momentum, eps)

    def backward(g):
        if residual is None:
            gx, ggamma, gbeta = kernels.batch_norm_relu_backward(g, out, x.data, gamma, mean, invstd)
            grads = (gx,)
        else:
            gx, gres, ggamma, gbeta = kernels.batch_norm_add_relu_backward(g, out, x.data, gamma, mean, invstd)
            grads = (gx, gres)
        return grads + tuple(gp for gp, p in ((ggamma, weight), (gbeta, bias)) if p is not None)

    return record(out, (x,) + (() if residual is None else (residual,)) + params, backward)


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
    out, mask = kernels.dropout_forward(x.data, p, seed)
    return record(out, (x,), lambda g: (kernels.dropout_backward(g, mask, p),))
