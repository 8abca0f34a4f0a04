"""Elementwise functions of one tensor, each forward beside its derivative.

Transcendental functions come from ``freenet.kernels`` (not NumPy's, whose bits depend on the CPU).
"""

import numpy as np

from freenet import kernels
from freenet.errors import FreenetError, op
from freenet.tensor import record


@op
def neg(x):
    return record(-x._data, (x,), lambda g: (-g,), saved=())


@op
def abs(x):
    return record(np.abs(x._data), (x,), lambda g: (g * np.sign(x._data),))


@op
def exp(x):
    out = kernels.exp(x._data)
    return record(out, (x,), lambda g: (g * out,), saved=(), output_saved=True)


@op
def log(x):
    return record(kernels.log(x._data), (x,), lambda g: (g / x._data,))


@op
def log1p(x):
    return record(kernels.log1p(x._data), (x,), lambda g: (g / (1 + x._data),))


@op
def sqrt(x):
    out = np.sqrt(x._data)
    return record(out, (x,), lambda g: (g * 0.5 / out,), saved=(), output_saved=True)


@op
def tanh(x):
    out = kernels.tanh(x._data)
    return record(out, (x,), lambda g: (g * (1 - out * out),), saved=(), output_saved=True)


@op
def sigmoid(x):
    out = kernels.sigmoid(x._data)
    return record(out, (x,), lambda g: (g * out * (1 - out),), saved=(), output_saved=True)


_KERNEL_MIN_SIZE = 1 << 16  # below this, one NumPy pass beats a parallel kernel launch


@op
def relu(x):
    if x._data.size >= _KERNEL_MIN_SIZE and x._data.dtype.kind == "f":
        out = kernels.relu_forward(x._data)
        return record(out, (x,), lambda g: (kernels.relu_backward(g, out),), saved=(), output_saved=True)
    return record(np.maximum(x._data, 0), (x,), lambda g: (g * (x._data > 0),))


@op
def leaky_relu(x, negative_slope=0.01):
    positive = x._data > 0
    out = np.where(positive, x._data, x._data * negative_slope)
    return record(out, (x,), lambda g: (np.where(positive, g, g * negative_slope),), saved=())


_SQRT_2_OVER_PI = float(np.sqrt(2 / np.pi))


@op
def gelu(x, approximate="none"):
    """x * Phi(x) with the exact normal CDF, or its tanh approximation (``approximate="tanh"``)."""
    if approximate == "none":
        return record(kernels.gelu(x._data), (x,), lambda g: (kernels.gelu_backward(x._data, g),))
    if approximate != "tanh":
        raise FreenetError(f"gelu: approximate must be 'none' or 'tanh', not {approximate!r}")
    v = x._data
    inner = _SQRT_2_OVER_PI * (v + 0.044715 * (v * v * v))
    t = kernels.tanh(inner)
    out = 0.5 * v * (1 + t)

    def backward(g):
        d_inner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * v * v)
        return (g * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * d_inner),)

    return record(out, (x,), backward)


@op
def clip(x, min=None, max=None):
    """Values limited to [min, max]; the gradient passes where min <= x <= max."""
    if min is None and max is None:
        raise FreenetError("clip: give min, max or both")
    out = np.clip(x._data, min, max)
    inside = np.ones(x._data.shape, dtype=bool)
    if min is not None:
        inside &= x._data >= min
    if max is not None:
        inside &= x._data <= max
    return record(out, (x,), lambda g: (g * inside,), saved=())


@op
def cast(x, dtype):
    """The tensor in another dtype; gradients are cast back."""
    dtype = np.dtype(dtype)
    if x._data.dtype == dtype:
        return x
    return record(x._data.astype(dtype), (x,), lambda g: (g,), saved=())


@op
def clone(x):
    """A copy with its own memory; the gradient passes through."""
    return record(x._data.copy(), (x,), lambda g: (g,), saved=())


def contiguous(x):
    """``x`` itself when its memory is C-ordered, else a C-ordered copy (as PyTorch)."""
    return x if x._data.flags.c_contiguous else clone(x)


@op
def square(x):
    return record(x._data * x._data, (x,), lambda g: (g * 2 * x._data,))


@op
def norm(x, p=2, dim=None, keepdim=False):
    """The p-norm over ``dim`` (all elements when None) for p = 1, 2 or inf; a zero vector's gradient is 0."""
    from freenet.ops.reduce import amax, sum  # reduce builds on this module
    if p == 1:
        return sum(abs(x), dim, keepdim)
    if p in (float("inf"), "inf"):
        return amax(abs(x), dim, keepdim)
    if p not in (2, "fro"):
        raise FreenetError(f"norm: p must be 1, 2, 'fro' or inf, not {p!r}")
    squares = sum(square(x), dim, keepdim)
    out = np.sqrt(squares._data)

    def backward(g):
        safe = np.where(out == 0, 1, out)
        return (np.where(out == 0, 0, g * 0.5 / safe),)  # d sqrt(s) / ds; the square's backward gives 2x

    return record(out, (squares,), backward, saved=(), output_saved=True)
