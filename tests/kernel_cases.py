"""Shared by the kernel tests: arrays in several memory layouts, thread-count switching, tolerances."""

import numpy as np
from hypothesis import strategies as st

from freenet.kernels.parallel import get_num_threads, set_num_threads

DTYPES = [np.float32, np.float64]
LAYOUTS = ["c", "transposed", "strided"]


def make_array(rng, shape, dtype, layout, scale=1.0, offset=0.0):
    """Normal(offset, scale) values of ``shape``: C-contiguous, transposed (channels-last for
    3+ dims, column-major for 2) or strided (every other element of a wider array)."""
    def draw(s):
        return (rng.standard_normal(s) * scale + offset).astype(dtype)

    if layout == "transposed" and len(shape) >= 2:
        if len(shape) == 2:
            return draw(shape[::-1]).T
        return np.moveaxis(draw(shape[:1] + shape[2:] + shape[1:2]), -1, 1)
    if layout == "strided" and len(shape) >= 1:
        return draw(shape[:-1] + (2 * shape[-1],))[..., ::2]
    return draw(shape)


def with_threads(n, fn):
    old = get_num_threads()
    set_num_threads(n)
    try:
        return fn()
    finally:
        set_num_threads(old)


def assert_same_bits(a, b):
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert u.dtype == v.dtype and u.shape == v.shape
        assert u.tobytes() == v.tobytes()


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


# Batch-norm shaped inputs (N, C, ...) with at least two values per channel.
norm_shapes = st.one_of(
    st.tuples(st.integers(2, 9), st.integers(1, 6)),  # BatchNorm1d (N, C)
    st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 20)),  # (N, C, L)
    st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 7), st.integers(1, 7)),
    # many channels: several channels share a block (a partial block at the end)
    st.tuples(st.integers(2, 5), st.integers(9, 45)),
    st.tuples(st.integers(1, 3), st.integers(9, 30), st.integers(1, 3), st.integers(1, 4)),
    # planes wider than the 512 accumulator lanes
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(500, 1300)),
).filter(lambda s: s[0] * int(np.prod(s[2:])) >= 2)
