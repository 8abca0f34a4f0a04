"""Initialisers that fill a tensor's array in place, as ``torch.nn.init`` does, and return the tensor.

Random ones take an optional ``generator`` (a ``numpy.random.Generator``); by default they draw
from freenet's generator, so ``freenet.manual_seed(s)`` makes them reproducible. Fans are
computed as in PyTorch: for a weight of shape (out, in, *kernel), fan_in = in * prod(kernel) and
fan_out = out * prod(kernel).

>>> import freenet as fn
>>> w = fn.empty(256, 128)
>>> _ = fn.nn.init.kaiming_normal_(w, nonlinearity="relu")
>>> abs(float(w.std()) - (2 / 128) ** 0.5) < 0.005
True
"""

import math

import numpy as np

from freenet.errors import FreenetError
from freenet.factory import default_generator
from freenet.tensor import Tensor

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_", "xavier_uniform_",
           "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_"]

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
    array = tensor._data if isinstance(tensor, Tensor) else tensor
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


def _bounds_in(dtype, a, b):
    """The smallest and largest values of ``dtype`` within [a, b] (a float32 may round outside it)."""
    lo, hi = dtype.type(a), dtype.type(b)
    if float(lo) < a:  # compared as Python floats: NumPy would compare a float32 with a in float32
        lo = np.nextafter(lo, dtype.type(np.inf))
    if float(hi) > b:
        hi = np.nextafter(hi, dtype.type(-np.inf))
    return lo, hi


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Samples from N(mean, std^2) conditioned on [a, b] (absolute bounds, as in PyTorch): every value
    lies in [a, b], with the truncated normal's distribution.

    When [a, b] holds the mean and at least one std (then most normal samples fall inside; the usual
    case), out-of-range samples are drawn again: the bits then depend on NumPy's generator alone.
    Otherwise (a narrow or far-off interval) it inverts the normal CDF, in logarithms so that far
    tails neither underflow nor lose precision (SciPy's log_ndtr and ndtri_exp), on the side of the
    mean where the CDF is small. Values are computed in float64, then rounded to the tensor's dtype
    and kept within [a, b] in that dtype.
    """
    array = _array(tensor, "trunc_normal_")
    mean, std, a, b = float(mean), float(std), float(a), float(b)
    if not (math.isfinite(mean) and math.isfinite(std) and std >= 0):
        raise FreenetError(f"trunc_normal_: mean must be finite and std finite and >= 0, got {mean}, {std}")
    if not a < b:
        raise FreenetError(f"trunc_normal_: needs a < b, got a={a}, b={b}")
    lo, hi = _bounds_in(array.dtype, a, b)
    if not lo <= hi:
        raise FreenetError(f"trunc_normal_: no {array.dtype} value lies in [{a}, {b}]")
    if not array.size:
        return tensor
    gen = default_generator() if generator is None else generator
    if std == 0:
        z = np.full(array.shape, min(max(mean, a), b))
    else:
        # in units of std from the mean; capped so that an infinite bound (or an overflow) stays finite
        alpha, beta = (min(max(x, -1e150), 1e150) for x in ((a - mean) / std, (b - mean) / std))
        if alpha <= 0 <= beta and beta - alpha >= 1:  # acceptance >= Phi(1) - Phi(0) = 0.34
            z = gen.standard_normal(array.shape)
            out = (z < alpha) | (z > beta)
            while out.any():
                redrawn = gen.standard_normal(int(out.sum()))
                z[out] = redrawn
                out[out] = (redrawn < alpha) | (redrawn > beta)
        else:
            from scipy.special import log_ndtr, ndtri_exp  # only here: SciPy takes time to import

            flip = alpha > 0  # sample the mirror image [-beta, -alpha] instead: then beta < 1
            if flip:
                alpha, beta = -beta, -alpha
            log_low, log_high = float(log_ndtr(alpha)), float(log_ndtr(beta))
            # log(Phi(alpha) + (1 - u) (Phi(beta) - Phi(alpha))) for u uniform in [0, 1)
            z = ndtri_exp(log_high + np.log1p(gen.random(array.shape) * math.expm1(log_low - log_high)))
            if flip:
                np.negative(z, out=z)
        z *= std
        z += mean
    array[...] = np.clip(z.astype(array.dtype), lo, hi)
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


def _orthonormalize_rows(v, block=32):
    """Gram-Schmidt on the rows of ``v`` (float64, rows <= columns), in place, a block of rows at a time.

    A block first loses its components along the rows before it, twice (once is not enough in
    floating point: Giraud et al., 2005); then within the block each row loses its components along
    the block's rows before it, twice, and is scaled to unit length. The result is the Q of a QR
    factorisation whose R has a positive diagonal, as PyTorch's orthogonal_ makes it (by LAPACK's QR
    and a sign fix). Not LAPACK here: its bits depend on the BLAS, the CPU and the thread count. The
    products between blocks go through freenet's GEMM, whose bits do not (unless FREENET_MATMUL=blas),
    and the rest is plain NumPy arithmetic; so a seed gives the same matrix everywhere.
    """
    for start in range(0, v.shape[0], block):
        rows, done = v[start:start + block], v[:start]
        if start:
            from freenet.kernels.gemm import matmul  # compiled on first use: only matrices this large need it

            done_t = np.ascontiguousarray(done.T)
            for _ in range(2):
                rows -= matmul(matmul(rows, done_t), done)
        for j in range(rows.shape[0]):
            row, before = rows[j], rows[:j]
            for _ in range(2 if j else 0):
                row -= ((before * row).sum(axis=1)[:, None] * before).sum(axis=0)
            row /= math.sqrt((row * row).sum())
    return v


def orthogonal_(tensor, gain=1.0, generator=None):
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al., 2014), uniformly distributed (Haar) as in
    PyTorch: the tensor, seen as a matrix of shape (size(0), numel / size(0)), gets orthonormal rows
    if it has fewer rows than columns and orthonormal columns otherwise.
    """
    array = _array(tensor, "orthogonal_")
    if array.ndim < 2:
        raise FreenetError(f"orthogonal_: needs a tensor of at least 2 dims, got shape {tuple(array.shape)}")
    if not array.size:
        return tensor
    rows = array.shape[0]
    cols = array.size // rows
    gen = default_generator() if generator is None else generator
    flat = gen.standard_normal((rows, cols))
    if rows < cols:
        q = _orthonormalize_rows(flat)
    else:
        q = _orthonormalize_rows(np.ascontiguousarray(flat.T)).T
    q *= gain
    array[...] = q.reshape(array.shape)
    return tensor
