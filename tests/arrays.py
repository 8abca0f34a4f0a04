"""Test inputs: values drawn from a seed, in a chosen domain and memory layout (contiguous or not)."""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import freenet as fn

LAYOUTS = ("contiguous", "transposed", "strided")

seeds = st.integers(0, 2**32 - 1)
layouts = st.sampled_from(LAYOUTS)


def shapes(min_dims=0, max_dims=4, min_side=0, max_side=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def values(shape, seed, domain="any"):
    """Contiguous float64 values; domains keep finite differences away from kinks and poles."""
    rng = np.random.default_rng(seed)
    v = rng.uniform(-2.0, 2.0, size=shape)
    if domain == "positive":
        v = np.abs(v) + 0.2
    elif domain == "nonzero":
        v = np.where(v >= 0, v + 0.2, v - 0.2)
    elif domain == "above-1":
        v = np.abs(v) - 0.8
    elif domain.startswith("away:"):  # away from the listed points, e.g. "away:-0.5,0.7"
        for point in map(float, domain[5:].split(",")):
            close = np.abs(v - point) < 0.05
            v = np.where(close, v + 0.1, v)
    return np.asarray(v)


def laid_out(v, layout):
    """The same values in a transposed or strided (non-contiguous) array, or as they are."""
    shape = v.shape
    if layout == "transposed" and len(shape) >= 2:
        base = np.empty(shape[::-1], dtype=v.dtype)
        out = base.T
    elif layout == "strided" and len(shape) >= 1:
        base = np.empty(shape[:-1] + (2 * shape[-1],), dtype=v.dtype)
        out = base[..., ::2]
    else:
        return v.copy()
    out[...] = v
    return out


def leaf(shape, seed, domain="any", layout="contiguous", dtype=np.float64):
    """A leaf tensor requiring grad over a (possibly non-contiguous) array, and its values."""
    v = laid_out(values(shape, seed, domain).astype(dtype), layout)
    return fn.from_numpy(v).requires_grad_(), v
