"""Initialisers that fill a tensor's array in place, as ``torch.nn.init`` does, and return the tensor.

Random ones take an optional ``generator`` (a ``numpy.random.Generator``); by default they draw
from freenet's generator, so ``freenet.manual_seed(s)`` makes them reproducible. Fans are
computed as in PyTorch: for a weight of shape (out, in, *kernel), fan_in = in * prod(kernel) and
fan_out = out * prod(kernel).

>>> import freenet as fn
>>> w = fn.empty(256, 128)
>>> _ = fn.nn.init.kaiming_normal_(w, nonlinearity="relu")
>>> abs(float(w.data.std()) - (2 / 128) ** 0.5) < 0.005
True
"""

import math

import numpy as np

from freenet.errors import FreenetError
from freenet.factory import default_generator
from freenet.tensor import Tensor

__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_", "xavier_uniform_",
           "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"]

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "sigmoid")


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity: 1 for linear/conv/sigmoid, 5/3 for tanh, sqrt(2) for
    relu, sqrt(2 / (1 + a^2)) for leaky_relu with negative slope ``param`` (default 0.01), 3/4 for selu."""
    if nonlinearity in _LINEAR:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise FreenetError(f"calculate_gain: negative_slope {param!r} is not a number")
        return math.sqrt(2.0 / (1 + slope * slope))  # a product, not the libm's pow: the same bits everywhere
    if nonlinearity == "selu":
        return 3.0 / 4
    raise FreenetError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _array(tensor, name):
    array = tensor.data if isinstance(tensor, Tensor) else tensor
    if not isinstance(array, np.ndarray):
        raise FreenetError(f"{name}: expected a Tensor or ndarray, not {type(tensor).__name__}")
    if array.dtype.kind != "f":
        raise FreenetError(f"{name}: can only fill float tensors, not {array.dtype}")
    return array


def calculate_fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) of a weight of at least 2 dims: (out, in, *kernel)."""
    shape = tensor.shape
    if len(shape) < 2:
        raise FreenetError(f"fan in and fan out need a tensor of at least 2 dims, got shape {tuple(shape)}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


_calculate_fan_in_and_fan_out = calculate_fan_in_and_fan_out  # PyTorch's name


def _fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise FreenetError(f"mode must be 'fan_in' or 'fan_out', not {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _fill(array, gen, normal):
    """Standard uniform [0, 1) or normal samples into ``array``, without a temporary when possible."""
    draw = gen.standard_normal if normal else gen.random
    if array.flags.c_contiguous and array.flags.writeable:
        draw(dtype=array.dtype, out=array)
    else:
        array[...] = draw(array.shape, dtype=array.dtype)


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Samples from U(a, b)."""
    array = _array(tensor, "uniform_")
    if array.size:
        _fill(array, default_generator() if generator is None else generator, normal=False)
        array *= b - a
        array += a
    return tensor


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Samples from N(mean, std^2)."""
    array = _array(tensor, "normal_")
    if array.size:
        _fill(array, default_generator() if generator is None else generator, normal=True)
        array *= std
        array += mean
    return tensor


def constant_(tensor, val):
    _array(tensor, "constant_")[...] = val
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio, 2010)."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)), generator)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """U(-b, b) with b = gain * sqrt(3 / fan) (He et al., 2015); ``a`` is the leaky_relu negative slope."""
    _array(tensor, "kaiming_uniform_")
    if 0 in tensor.shape:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """N(0, std^2) with std = gain / sqrt(fan)."""
    _array(tensor, "kaiming_normal_")
    if 0 in tensor.shape:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std, generator)
