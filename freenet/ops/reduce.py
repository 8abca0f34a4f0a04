"""Reductions over any axes (``dim`` an int, a tuple, or None for all), and softmax (with freenet's own
exp and log, whose bits do not depend on the CPU)."""

from typing import NamedTuple

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from freenet import kernels
from freenet.errors import FreenetError, op
from freenet.ops.arith import maximum, minimum
from freenet.tensor import Tensor, _constant, record


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
    axes = _axes(dim, x._data.ndim)
    out = np.sum(x._data, axis=axes, keepdims=keepdim)
    return record(out, (x,), lambda g: (_spread(g, x._data.shape, axes, keepdim),), saved=())


@op
def mean(x, dim=None, keepdim=False):
    axes = _axes(dim, x._data.ndim)
    n = _count(x._data.shape, axes)
    out = np.sum(x._data, axis=axes, keepdims=keepdim) / n
    return record(out, (x,), lambda g: (_spread(g / n, x._data.shape, axes, keepdim),), saved=())


@op
def var(x, dim=None, keepdim=False, correction=1):
    """Variance; ``correction=1`` divides by n - 1 (as PyTorch), ``correction=0`` by n."""
    axes = _axes(dim, x._data.ndim)
    n = _count(x._data.shape, axes) - correction
    centered = x._data - np.mean(x._data, axis=axes, keepdims=True)
    out = np.sum(centered * centered, axis=axes, keepdims=keepdim) / n
    return record(out, (x,), lambda g: (_spread(g, x._data.shape, axes, keepdim) * centered * (2 / n),),
                  saved=())


class ValuesIndices(NamedTuple):
    """What ``max``, ``min`` (over one dim), ``sort`` and ``topk`` return, as in PyTorch."""
    values: Tensor
    indices: Tensor


def _amax(reduce):
    def extreme(x, dim=None, keepdim=False):
        """The largest (smallest) values over ``dim`` (an int, a tuple, or None for all); tied elements
        share the gradient equally."""
        axes = _axes(dim, x._data.ndim)
        out = reduce(x._data, axis=axes, keepdims=keepdim)

        def backward(g):
            hit = x._data == _spread(out, x._data.shape, axes, keepdim)
            share = hit / np.sum(hit, axis=axes, keepdims=True)
            return (_spread(g, x._data.shape, axes, keepdim) * share,)

        return record(out, (x,), backward, output_saved=True)

    extreme.__name__ = extreme.__qualname__ = "a" + reduce.__name__
    return op(extreme)


amax = _amax(np.max)
amin = _amax(np.min)


def _along(find, whole, pairwise):
    def extreme(x, dim=None, keepdim=False):
        """Without ``dim``: the largest (smallest) value (``amax``). With an int ``dim``: ``(values,
        indices)`` along it, the gradient going to the index found (the first, on ties), as in PyTorch.
        With a tensor in place of ``dim``: the elementwise ``maximum`` (``minimum``)."""
        if dim is None:
            return whole.__wrapped__(x)  # errors then name max, not amax
        if isinstance(dim, Tensor):
            return pairwise(x, dim)
        if not isinstance(dim, (int, np.integer)):
            raise FreenetError(f"{find.__name__[3:]}: dim must be an int (use a{find.__name__[3:]} for several dims), "
                               f"not {dim!r}")
        axis = normalize_axis_index(int(dim), x._data.ndim)
        index = find(x._data, axis=axis, keepdims=True)
        values = np.take_along_axis(x._data, index, axis)

        def backward(g):
            gx = np.zeros(x._data.shape, dtype=g.dtype)
            np.put_along_axis(gx, index, g if keepdim else np.expand_dims(g, axis), axis)
            return (gx,)

        indices = index if keepdim else np.squeeze(index, axis)
        values = values if keepdim else np.squeeze(values, axis)
        return ValuesIndices(record(values, (x,), backward, saved=()), _constant(indices))

    extreme.__name__ = extreme.__qualname__ = find.__name__[3:]
    return op(extreme)


