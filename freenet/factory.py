"""Making tensors: from data, filled, ranges, and random from freenet's seeded generator."""

import numpy as np

from freenet.errors import FreenetError
from freenet.tensor import Tensor, _constant

_generator = np.random.Generator(np.random.PCG64(0))


def manual_seed(seed):
    """Seeds the generator behind ``rand``, ``randn`` and everything random in freenet."""
    global _generator
    _generator = np.random.Generator(np.random.PCG64(seed))


def default_generator():
    """The generator ``manual_seed`` sets (a ``numpy.random.Generator``)."""
    return _generator


def tensor(data, dtype=None, requires_grad=False):
    """A new tensor holding a copy of ``data``. Python floats become float32; NumPy arrays keep their dtype.

    >>> tensor([[1, 2], [3, 4]]).dtype
    dtype('int64')
    >>> tensor([0.5, 1.5], requires_grad=True)
    tensor([0.5, 1.5], requires_grad=True)
    """
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)


def from_numpy(array):
    """A tensor sharing memory with ``array`` (any strides), as ``torch.from_numpy``."""
    if not isinstance(array, np.ndarray):
        raise FreenetError(f"from_numpy: expected an ndarray, got {type(array).__name__}")
    return _constant(array)


def _size(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if any(not isinstance(n, (int, np.integer)) or n < 0 for n in size):
        raise FreenetError(f"size must be non-negative integers, got {size}")
    return tuple(int(n) for n in size)


def _dtype(dtype):
    return np.dtype(np.float32 if dtype is None else dtype)


def _finish(array, requires_grad):
    t = _constant(array)
    if requires_grad:
        t.requires_grad = True
    return t


def zeros(*size, dtype=None, requires_grad=False):
    return _finish(np.zeros(_size(size), dtype=_dtype(dtype)), requires_grad)


def ones(*size, dtype=None, requires_grad=False):
    return _finish(np.ones(_size(size), dtype=_dtype(dtype)), requires_grad)


def empty(*size, dtype=None, requires_grad=False):
    """Uninitialised memory: fill it before reading."""
    return _finish(np.empty(_size(size), dtype=_dtype(dtype)), requires_grad)


def full(size, fill_value, dtype=None, requires_grad=False):
    if dtype is None and isinstance(fill_value, (bool, int)):
        dtype = np.bool_ if isinstance(fill_value, bool) else np.int64
    return _finish(np.full(_size((size,)), fill_value, dtype=_dtype(dtype)), requires_grad)


def arange(start, end=None, step=1, dtype=None, requires_grad=False):
    """Evenly spaced values in [start, end); integer arguments give int64, floats give float32."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        exact = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = np.int64 if exact else np.float32
    return _finish(np.arange(start, end, step, dtype=dtype), requires_grad)


def rand(*size, dtype=None, requires_grad=False, generator=None):
    """Uniform samples in [0, 1)."""
    gen = generator or _generator
    return _finish(gen.random(_size(size), dtype=_dtype(dtype)), requires_grad)


def randn(*size, dtype=None, requires_grad=False, generator=None):
    """Standard normal samples."""
    gen = generator or _generator
    return _finish(gen.standard_normal(_size(size), dtype=_dtype(dtype)), requires_grad)


def _like(make):
    def like(t, dtype=None, requires_grad=False):
        return make(*t.shape, dtype=t.dtype if dtype is None else dtype, requires_grad=requires_grad)

    like.__name__ = make.__name__ + "_like"
    like.__doc__ = f"``{make.__name__}`` with the shape (and by default the dtype) of ``t``."
    return like


zeros_like, ones_like, empty_like, rand_like, randn_like = map(_like, (zeros, ones, empty, rand, randn))


def full_like(t, fill_value, dtype=None, requires_grad=False):
    return full(t.shape, fill_value, dtype=t.dtype if dtype is None else dtype, requires_grad=requires_grad)
