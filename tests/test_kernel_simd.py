"""The register transpose (``simd.transpose_block``) against its NumPy twin, the filter-tap copies
built on it (``winograd.taps_by_tap``, ``taps_flipped``) against plain loops, and the Python forms
of the IR kernels (under NUMBA_DISABLE_JIT). The filter transform in registers (``filter_block``) is held to the generic
Winograd loops bit for bit in test_kernel_conv.py."""

import os
import subprocess
import sys

import numpy as np
from hypothesis import given, strategies as st
from numba import njit

from freenet.kernels import simd, winograd


@njit
def _transpose(src, start, stride, dst, out_offsets, n_out):  # the intrinsic runs inside compiled code
    simd.transpose_block(src, start, stride, dst, out_offsets, n_out)


@given(dtype=st.sampled_from([np.float32, np.float64]), data=st.data())
def test_transpose_block_matches_reference(dtype, data):
    lanes = 64 // np.dtype(dtype).itemsize
    stride = data.draw(st.integers(lanes, 3 * lanes))  # rows at least a vector apart
    start = data.draw(st.integers(0, 20))
    n_out = data.draw(st.integers(0, lanes))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    src = rng.standard_normal(start + stride * (lanes - 1) + lanes + data.draw(st.integers(0, 5))).astype(dtype)
    size = lanes * (lanes + 3)
    out_offsets = rng.permutation(lanes + 3)[:lanes].astype(np.int64) * lanes + data.draw(st.integers(0, 2))
    want = np.full(size + 2, -7, dtype)
    got = want.copy()
    simd.transpose_block_reference(src, start, stride, want, out_offsets, n_out)
    _transpose(src, start, stride, got, out_offsets, n_out)
    assert got.tobytes() == want.tobytes()  # the rows not asked for stay untouched too
    if n_out:
        column = [src[start + r * stride] for r in range(lanes)]  # the block's first column, by hand
        assert np.array_equal(got[out_offsets[0]:out_offsets[0] + lanes], column)


def _by_tap(w2, o0, no, i0, i1, gt):
    for o in range(no):
        for i in range(i0, i1):
            for tap in range(9):
                gt[tap, (i - i0) * no + o] = w2[o0 + o, 9 * i + tap]


def _flipped(w2, o0, no, i0, i1, gt):
    for i in range(i0, i1):
        for o in range(no):
            for tap in range(9):
                gt[8 - tap, (i - i0) * no + o] = w2[i, 9 * (o0 + o) + tap]


@given(dtype=st.sampled_from([np.float32, np.float64]), flip=st.booleans(), data=st.data())
def test_filter_taps_tap_major(dtype, flip, data):
    """Both copies, whole register blocks and the leftovers, up to the last row of the filter (where
    the flipped copy may not read past the array): bit for bit the plain loops."""
    K, C = data.draw(st.integers(1, 70)), data.draw(st.integers(1, 70))
    n_out = C if flip else K  # the copy's outputs: w's inputs when flipped
    n_in = K if flip else C
    o0 = data.draw(st.integers(0, n_out - 1))
    no = data.draw(st.integers(1, n_out - o0))
    i0 = data.draw(st.integers(0, n_in - 1))
    i1 = data.draw(st.integers(i0 + 1, n_in))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    w2 = rng.standard_normal((K, C * 9)).astype(dtype)
    want = np.full((9, (i1 - i0) * no + 5), -7, dtype)
    got = want.copy()
    (_flipped if flip else _by_tap)(w2, o0, no, i0, i1, want)
    (winograd.taps_flipped if flip else winograd.taps_by_tap)(w2, o0, no, i0, i1, got, np.empty(16, np.int64))
    assert got.tobytes() == want.tobytes()


def test_filter_taps_take_the_register_blocks():
    """The shapes of go9's halves use whole blocks (and the flipped copy of the last rows falls back
    to the loop instead of reading past the array): checked against the loops above."""
    rng = np.random.default_rng(0)
    w2 = rng.standard_normal((64, 64 * 9)).astype(np.float32)
    for flip, (o0, i0, i1) in ((False, (0, 0, 16)), (False, (32, 48, 64)), (True, (32, 48, 64)), (True, (0, 0, 16))):
        want = np.zeros((9, (i1 - i0) * 32), np.float32)
        got = np.ones_like(want)
        (_flipped if flip else _by_tap)(w2, o0, 32, i0, i1, want)
        (winograd.taps_flipped if flip else winograd.taps_by_tap)(w2, o0, 32, i0, i1, got, np.empty(16, np.int64))
        assert got.tobytes() == want.tobytes()


@njit
def _square(src, k, j, dst, row, col):
    simd.transpose_square(src, k, j, dst, row, col)


@given(dtype=st.sampled_from([np.float32, np.float64]), data=st.data())
def test_transpose_square_matches_its_python_form(dtype, data):
    """A block of a column-major array into rows of another (the GEMM's packing), nothing else written."""
    lanes = 64 // np.dtype(dtype).itemsize
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    rows, cols = (data.draw(st.integers(lanes, 3 * lanes)) for _ in range(2))
    src = np.asfortranarray(rng.standard_normal((rows, cols)).astype(dtype))
    k, j = data.draw(st.integers(0, rows - lanes)), data.draw(st.integers(0, cols - lanes))
    dst = np.full((lanes + 5, 2 * lanes + 3), -7, dtype)
    row, col = data.draw(st.integers(0, 5)), data.draw(st.integers(0, lanes + 3))
    want = dst.copy()
    simd._transpose_square_python(src, k, j, want, row, col)
    _square(src, k, j, dst, row, col)
    assert dst.tobytes() == want.tobytes()
    assert np.array_equal(dst[row:row + lanes, col:col + lanes], src[k:k + lanes, j:j + lanes])


_PYTHON_KERNELS = """
import numpy as np
from freenet.kernels import conv
rng = np.random.default_rng(0)
for split in (False, True):  # the Winograd units as they are, then each split in two kernel calls
    conv.KERNEL_SPLIT_WORK, conv.KERNEL_SPLIT_MIN = (0, 1) if split else (1 << 22, 16)
    conv._geometry_cached.cache_clear()
    for N, C, H, K in ((1, 32, 5, 32), (2, 16, 4, 16)):
        x = rng.standard_normal((N, C, H, H)).astype(np.float32)
        w = rng.standard_normal((K, C, 3, 3)).astype(np.float32)
        b = rng.standard_normal(K).astype(np.float32)
        y = conv.conv2d_forward(x, w, b, 1, 1)
        np.testing.assert_allclose(y, conv.conv2d_forward_reference(x, w, b, 1, 1), rtol=1e-4, atol=1e-3)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        gx, gw, gb = conv.conv2d_backward(gy, x, w, 1, 1, bias=True)
        np.testing.assert_allclose(gx, conv.conv2d_backward_input_reference(gy, w, x.shape, 1, 1), rtol=1e-4,
                                   atol=1e-3)
        np.testing.assert_allclose(gw, conv.conv2d_backward_weight_reference(gy, x, w.shape, 1, 1), rtol=1e-4,
                                   atol=1e-3)
print("ok")
"""


def test_kernels_run_as_python():
    """Under NUMBA_DISABLE_JIT=1 (to debug or measure coverage) the IR kernels are Python loops: the
    Winograd convolutions built on them (whole vectors of channels, small products, split calls)
    still give the reference's values."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    done = subprocess.run([sys.executable, "-c", _PYTHON_KERNELS], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
