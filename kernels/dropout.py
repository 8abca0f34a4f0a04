"""Dropout with a counter-based generator: element i's keep/drop decision depends only on
(seed, i), never on how the work is split across threads.

Element i (its position in C order of the logical shape, whatever the input's strides) draws
``h = mix64(key + i * GOLDEN)`` with ``key = mix64(seed + GOLDEN)`` and mix64 the SplitMix64
finaliser: the i-th output of a SplitMix64 stream started at key. The element is dropped when the top
32 bits of h fall below ``round(p * 2**32)``, so P(drop) = p to within 2**-33. Kept elements are
scaled by 1 / (1 - p), rounded to the input's dtype.
"""

import operator

import numpy as np
from numba import njit, prange

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_MASK64 = (1 << 64) - 1
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
CHUNK = 1 << 14  # elements per block; fixed, not per thread (and irrelevant to the bits anyway)


def _mix64(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def _dropout_flat(x, key, threshold, scale, y, mask):
    size = x.shape[0]
    for b in prange((size + CHUNK - 1) // CHUNK):
        lo = b * CHUNK
        hi = min(lo + CHUNK, size)
        xb = x[lo:hi]
        yb = y[lo:hi]
        mb = mask[lo:hi]
        base = key + np.uint64(lo) * GOLDEN
        for i in range(hi - lo):
            h = mix64(base + np.uint64(i) * GOLDEN)
            keep = (h >> _S32) >= threshold
            mb[i] = keep
            yb[i] = xb[i] * scale if keep else 0


def _dropout_backward_flat(gy, mask, scale, gx):
    size = gy.shape[0]
    for b in prange((size + CHUNK - 1) // CHUNK):
        lo = b * CHUNK
        hi = min(lo + CHUNK, size)
        gb = gy[lo:hi]
        mb = mask[lo:hi]
        ob = gx[lo:hi]
        for i in range(hi - lo):
            ob[i] = gb[i] * scale if mb[i] else 0


mix64 = njit(cache=True)(_mix64)
dropout_flat = njit(cache=True, parallel=True)(_dropout_flat)
dropout_backward_flat = njit(cache=True, parallel=True)(_dropout_backward_flat)


def _check_p(fn, p):
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{fn}: dropout probability p must be in [0, 1), got {p}")
    return p


def _key(seed):
    seed = operator.index(seed) & _MASK64
    with np.errstate(over="ignore"):
        return _mix64(np.uint64(seed) + GOLDEN)


def _threshold(p):
    return np.uint64(min(round(p * 2.0 ** 32), 1 << 32))


def dropout_forward(x, p, seed):
    """Returns ``(y, mask)``: mask (bool, shape of x) marks kept elements, y = x * mask / (1 - p)."""
    fn = "dropout_forward"
    p = _check_p(fn, p)
    x = np.asarray(x)
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: expected float32 or float64 input, got {x.dtype}")
    xf = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(xf)
    mask = np.empty(xf.shape, dtype=np.bool_)
    dropout_flat(xf, _key(seed), _threshold(p), x.dtype.type(1.0 / (1.0 - p)), y, mask)
    return y.reshape(x.shape), mask.reshape(x.shape)


def dropout_backward(gy, mask, p):
    """Gradient of ``dropout_forward``: gy * mask / (1 - p)."""
    fn = "dropout_backward"
    p = _check_p(fn, p)
    gy, mask = np.asarray(gy), np.asarray(mask)
    if gy.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: expected float32 or float64 gradient, got {gy.dtype}")
    if mask.shape != gy.shape:
        raise ValueError(f"{fn}: mask has shape {mask.shape}, gradient has shape {gy.shape}")
    gf = np.ascontiguousarray(gy).reshape(-1)
    gx = np.empty_like(gf)
    dropout_backward_flat(gf, np.ascontiguousarray(mask, dtype=np.bool_).reshape(-1),
                          gy.dtype.type(1.0 / (1.0 - p)), gx)
    return gx.reshape(gy.shape)


# ----------------------------------------------------------------------------------------------
# NumPy reference twins


def dropout_mask_reference(shape, p, seed):
    """The keep mask for an array of ``shape``: whole-array uint64 arithmetic (wraps mod 2**64)."""
    p = _check_p("dropout_mask_reference", p)
    i = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.uint64)
    h = _mix64(_key(seed) + i * GOLDEN)
    return ((h >> _S32) >= _threshold(p)).reshape(shape)


def dropout_forward_reference(x, p, seed):
    x = np.asarray(x)
    mask = dropout_mask_reference(x.shape, p, seed)
    return np.where(mask, x * x.dtype.type(1.0 / (1.0 - p)), 0).astype(x.dtype), mask


def dropout_backward_reference(gy, mask, p):
    gy = np.asarray(gy)
    return np.where(mask, gy * gy.dtype.type(1.0 / (1.0 - p)), 0).astype(gy.dtype)
