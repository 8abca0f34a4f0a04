"""Making tensors: from data, filled, ranges, and random from freenet's seeded generator."""

import numpy as np

from freenet import devices as _device
from freenet.errors import FreenetError
from freenet.tensor import Tensor, _constant

_generator = np.random.Generator(np.random.PCG64(0))


def manual_seed(seed):
    """Seeds the generator behind ``rand``, ``randn`` and everything random in freenet, and returns it."""
    global _generator
    _generator = np.random.Generator(np.random.PCG64(seed))
    return _generator


def default_generator():
    """The generator ``manual_seed`` sets (a ``numpy.random.Generator``)."""
    return _generator


class Generator(np.random.Generator):
    """A seedable source of randomness to pass as ``generator=``, as ``torch.Generator``: a NumPy PCG64
    generator (so anything taking a ``numpy.random.Generator`` takes it too)."""

    def __init__(self, device="cpu"):
        _device.check(device)
        self._seed = 67280421310721  # PyTorch's default seed
        super().__init__(np.random.PCG64(self._seed))

    def manual_seed(self, seed):
        self._seed = int(seed)
        self.bit_generator.state = np.random.PCG64(self._seed).state
        return self

    def initial_seed(self):
        return self._seed


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of ``data``. Python floats become float32; NumPy arrays keep their dtype.

    >>> tensor([[1, 2], [3, 4]]).dtype
    dtype('int64')
    >>> tensor([0.5, 1.5], requires_grad=True)
    tensor([0.5, 1.5], requires_grad=True)
    """
    _device.check(device)
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


def _finish(array, requires_grad, device=None):
    _device.check(device)
    t = _constant(array)
    if requires_grad:
        t.requires_grad = True
    return t


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _finish(np.zeros(_size(size), dtype=_dtype(dtype)), requires_grad, device)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _finish(np.ones(_size(size), dtype=_dtype(dtype)), requires_grad, device)


def empty(*size, dtype=None, device=None, requires_grad=False):
    """Uninitialised memory: fill it before reading."""
    return _finish(np.empty(_size(size), dtype=_dtype(dtype)), requires_grad, device)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    if dtype is None and isinstance(fill_value, (bool, int)):
        dtype = np.bool_ if isinstance(fill_value, bool) else np.int64
    return _finish(np.full(_size((size,)), fill_value, dtype=_dtype(dtype)), requires_grad, device)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """Evenly spaced values in [start, end); integer arguments give int64, floats give float32."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        exact = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = np.int64 if exact else np.float32
    return _finish(np.arange(start, end, step, dtype=dtype), requires_grad, device)


def rand(*size, dtype=None, device=None, requires_grad=False, generator=None):
    """Uniform samples in [0, 1)."""
    gen = generator or _generator
    return _finish(gen.random(_size(size), dtype=_dtype(dtype)), requires_grad, device)


def randn(*size, dtype=None, device=None, requires_grad=False, generator=None):
    """Standard normal samples."""
    gen = generator or _generator
    return _finish(gen.standard_normal(_size(size), dtype=_dtype(dtype)), requires_grad, device)


def _like(make):
    def like(t, dtype=None, device=None, requires_grad=False):
        return make(*t.shape, dtype=t.dtype if dtype is None else dtype, device=device, requires_grad=requires_grad)

    like.__name__ = make.__name__ + "_like"
    like.__doc__ = f"``{make.__name__}`` with the shape (and by default the dtype) of ``t``."
    return like


zeros_like, ones_like, empty_like, rand_like, randn_like = map(_like, (zeros, ones, empty, rand, randn))


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    return full(t.shape, fill_value, dtype=t.dtype if dtype is None else dtype, device=device,
                requires_grad=requires_grad)


def randint(low, high=None, size=None, generator=None, dtype=None, device=None, requires_grad=False):
    """Integers drawn uniformly from [low, high) (``randint(high, size)`` starts at 0); int64 by default."""
    if size is None:  # randint(high, size)
        low, high, size = 0, low, high
    if size is None:
        raise FreenetError("randint: give a size, e.g. randint(0, 10, (3,))")
    if high <= low:
        raise FreenetError(f"randint: needs low < high, got {low} and {high}")
    gen = generator or _generator
    array = gen.integers(low, high, _size((size,)), dtype=np.int64).astype(np.int64 if dtype is None else dtype)
    return _finish(array, requires_grad, device)


def randperm(n, generator=None, dtype=None, device=None, requires_grad=False):
    """A random permutation of 0 .. n-1 (int64)."""
    gen = generator or _generator
    return _finish(gen.permutation(int(n)).astype(np.int64 if dtype is None else dtype), requires_grad, device)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive (float32 by default)."""
    return _finish(np.linspace(start, end, int(steps), dtype=np.float64).astype(_dtype(dtype)), requires_grad,
                   device)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    return _finish(np.eye(int(n), None if m is None else int(m), dtype=_dtype(dtype)), requires_grad, device)


def multinomial(input, num_samples, replacement=False, generator=None):
    """Indices drawn with probabilities proportional to the rows of ``input`` (1-d or 2-d, non-negative
    weights), with or without replacement, as ``torch.multinomial``; int64."""
    weights = np.asarray(input._data if isinstance(input, Tensor) else input, dtype=np.float64)
    rows = weights.reshape(-1, weights.shape[-1]) if weights.ndim else weights.reshape(1, 1)
    if weights.ndim not in (1, 2) or (rows < 0).any() or not np.isfinite(rows).all():
        raise FreenetError("multinomial: input must be 1-d or 2-d with finite, non-negative weights")
    if (rows.sum(axis=1) <= 0).any():
        raise FreenetError("multinomial: a row of weights sums to zero")
    if not replacement and num_samples > (rows > 0).sum(axis=1).min():
        raise FreenetError(f"multinomial: cannot draw {num_samples} samples without replacement from "
                           f"{int((rows > 0).sum(axis=1).min())} non-zero weights")
    gen = generator or _generator
    out = np.stack([gen.choice(rows.shape[1], size=num_samples, replace=replacement, p=row / row.sum())
                    for row in rows]).astype(np.int64)
    return _constant(out if weights.ndim == 2 else out[0])
