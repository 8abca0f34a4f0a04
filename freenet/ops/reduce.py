"""Reductions over any axes (``dim`` an int, a tuple, or None for all), and softmax (with freenet's own
exp and log, whose bits do not depend on the CPU)."""

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from freenet import kernels
from freenet.errors import op
from freenet.tensor import _constant, record


def _axes(dim, ndim):
    return tuple(range(ndim)) if dim is None else normalize_axis_tuple(dim, ndim)


def _spread(g, shape, axes, keepdim):
    """A reduced gradient broadcast back over the input's shape."""
    if not keepdim:
        if len(axes) == len(shape):  # a full reduction: g is a single number
            return np.full(shape, g)
        g = np.expand_dims(g, axes)
    return np.broadcast_to(g, shape)


def _count(shape, axes):
    n = 1
    for a in axes:
        n *= shape[a]
    return n


@op
def sum(x, dim=None, keepdim=False):
    axes = _axes(dim, x.data.ndim)
    out = np.sum(x.data, axis=axes, keepdims=keepdim)
    return record(out, (x,), lambda g: (_spread(g, x.data.shape, axes, keepdim),))


@op
def mean(x, dim=None, keepdim=False):
    axes = _axes(dim, x.data.ndim)
    n = _count(x.data.shape, axes)
    out = np.sum(x.data, axis=axes, keepdims=keepdim) / n
    return record(out, (x,), lambda g: (_spread(g / n, x.data.shape, axes, keepdim),))


@op
def var(x, dim=None, keepdim=False, correction=1):
    """Variance; ``correction=1`` divides by n - 1 (as PyTorch), ``correction=0`` by n."""
    axes = _axes(dim, x.data.ndim)
    n = _count(x.data.shape, axes) - correction
    centered = x.data - np.mean(x.data, axis=axes, keepdims=True)
    out = np.sum(centered * centered, axis=axes, keepdims=keepdim) / n
    return record(out, (x,), lambda g: (_spread(g, x.data.shape, axes, keepdim) * centered * (2 / n),))


def _extreme(reduce):
    def extreme(x, dim=None, keepdim=False):
        """The largest (smallest) values; tied elements share the gradient equally."""
        axes = _axes(dim, x.data.ndim)
        out = reduce(x.data, axis=axes, keepdims=keepdim)

        def backward(g):
            hit = x.data == _spread(out, x.data.shape, axes, keepdim)
            share = hit / np.sum(hit, axis=axes, keepdims=True)
            return (_spread(g, x.data.shape, axes, keepdim) * share,)

        return record(out, (x,), backward)

    extreme.__name__ = extreme.__qualname__ = reduce.__name__
    return op(extreme)


max = _extreme(np.max)
min = _extreme(np.min)


@op
def logsumexp(x, dim=None, keepdim=False):
    """log(sum(exp(x))) without overflow."""
    axes = _axes(dim, x.data.ndim)
    out = _logsumexp(x.data, axes, keepdims=keepdim)
    return record(out, (x,), lambda g: (_spread(g, x.data.shape, axes, keepdim)
                                        * kernels.exp(x.data - _spread(out, x.data.shape, axes, keepdim)),))


def _finite_max(v, axes):
    """The max over axes (kept), with 0 for empty or all -inf rows, which then stay -inf instead of nan."""
    m = np.max(v, axis=axes, keepdims=True, initial=-np.inf)
    return np.where(np.isfinite(m), m, 0)


def _logsumexp(v, axes, keepdims):
    m = _finite_max(v, axes)
    out = kernels.log(np.sum(kernels.exp(v - m), axis=axes, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axes)


@op
def softmax(x, dim=-1):
    axes = _axes(dim, x.data.ndim)
    e = kernels.exp(x.data - _finite_max(x.data, axes))
    out = e / np.sum(e, axis=axes, keepdims=True)
    return record(out, (x,), lambda g: (out * (g - np.sum(g * out, axis=axes, keepdims=True)),))


@op
def log_softmax(x, dim=-1):
    axes = _axes(dim, x.data.ndim)
    shifted = x.data - _finite_max(x.data, axes)  # subtract before the log: keeps precision at 1e4
    out = shifted - kernels.log(np.sum(kernels.exp(shifted), axis=axes, keepdims=True))
    return record(out, (x,), lambda g: (g - kernels.exp(out) * np.sum(g, axis=axes, keepdims=True),))


@op
def argmax(x, dim=None, keepdim=False):
    """Index of the largest value (over the flattened tensor when ``dim`` is None); no gradient."""
    return _constant(np.argmax(x.data, axis=dim, keepdims=keepdim))


@op
def argmin(x, dim=None, keepdim=False):
    return _constant(np.argmin(x.data, axis=dim, keepdims=keepdim))