max = _along(np.argmax, amax, maximum)
min = _along(np.argmin, amin, minimum)


@op
def std(x, dim=None, keepdim=False, correction=1):
    """Standard deviation: ``sqrt(var(x))``."""
    from freenet.ops.unary import sqrt
    return sqrt(var(x, dim, keepdim, correction))


def _sorted(x, dim, descending, k=None):
    axis = normalize_axis_index(dim, x._data.ndim)
    # Stable, so equal values keep their order. Descending sorts order-reversed keys: -x for floats,
    # ~x (= -x - 1) for integers and bools, where -x would overflow at the type's minimum.
    keys = x._data if not descending else (-x._data if x._data.dtype.kind == "f" else ~x._data)
    index = np.argsort(keys, axis=axis, kind="stable")
    if k is not None:
        index = np.take(index, np.arange(k), axis=axis)
    values = np.take_along_axis(x._data, index, axis)

    def backward(g):
        gx = np.zeros(x._data.shape, dtype=g.dtype)
        np.put_along_axis(gx, index, g, axis)
        return (gx,)

    return ValuesIndices(record(values, (x,), backward, saved=()), _constant(index))


@op
def sort(x, dim=-1, descending=False, stable=False):
    """``(values, indices)`` sorted along ``dim``; equal values keep their order."""
    return _sorted(x, dim, descending)


@op
def argsort(x, dim=-1, descending=False, stable=False):
    return _sorted(x, dim, descending).indices


@op
def topk(x, k, dim=-1, largest=True, sorted=True):
    """The ``k`` largest (smallest) values along ``dim`` and their indices, in order."""
    if not 0 <= k <= x._data.shape[dim]:
        raise FreenetError(f"topk: k={k} is out of range for size {x._data.shape[dim]}")
    return _sorted(x, dim, largest, k)


def _logical(reduce):
    def logical(x, dim=None, keepdim=False):
        """Whether all (any) elements are true (non-zero), as a bool tensor; no gradient."""
        return _constant(np.asarray(reduce(x._data, axis=None if dim is None else _axes(dim, x._data.ndim),
                                           keepdims=keepdim)))

    logical.__name__ = logical.__qualname__ = reduce.__name__
    return op(logical)


all = _logical(np.all)
any = _logical(np.any)


@op
def logsumexp(x, dim=None, keepdim=False):
    """log(sum(exp(x))) without overflow."""
    axes = _axes(dim, x._data.ndim)
    out = _logsumexp(x._data, axes, keepdims=keepdim)
    return record(out, (x,), lambda g: (_spread(g, x._data.shape, axes, keepdim)
                                        * kernels.exp(x._data - _spread(out, x._data.shape, axes, keepdim)),),
                  output_saved=True)


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
    axes = _axes(dim, x._data.ndim)
    e = kernels.exp(x._data - _finite_max(x._data, axes))
    out = e / np.sum(e, axis=axes, keepdims=True)
    return record(out, (x,), lambda g: (out * (g - np.sum(g * out, axis=axes, keepdims=True)),), saved=(),
                  output_saved=True)


@op
def log_softmax(x, dim=-1):
    axes = _axes(dim, x._data.ndim)
    shifted = x._data - _finite_max(x._data, axes)  # subtract before the log: keeps precision at 1e4
    out = shifted - kernels.log(np.sum(kernels.exp(shifted), axis=axes, keepdims=True))
    return record(out, (x,), lambda g: (g - kernels.exp(out) * np.sum(g, axis=axes, keepdims=True),), saved=(),
                  output_saved=True)


@op
def argmax(x, dim=None, keepdim=False):
    """Index of the largest value (over the flattened tensor when ``dim`` is None); no gradient."""
    return _constant(np.argmax(x._data, axis=dim, keepdims=keepdim))


@op
def argmin(x, dim=None, keepdim=False):
    return _constant(np.argmin(x._data, axis=dim, keepdims=keepdim))

