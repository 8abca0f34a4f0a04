"""Exact GELU, x * Phi(x), and its derivative, with Phi(x) = erfc(-x / sqrt(2)) / 2.

Computed in float64 and rounded to the input's dtype, with freenet's own erfc and exp (no libm), so
the bits are the same on every CPU; float32 results are correctly rounded but for rare near-ties.
Elements go in fixed blocks over the threads (``prange``): each element's bits never depend on the split.
"""

import numpy as np
from numba import njit, prange

from freenet.kernels.elementary import exp_square_f64
from freenet.kernels.erf import erfc_f64

_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
CHUNK = 1 << 13  # elements per block: enough work per block to hide the launch


def _gelu_flat(x, out):
    for b in prange((x.size + CHUNK - 1) // CHUNK):
        for i in range(b * CHUNK, min(x.size, (b + 1) * CHUNK)):
            v = np.float64(x[i])
            out[i] = v * (0.5 * erfc_f64(-v * _SQRT_HALF))


def _gelu_backward_flat(x, g, out):
    for b in prange((x.size + CHUNK - 1) // CHUNK):
        for i in range(b * CHUNK, min(x.size, (b + 1) * CHUNK)):
            v = np.float64(x[i])
            cdf = 0.5 * erfc_f64(-v * _SQRT_HALF)
            out[i] = g[i] * (cdf + v * _INV_SQRT_2PI * exp_square_f64(v, -0.5))


gelu_flat = njit(cache=True, nogil=True, parallel=True, error_model="numpy")(_gelu_flat)
gelu_backward_flat = njit(cache=True, nogil=True, parallel=True, error_model="numpy")(_gelu_backward_flat)


def gelu(x):
    """GELU of a float array (any shape or strides); returns a new contiguous array."""
    x = np.asarray(x, order="C")  # keeps 0-d arrays 0-d, unlike ascontiguousarray
    out = np.empty_like(x)
    gelu_flat(x.reshape(-1), out.reshape(-1))
    return out


def gelu_backward(x, g):
    """The gradient of GELU at ``x`` times the incoming gradient ``g`` (same shape as ``x``)."""
    x = np.asarray(x, order="C")  # keeps 0-d arrays 0-d, unlike ascontiguousarray
    g = np.asarray(np.broadcast_to(g, x.shape), dtype=x.dtype, order="C")
    out = np.empty_like(x)
    gelu_backward_flat(x.reshape(-1), g.reshape(-1), out.reshape(-1))
    return out


def gelu_reference(x):
    from scipy.special import erfc

    v = np.asarray(x, dtype=np.float64)
    return (v * (0.5 * erfc(-v * _SQRT_HALF))).astype(np.asarray(x).dtype)


def gelu_backward_reference(x, g):
    from scipy.special import erfc

    v = np.asarray(x, dtype=np.float64)
    d = 0.5 * erfc(-v * _SQRT_HALF) + v * _INV_SQRT_2PI * np.exp(-0.5 * v * v)
    return (np.asarray(g, dtype=np.float64) * d).astype(np.asarray(x).dtype)
