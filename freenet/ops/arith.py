"""Binary arithmetic with NumPy broadcasting, where, and comparisons.

Gradients are written at the broadcast output shape; the engine sums them back to each input's shape.
"""

import numpy as np

from freenet import kernels
from freenet.errors import FreenetError, op
from freenet.tensor import Tensor, _constant, record


def lift(value, like):
    """``value`` as a Tensor. Python scalars are weak: they take ``like``'s dtype, as in PyTorch."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (bool, int, float)):
        dtype = like._data.dtype
        if dtype.kind != "f":
            # an int tensor with a float gives float32, PyTorch's default dtype (NumPy would say float64)
            dtype = np.float32 if isinstance(value, float) else np.result_type(like._data, value)
        return _constant(np.asarray(value, dtype=dtype))
    if isinstance(value, (np.ndarray, np.generic)):
        return _constant(np.asarray(value))
    raise FreenetError(f"cannot combine a tensor with {type(value).__name__}")


def pair(a, b):
    """Both operands as tensors, an integer or bool one cast to the other's float dtype (PyTorch's
    promotion: int64 with float32 gives float32, where NumPy would give float64)."""
    a, b = (lift(a, b), b) if not isinstance(a, Tensor) else (a, lift(b, a))
    fa, fb = a._data.dtype.kind == "f", b._data.dtype.kind == "f"
    if fa != fb:
        if fa:
            b = _constant(b._data.astype(a._data.dtype))
        else:
            a = _constant(a._data.astype(b._data.dtype))
    return a, b


@op
def add(a, b):
    a, b = pair(a, b)
    return record(a._data + b._data, (a, b), lambda g: (g, g), saved=())


@op
def sub(a, b):
    a, b = pair(a, b)
    return record(a._data - b._data, (a, b), lambda g: (g, -g), saved=())


@op
def mul(a, b):
    a, b = pair(a, b)
    return record(a._data * b._data, (a, b), lambda g: (g * b._data, g * a._data))


@op
def div(a, b):
    """True division; integer operands give float32, as in PyTorch."""
    a, b = pair(a, b)
    if a._data.dtype.kind != "f":
        a, b = _constant(a._data.astype(np.float32)), _constant(b._data.astype(np.float32))
    out = a._data / b._data
    return record(out, (a, b), lambda g: (g / b._data, -g * out / b._data), saved=(b,), output_saved=True)


def _power(a, b):
    """a ** b elementwise, with bits that do not depend on the CPU (NumPy's float power does): a
    single exponent 2 or 0.5 is one correctly rounded product or square root, other float powers
    go to ``kernels.power`` (repeated squaring for small integer exponents, else exp(b log a))."""
    dtype = np.result_type(a, b)
    if dtype.kind != "f":
        return a ** b  # integers: exact
    if b.size == 1 and np.broadcast_shapes(a.shape, b.shape) == a.shape:
        k = float(b.reshape(-1)[0])
        if k == 2:
            a = a.astype(dtype, copy=False)
            return a * a
        if k == 0.5:
            return np.sqrt(a.astype(dtype, copy=False))
    return kernels.power(a, b)


@op
def pow(a, b):
    a, b = pair(a, b)
    out = _power(a._data, b._data)

    def backward(g):
        ga = g * b._data * _power(a._data, b._data - 1)
        gb = g * out * kernels.log(a._data) if b.requires_grad else None
        return ga, gb

    return record(out, (a, b), backward, output_saved=True)


@op
def maximum(a, b):
    """Elementwise max; on ties each side gets half the gradient (as PyTorch does)."""
    a, b = pair(a, b)
    return _pick(np.maximum(a._data, b._data), a, b, a._data > b._data)


@op
def minimum(a, b):
    a, b = pair(a, b)
    return _pick(np.minimum(a._data, b._data), a, b, a._data < b._data)


def _pick(out, a, b, a_wins):
    def backward(g):
        share = np.where(a_wins, 1.0, np.where(a._data == b._data, 0.5, 0.0)).astype(g.dtype)
        return g * share, g * (1 - share)

    return record(out, (a, b), backward)


@op
def where(condition, a, b):
    """``a`` where ``condition`` holds, else ``b``; the gradient flows to the side that was taken."""
    cond = np.asarray(condition._data if isinstance(condition, Tensor) else condition)
    if cond.dtype != np.bool_:
        raise FreenetError(f"where: condition must be bool, not {cond.dtype}")
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = Tensor(a, dtype=np.float32 if isinstance(a, float) else None)
    a, b = pair(a, b)
    out = np.where(cond, a._data, b._data)
    return record(out, (a, b), lambda g: (np.where(cond, g, 0), np.where(cond, 0, g)), saved=())


def _integral(ufunc, name):
    def integral(a, b):
        """Elementwise, with Python's rounding towards minus infinity; no gradient (as in PyTorch)."""
        a, b = pair(a, b)
        return _constant(ufunc(a._data, b._data))

    integral.__name__ = integral.__qualname__ = name
    return op(integral)


floor_divide = _integral(np.floor_divide, "floor_divide")
remainder = _integral(np.remainder, "remainder")


def _raw(value):
    return value._data if isinstance(value, Tensor) else value


def _compare(ufunc):
    def compare(a, b):
        """Elementwise comparison: a bool tensor outside the graph."""
        return _constant(ufunc(_raw(a), _raw(b)))

    compare.__name__ = compare.__qualname__ = ufunc.__name__
    return op(compare)


lt, le, gt, ge, eq, ne = (_compare(u) for u in (np.less, np.less_equal, np.greater, np.greater_equal,
                                                  np.equal, np.not_equal))


def _logical(ufunc, name):
    def logical(a, b):
        """Elementwise on bool (or integer: bitwise) tensors; no gradient."""
        return _constant(ufunc(_raw(a), _raw(b)))

    logical.__name__ = logical.__qualname__ = name
    return op(logical)


logical_and = _logical(np.bitwise_and, "logical_and")
logical_or = _logical(np.bitwise_or, "logical_or")
logical_xor = _logical(np.bitwise_xor, "logical_xor")


@op
def logical_not(a):
    """``~a``: not for bool tensors, bitwise not for integers; no gradient."""
    if a._data.dtype.kind == "f":
        raise FreenetError("~: needs a bool or integer tensor, not float")
    return _constant(np.invert(a._data))
