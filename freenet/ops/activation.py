"""Activations that ``freenet.ops.unary`` does not have, forward beside derivative."""

from freenet import kernels
from freenet.errors import op
from freenet.tensor import record


@op
def silu(x):
    """x * sigmoid(x) (the swish); the derivative s * (1 + x (1 - s)) with s = sigmoid(x)."""
    s = kernels.sigmoid(x._data)
    return record(x._data * s, (x,), lambda g: (g * (s * (1 + x._data * (1 - s))),))
