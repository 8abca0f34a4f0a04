"""The conv2d kernels against their NumPy twins, the adjoint identities, and thread-count determinism."""

import contextlib
import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st

from freenet.kernels import conv
from freenet.kernels.layout import channels_last
from freenet.kernels.parallel import get_num_threads, set_num_threads

# Error bound: |fast - exact| <= TOL * (sum of |terms|), the sum of absolute products that make up
# an output (the same reduction run on |inputs|), which grows with the reduction. Winograd
# F(m x m, 3x3) computes an m x m output tile (or the 3x3 taps of a weight gradient) jointly, so an
# element's rounding error follows the largest magnitude among its neighbours: the bound takes the
# maximum of that magnitude over the element's (2m - 1) x (2m - 1) neighbourhood (3x3 outside
# Winograd; over the taps for a filter).
TOL = {np.float32: 2e-5, np.float64: 1e-12}
# Winograd per tile size m. Measured (random shapes, C 8..64, H, W 1..19, padding 0..3; forward,
# input and weight gradient; the largest error / bound ratio over 300 shapes): float32 F(2x2)
# 3.3e-7, F(3x3) 1.7e-6, F(4x4) 5.4e-6; float64 6.5e-16, 3.2e-15, 5.9e-15. The bounds: 4-6x those.
WINO_TOL = {np.float32: {2: 2e-6, 3: 1e-5, 4: 3e-5}, np.float64: {2: 4e-15, 3: 2e-14, 4: 4e-14}}


def _spread(mag, kind, tile=2):
    mag = mag.astype(np.float64)
    if kind == "filter":  # (K, C, kh, kw): the largest tap of each filter
        return np.broadcast_to(mag.max(axis=(2, 3), keepdims=True), mag.shape)
    if kind == "image":  # (N, C, H, W): the largest value in each (2 tile - 1)^2 neighbourhood
        h, s = tile - 1, 2 * tile - 1
        p = np.pad(mag, ((0, 0), (0, 0), (h, h), (h, h)))
        H, W = mag.shape[2:]
        return np.max([p[:, :, i:i + H, j:j + W] for i in range(s) for j in range(s)], axis=0)
    return mag


def _close(fast, ref, mag, dtype, kind=None, tile=None):
    """``fast`` within the bound of ``ref``; ``tile``: computed by Winograd F(tile x tile, 3x3)."""
    assert fast.dtype == np.dtype(dtype)
    assert fast.shape == ref.shape
    err = np.abs(fast.astype(np.float64) - ref.astype(np.float64))
    tol = TOL[dtype] if tile is None else WINO_TOL[dtype][tile]
    bound = tol * (_spread(mag, kind, tile or 2) + 1e-30)
    worst = np.max(err - bound) if err.size else 0.0
    assert worst <= 0, f"max error {err.max():.3g} exceeds bound (max excess {worst:.3g})"


@st.composite
def conv_cases(draw):
    G = draw(st.integers(1, 3))
    Cg, Kg = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    H = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 11))
    W = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 11))
    N = draw(st.integers(1, 3))
    layout = draw(st.sampled_from(["contiguous", "channels_last", "strided"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**31 - 1))
    # Stride and padding as ints when square, to cover both spellings.
    stride = sh if sh == sw else (sh, sw)
    padding = ph if ph == pw else (ph, pw)
    return dict(N=N, C=G * Cg, H=H, W=W, K=G * Kg, kh=kh, kw=kw, stride=stride, padding=padding,
                dilation=(dh, dw), groups=G, layout=layout, dtype=dtype, seed=seed)


@st.composite
def winograd_cases(draw):
    """3x3, stride 1, undilated, one group, at least WINO_MIN_CHANNELS inputs: the Winograd path.

    ``tile``: F(tile x tile, 3x3) forced on every Winograd call (conv.WINO_TILE), or None: the rule's.
    """
    p = draw(st.integers(0, 3))  # padding 3: the input gradient's correlation has padding -1
    H = draw(st.integers(max(1, 3 - 2 * p), 13))
    W = draw(st.integers(max(1, 3 - 2 * p), 13))
    C = draw(st.integers(conv.WINO_MIN_CHANNELS, conv.WINO_MIN_CHANNELS + 16))
    # K from WINO_MIN_CHANNELS: the input gradient (K inputs) takes Winograd too
    K = draw(st.one_of(st.integers(1, 12),
                       st.integers(conv.WINO_MIN_CHANNELS, conv.WINO_MIN_CHANNELS + 8)))
    return dict(N=draw(st.integers(1, 3)), C=C, H=H, W=W, K=K, kh=3, kw=3,
                stride=1, padding=p, dilation=1, groups=1, tile=draw(st.sampled_from([None, 2, 3, 4])),
                layout=draw(st.sampled_from(["contiguous", "channels_last", "strided"])),
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                seed=draw(st.integers(0, 2**31 - 1)))


@st.composite
def im2col_cases(draw):
    """More taps than COL_MAX_TAPS and not the Winograd case: the channels-last im2col path."""
    G = draw(st.integers(1, 2))
    Cg = draw(st.integers(conv.COL_MAX_TAPS // 4 + 1, conv.COL_MAX_TAPS // 4 + 4))
    kh, kw = draw(st.integers(2, 4)), draw(st.integers(2, 4))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    if (kh, kw, sh, sw, dh, dw, G) == (3, 3, 1, 1, 1, 1, 1):
        dw = 2
    H = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 10))
    W = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 10))
    return dict(N=draw(st.integers(1, 2)), C=G * Cg, H=H, W=W, K=G * draw(st.integers(1, 5)), kh=kh, kw=kw,
                stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=G,
                layout=draw(st.sampled_from(["contiguous", "channels_last", "strided"])),
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                seed=draw(st.integers(0, 2**31 - 1)))


@st.composite
def column_cases(draw):
    """Few taps, one group (C * kh * kw <= COL_MAX_TAPS): the column path, whose forward sums the
    taps in passes of nine, three and one."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    C = draw(st.integers(1, max(1, conv.COL_MAX_TAPS // (kh * kw))))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    H = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 12))
    W = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 12))
    return dict(N=draw(st.integers(1, 3)), C=C, H=H, W=W, K=draw(st.integers(1, 5)), kh=kh, kw=kw,
                stride=(draw(st.integers(1, 2)), draw(st.integers(1, 2))), padding=(ph, pw), dilation=(dh, dw),
                groups=1, layout=draw(st.sampled_from(["contiguous", "channels_last", "strided"])),
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                seed=draw(st.integers(0, 2**31 - 1)))


@st.composite
def split_cases(draw):
    """Winograd cases of one unit run as two kernel calls of output channels each (``_wino_split``,
    ``_wino_grad_split``; forced at any size by ``_forced_tile``): more than 16 output channels and
    inputs, so that the forward, input gradient and weight gradient each split in two."""
    case = draw(winograd_cases())
    case.update(C=draw(st.integers(17, 40)), K=draw(st.integers(17, 40)), N=draw(st.integers(1, 2)), split=True)
    return case


CASES = pytest.mark.parametrize("cases", [conv_cases, winograd_cases, split_cases, im2col_cases, column_cases],
                                ids=["general", "winograd", "split", "im2col", "columns"])


@contextlib.contextmanager
def _forced_tile(case):
    """Run with the case's Winograd tile size forced (when it has one), and with ``split`` the
    kernel split whatever the work (plans are cached per shape: the cache is cleared around it)."""
    before = conv.WINO_TILE, conv.KERNEL_SPLIT_WORK, conv.KERNEL_SPLIT_MIN
    conv.WINO_TILE = case.get("tile")
    if case.get("split"):
        conv.KERNEL_SPLIT_WORK, conv.KERNEL_SPLIT_MIN = 0, 1
        conv._geometry_cached.cache_clear()
    try:
        yield
    finally:
        conv.WINO_TILE, conv.KERNEL_SPLIT_WORK, conv.KERNEL_SPLIT_MIN = before
        if case.get("split"):
            conv._geometry_cached.cache_clear()


def _tile(case, out_shape, C_in):
    """The Winograd tile size of a stride-1 3x3 correlation of C_in channels to ``out_shape``, or None
    (not Winograd)."""
    if not (case["kh"] == case["kw"] == 3 and case["stride"] == 1 and case["dilation"] == 1
            and case["groups"] == 1 and C_in >= conv.WINO_MIN_CHANNELS):
        return None
    return case.get("tile") or conv._wino_tile_size(*out_shape[2:])


def test_strategies_take_their_paths():
    g = conv._geometry((2, conv.WINO_MIN_CHANNELS, 5, 5), (3, conv.WINO_MIN_CHANNELS, 3, 3), 1, 1, 1, 1)
    assert conv._winograd(g) and not conv._columns_path(g)
    for C, K, tile in ((17, 17, 2), (40, 33, 4), (20, 30, None)):  # split_cases' extremes: both ways split
        with _forced_tile(dict(split=True, tile=tile)):
            for x_shape, w_shape in (((2, C, 7, 7), (K, C, 3, 3)), ((2, K, 7, 7), (C, K, 3, 3))):
                g = conv._geometry(x_shape, w_shape, 1, 1, 1, 1)
                m = conv._wino_tile(g)
                assert conv._plan(g, 4, wino=conv._wino_cap(g), tile=m).kernel_split
                assert conv._plan(g, 4, max_tasks=conv.MAX_SUM_TASKS, wino=conv._wino_cap(g), tile=m).kernel_split
    g = conv._geometry((1, 64, 9, 9), (64, 64, 3, 3), 1, 1, 1, 1)  # go9-b1, by the rule
    assert conv._plan(g, 4, wino=conv._wino_cap(g), tile=3).kernel_split
    assert conv._split_channels(64) == ((0, 32), (32, 64))
    c = conv.COL_MAX_TAPS // 4 + 1
    g = conv._geometry((2, c, 6, 6), (3, c, 2, 2), 1, 1, 1, 1)
    assert not conv._winograd(g) and not conv._columns_path(g)
    g = conv._geometry((2, 3, 6, 6), (3, 3, 3, 3), 1, 1, 1, 1)
    assert conv._columns_path(g)


def test_output_layouts():
    """Every path returns channels-last outputs (the next convolution reads them without a
    transposition), and the input gradient of stride 1 too, except the column path of few taps
    (NCHW). Values do not depend on it."""
    rng = np.random.default_rng(0)
    cases = [((2, 16, 9, 9), (8, 16, 3, 3), 1, 1, True),    # Winograd
             ((2, 40, 9, 9), (8, 40, 1, 1), 1, 0, True),    # pointwise
             ((2, 16, 9, 9), (8, 16, 3, 3), 2, 1, True),    # im2col, strided
             ((2, 1, 9, 9), (8, 1, 3, 3), 2, 1, False),     # columns, strided
             ((2, 1, 9, 9), (8, 1, 3, 3), 1, 1, False)]     # columns
    for x_shape, w_shape, stride, pad, rows in cases:  # rows: channels-last output
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        y = conv.conv2d_forward(x, w, None, stride, pad)
        assert channels_last(y) == rows, (w_shape, stride)
        assert y.flags.c_contiguous != rows
        np.testing.assert_allclose(y, conv.conv2d_forward_reference(x, w, None, stride, pad), rtol=1e-4, atol=1e-4)
        gx = conv.conv2d_backward_input(np.ones_like(y), w, x_shape, stride, pad)
        assert channels_last(gx) == (stride == 1 and w_shape[1] > 1)  # (column path: NCHW)
        assert conv.Conv2dPrepared(w, None, stride, pad)(x).tobytes() == y.tobytes()


def test_forward_calls_known_by_their_arrays():
    """After its first call, a one-unit Winograd split (go9 at batch 1) is found by its arrays' shapes,
    strides and dtypes: later calls give the bits of the full path for new values, and calls that
    differ in layout, dtype, bias, geometry or an unhashable argument take their own way."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 64, 9, 9)).astype(np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) / 24).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    conv._KNOWN_SPLITS.clear()
    first = conv.conv2d_forward(x, w, b, 1, 1)
    assert len(conv._KNOWN_SPLITS) == 1
    x2 = rng.standard_normal(x.shape).astype(np.float32)
    known = conv.conv2d_forward(x2, w, b, 1, 1)
    conv._KNOWN_SPLITS.clear()
    assert known.tobytes() == conv.conv2d_forward(x2, w, b, 1, 1).tobytes()
    assert channels_last(known) and not known.tobytes() == first.tobytes()
    nhwc = np.ascontiguousarray(x2.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    variants = [(nhwc, w, b, 1, 1), (x2.astype(np.float64), w, b, 1, 1), (x2, w, None, 1, 1),
                (x2, w, b, 1, [1, 1]), (x2, w, b, 1, 0), (x2[:, ::-1], w, b, 1, 1)]
    for args in variants:
        for _ in range(2):  # a first call (that may make the entry), then one that may use it
            y = conv.conv2d_forward(*args)
            want = conv.conv2d_forward_reference(*args)
            assert y.shape == want.shape and y.dtype == np.result_type(args[0], w)
            np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    assert conv.conv2d_forward(nhwc, w, b, 1, 1).tobytes() == known.tobytes()


def test_winograd_tile_rule():
    """The tile sizes the rule picks for the benchmark shapes (measured fastest; see conv._wino_tile)."""
    for hw, m in [(9, 3), (14, 3), (19, 4), (32, 4), (2, 2), (1, 2)]:
        for C in (64, 128):
            g = conv._geometry((4, C, hw, hw), (C, C, 3, 3), 1, 1, 1, 1)
            assert conv._wino_tile(g) == conv._wino_tile(g, grad=True) == m, (hw, C)
    assert conv._wino_cap(conv._geometry((4, 64, 9, 9), (64, 64, 3, 3), 1, 1, 1, 1)) == 240
    assert conv._wino_cap(conv._geometry((4, 128, 9, 9), (128, 128, 3, 3), 1, 1, 1, 1)) == 61


def test_unrolled_winograd_transforms_are_the_generated_file_and_give_the_generic_bits():
    """kernels/winograd_transforms.py is what winograd_gen.py writes, and its unrolled transforms give
    bit for bit what the generic loops over the matrices give (every tile size, both tile kinds,
    the output transform with tiles cut at the edges, each with channels that fill whole vectors
    and channels that do not, the filter transform both ways, the weight gradient's inverse
    transform, both float dtypes)."""
    from numba import njit

    from freenet.kernels import winograd, winograd_gen, winograd_transforms as unrolled_kernels

    with open(winograd_gen.PATH) as f:
        assert f.read() == winograd_gen.source(), "run: python kernels/winograd_gen.py"
    tiles, output, filter_grad, filter_ = (njit(f) for f in (winograd._wino_tiles, winograd._wino_output,
                                                             winograd._wino_filter_grad, winograd._wino_filter))
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        for m, (BT, _, AT) in winograd.WINOGRAD.items():
            a = m + 2
            lanes = 64 // np.dtype(dt).itemsize  # channels of one vector: the unrolled kernels' vector paths
            for (unrolled, Bm), C in itertools.product(((unrolled_kernels.TILES_IN[m], BT),
                                                        (unrolled_kernels.TILES_GY[m], AT.T)), (5, 2 * lanes)):
                Bm = np.ascontiguousarray(Bm, dt)
                nb, tile_rows, tw = 3, 2, 3
                r = Bm.shape[1]
                xs = rng.standard_normal((nb, m * tile_rows + r - m, m * tw + r - m, C)).astype(dt)
                T = nb * tile_rows * tw
                want, got = np.zeros((a * a, T + 1, C), dt), np.zeros((a * a, T + 1, C), dt)
                tmp = np.empty(a * xs.shape[2] * C, dt)
                tiles(xs, m, tw, T, Bm, want, tmp)
                unrolled(xs, m, tw, T, Bm, got, tmp)
                assert want.tobytes() == got.tobytes(), (dt, m, r)
            for K in (7, lanes):
                Ho, Wo = 2 * m - 1, 3 * m - 1  # the last tile row and column cut short
                M = rng.standard_normal((a * a, 2 * 2 * 3, K)).astype(dt)
                want, got = np.zeros((2 * Ho * Wo, K + 3), dt), np.ones((2 * Ho * Wo, K + 3), dt)
                ATd, tmp = np.ascontiguousarray(AT, dt), np.empty(m * a * K, dt)
                output(M, m, 3, ATd, 0, Ho, Wo, want, 2, tmp)  # columns 2 .. K + 1 of K + 3
                getattr(unrolled_kernels, f"output_{m}")(M, m, 3, ATd, 0, Ho, Wo, got, 2, tmp)
                assert want[:, 2:K + 2].tobytes() == got[:, 2:K + 2].tobytes(), (dt, m, K)
                assert (got[:, :2] == 1).all() and (got[:, K + 2:] == 1).all(), (dt, m, K)  # others untouched
            # the weight gradient's inverse transform: output channels 4..14 of 20, in chunks of 50 (k, c)
            # pairs (the last one short), S with more rows than those channels
            C, kk = 37, 11
            S = rng.standard_normal((a * a, kk + 3, C)).astype(dt)
            Gd = np.ascontiguousarray(winograd.WINOGRAD[m][1], dt)
            gt, ht = np.empty((9, 50), dt), np.empty((3 * a, 50), dt)
            want, got = np.zeros((20, C, 3, 3), dt), np.ones((20, C, 3, 3), dt)
            filter_grad(S, Gd, 4, 4 + kk, want, gt, ht)
            unrolled_kernels.FILTER_GRAD[m](S, Gd, 4, 4 + kk, got, gt, ht)
            assert want[4:4 + kk].tobytes() == got[4:4 + kk].tobytes(), (dt, m)
            assert (got[:4] == 1).all() and (got[4 + kk:] == 1).all(), (dt, m)
            # the filter transform: output channels 3..11 of 14 (flipped: of w's inputs), in chunks of 4
            # input channels (40 // 9), the last one short, into planes with more rows than inputs
            for flip in (False, True):
                w = rng.standard_normal((9, 14, 3, 3) if flip else (14, 9, 3, 3)).astype(dt)
                want, got = np.zeros((a * a, 11, 9), dt), np.ones((a * a, 11, 9), dt)
                gt, ht = np.empty((9, 40), dt), np.empty((3, 40), dt)
                filter_(w, flip, 3, 12, Gd, want, gt, ht)
                unrolled_kernels.FILTER[m](w, flip, 3, 12, Gd, got, gt, ht)
                assert want[:, :9].tobytes() == got[:, :9].tobytes(), (dt, m, flip)
                assert (got[:, 9:] == 1).all(), (dt, m, flip)


def _array(rng, shape, dtype, layout):
    """A random array of ``shape`` as a C-contiguous, transposed (NHWC-backed) or strided view."""
    if layout == "channels_last" and len(shape) == 4:
        return rng.standard_normal((shape[0], shape[2], shape[3], shape[1])).astype(dtype).transpose(0, 3, 1, 2)
    if layout == "strided":
        big = rng.standard_normal(tuple(2 * s for s in shape)).astype(dtype)
        return big[tuple(slice(None, None, 2) for _ in shape)]
    return rng.standard_normal(shape).astype(dtype)


def _make(case):
    rng = np.random.default_rng(case["seed"])
    dt, lay = case["dtype"], case["layout"]
    x = _array(rng, (case["N"], case["C"], case["H"], case["W"]), dt, lay)
    w = _array(rng, (case["K"], case["C"] // case["groups"], case["kh"], case["kw"]), dt, lay)
    b = _array(rng, (case["K"],), dt, lay)
    args = (case["stride"], case["padding"], case["dilation"], case["groups"])
    y_shape = conv.conv2d_output_shape(x.shape, w.shape, *args)
    gy = _array(rng, y_shape, dt, lay)
    return x, w, b, gy, args


@CASES
@given(data=st.data())
def test_forward_matches_reference(cases, data):
    case = data.draw(cases())
    x, w, b, _, args = _make(case)
    use_bias = case["seed"] % 2 == 0
    with _forced_tile(case):
        y = conv.conv2d_forward(x, w, b if use_bias else None, *args)
    ref = conv.conv2d_forward_reference(np.asarray(x, np.float64), np.asarray(w, np.float64),
                                        np.asarray(b, np.float64) if use_bias else None, *args)
    mag = conv.conv2d_forward_reference(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64),
                                        np.abs(b).astype(np.float64) if use_bias else None, *args)
    _close(y, ref, mag, case["dtype"], "image", _tile(case, y.shape, x.shape[1]))


@CASES
@given(data=st.data())
def test_prepared_forward_gives_the_same_bits(cases, data):
    """Conv2dPrepared (weights transformed once) is conv2d_forward, plus the residual add and ReLU."""
    case = data.draw(cases())
    x, w, b, _, args = _make(case)
    bias = b if case["seed"] % 2 == 0 else None
    prepared = conv.Conv2dPrepared(w, bias, *args)
    w[...] = 0  # a snapshot: later changes to the weights do not leak in
    with _forced_tile(case):
        y = conv.conv2d_forward(x, prepared.w, bias, *args)
        assert prepared(x).tobytes() == y.tobytes()
        r = np.random.default_rng(case["seed"]).standard_normal(y.shape).astype(y.dtype)
        assert prepared(x, residual=r, relu=True).tobytes() == np.maximum(y + r, 0).tobytes()
        # another input size (maybe another tile size: U prepared per tile size) and back
        if case.get("tile") is None and x.shape[2] + 5 <= 40:
            x2 = np.pad(x, ((0, 0), (0, 0), (0, 5), (0, 5)))
            assert prepared(x2).tobytes() == conv.conv2d_forward(x2, prepared.w, bias, *args).tobytes()
            assert prepared(x).tobytes() == y.tobytes()


def test_prepared_forward_errors_and_threads():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="bias shape"):
        conv.Conv2dPrepared(np.ones((4, 3, 3, 3), np.float32), np.ones(5, np.float32))
    prepared = conv.Conv2dPrepared(rng.standard_normal((64, 64, 3, 3), dtype=np.float32), padding=1)
    with pytest.raises(ValueError, match="input shape"):
        prepared(np.ones((1, 3, 9, 9), np.float32))
    with pytest.raises(ValueError, match="residual shape"):
        prepared(np.ones((1, 64, 9, 9), np.float32), residual=np.ones((1, 64, 9, 8), np.float32))
    x = rng.standard_normal((256, 64, 9, 9), dtype=np.float32)  # big enough for several tasks
    before = get_num_threads()
    try:
        set_num_threads(1)
        one = prepared(x, relu=True)
        set_num_threads(2)
        two = prepared(x, relu=True)
    finally:
        set_num_threads(before)
    assert one.tobytes() == two.tobytes()


@CASES
@given(data=st.data())
def test_backward_input_matches_reference(cases, data):
    case = data.draw(cases())
    x, w, _, gy, args = _make(case)
    with _forced_tile(case):
        gx = conv.conv2d_backward_input(gy, w, x.shape, *args)
    g64, w64 = np.asarray(gy, np.float64), np.asarray(w, np.float64)
    ref = conv.conv2d_backward_input_reference(g64, w64, x.shape, *args)
    mag = conv.conv2d_backward_input_reference(np.abs(g64), np.abs(w64), x.shape, *args)
    _close(gx, ref, mag, case["dtype"], "image", _tile(case, gx.shape, gy.shape[1]))


@CASES
@given(data=st.data())
def test_backward_weight_matches_reference(cases, data):
    case = data.draw(cases())
    x, w, _, gy, args = _make(case)
    with _forced_tile(case):
        gw = conv.conv2d_backward_weight(gy, x, w.shape, *args)
        gw2, gb = conv.conv2d_backward_weight(gy, x, w.shape, *args, bias=True)
    g64, x64 = np.asarray(gy, np.float64), np.asarray(x, np.float64)
    ref = conv.conv2d_backward_weight_reference(g64, x64, w.shape, *args)
    mag = conv.conv2d_backward_weight_reference(np.abs(g64), np.abs(x64), w.shape, *args)
    for got in (gw, gw2):
        _close(got, ref, mag, case["dtype"], "filter", _tile(case, gy.shape, x.shape[1]))
    # the bias gradient made beside it (summed in the weight gradient's pass, on the fast paths)
    assert gb.shape == (w.shape[0],) and gb.dtype == gw.dtype
    _close(gb, conv.conv2d_backward_bias_reference(g64), conv.conv2d_backward_bias_reference(np.abs(g64)),
           case["dtype"])


@CASES
@given(data=st.data())
def test_backward_bias_matches_reference(cases, data):
    case = data.draw(cases())
    _, _, _, gy, _ = _make(case)
    gb = conv.conv2d_backward_bias(gy)
    ref = conv.conv2d_backward_bias_reference(np.asarray(gy, np.float64))
    mag = conv.conv2d_backward_bias_reference(np.abs(np.asarray(gy, np.float64)))
    _close(gb, ref, mag, case["dtype"])


@CASES
@given(data=st.data())
def test_backward_kernels_are_adjoints_of_forward(cases, data):
    """<conv(x, w), gy> = <x, conv_bwd_input(gy, w)> = <w, conv_bwd_weight(gy, x)>, in float64."""
    case = dict(data.draw(cases()), dtype=np.float64)
    x, w, b, gy, args = _make(case)
    with _forced_tile(case):
        y = conv.conv2d_forward(x, w, None, *args)
        gx = conv.conv2d_backward_input(gy, w, x.shape, *args)
        gw = conv.conv2d_backward_weight(gy, x, w.shape, *args)
        yb = conv.conv2d_forward(x, w, b, *args) - y
    lhs = np.vdot(y, gy)
    scale = np.vdot(np.abs(y), np.abs(gy)) + 1e-300
    assert abs(lhs - np.vdot(x, gx)) <= 1e-12 * scale
    assert abs(lhs - np.vdot(w, gw)) <= 1e-12 * scale
    # and the bias: <bias broadcast over pixels, gy> = <bias, bias gradient>, either way it is made
    with _forced_tile(case):
        gw2, gb2 = conv.conv2d_backward_weight(gy, x, w.shape, *args, bias=True)
    assert abs(lhs - np.vdot(w, gw2)) <= 1e-12 * scale
    for gb in (conv.conv2d_backward_bias(gy), gb2):
        assert abs(np.vdot(yb, gy) - np.vdot(b, gb)) <= 1e-12 * (np.vdot(np.abs(yb), np.abs(gy)) + 1e-300)


@CASES
@given(data=st.data(), asked=st.sampled_from([(True, True, True), (True, True, False), (True, False, True),
                                             (False, True, True), (False, False, True)]))
def test_backward_gives_the_separate_kernels_bits(cases, data, asked):
    """conv2d_backward: the gradients asked for, each bit for bit what its own kernel gives (split
    Winograd cases run both at once, one per thread: ``_joint_backward``), None for the others."""
    case = data.draw(cases())
    x, w, _, gy, args = _make(case)
    want_input, want_weight, want_bias = asked
    with _forced_tile(case):
        got = conv.conv2d_backward(gy, x, w, *args, input=want_input, weight=want_weight, bias=want_bias)
        if want_weight:  # (with the bias gradient or without: the column path's GEMM differs)
            weight = conv.conv2d_backward_weight(gy, x, w.shape, *args, bias=want_bias)
            weight = weight if want_bias else (weight, None)
        else:
            weight = (None, conv.conv2d_backward_bias(gy))
        apart = (conv.conv2d_backward_input(gy, w, x.shape, *args) if want_input else None, *weight)
        joint = conv._joint_backward(gy, x, w, *args, want_bias) is not None
    assert joint == bool(case.get("split"))
    for mine, theirs, asked_for in zip(got, apart, asked):
        if not asked_for:
            assert mine is None
        else:
            assert mine.dtype == theirs.dtype and mine.strides == theirs.strides
            assert mine.tobytes() == theirs.tobytes()


def test_reference_matches_direct_sum():
    """The twins themselves against a literal 7-deep loop, on one small strided, dilated, grouped case."""
    rng = np.random.default_rng(1)
    N, C, H, W, K, G, kh, kw = 2, 4, 7, 6, 6, 2, 3, 2
    s, p, d = (2, 1), (1, 2), (2, 1)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((K, C // G, kh, kw))
    Ho, Wo = conv.conv2d_output_shape(x.shape, w.shape, s, p, d, G)[2:]
    y = np.zeros((N, K, Ho, Wo))
    for n in range(N):
        for k in range(K):
            g = k // (K // G)
            for c in range(C // G):
                for i in range(kh):
                    for j in range(kw):
                        for oh in range(Ho):
                            for ow in range(Wo):
                                ih, iw = oh * s[0] - p[0] + i * d[0], ow * s[1] - p[1] + j * d[1]
                                if 0 <= ih < H and 0 <= iw < W:
                                    y[n, k, oh, ow] += w[k, c, i, j] * x[n, g * (C // G) + c, ih, iw]
    np.testing.assert_allclose(conv.conv2d_forward_reference(x, w, None, s, p, d, G), y, rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(conv.conv2d_forward(x, w, None, s, p, d, G), y, rtol=1e-12, atol=1e-12)


# Shapes big enough to be cut into several units and tasks (so threads matter), including the
# benchmark shapes at small batch: (N, C, H, W, K, kernel, stride, padding, dilation, groups).
DETERMINISM_CASES = [
    (24, 64, 9, 9, 64, 3, 1, 1, 1, 1),     # go9 at batch 24 (Winograd F(3x3))
    (1, 64, 9, 9, 64, 3, 1, 1, 1, 1),      # go9-b1: two kernel calls of 32 output channels each
    (16, 64, 9, 9, 64, 3, 1, 1, 1, 1),     # go9-b16: split under SMALL_PARALLEL_WORK's rule
    (1, 256, 19, 19, 256, 3, 1, 1, 1, 1),  # go19-256-b1: one image cut by output channel (F(4x4))
    (3, 128, 19, 19, 128, 3, 1, 1, 1, 1),  # go19 at batch 3: images cut into tile rows (F(4x4))
    (3, 64, 32, 32, 64, 3, 1, 1, 1, 1),    # cifar at batch 3 (F(4x4))
    (24, 32, 14, 14, 64, 3, 1, 1, 1, 1),   # mnist-c2 at batch 24 (F(3x3))
    (16, 128, 9, 9, 128, 3, 1, 1, 1, 1),   # go9-128 at batch 16: F(3x3), 61-tile units
    (512, 64, 2, 2, 64, 3, 1, 1, 1, 1),    # 2x2 outputs: F(2x2)
    (64, 1, 28, 28, 32, 3, 1, 1, 1, 1),    # mnist-c1 at batch 64: the column path
    (64, 1, 24, 24, 16, 5, 1, 2, 1, 1),    # 25 taps: the column forward's passes of nine, three and one
    (8, 64, 24, 24, 96, 3, 2, 1, 1, 1),    # strided: col2im input gradient
    (10, 96, 16, 16, 96, 3, 1, 2, 2, 3),   # dilated, grouped
    (16, 128, 16, 16, 128, 1, 1, 0, 1, 1),  # 1x1: no im2col
    (1, 128, 14, 14, 128, 5, 1, 2, 1, 1),  # im2col, one image cut by output channel
    (64, 48, 10, 10, 40, 3, 1, 0, 1, 1),   # Winograd with odd output sizes, unpadded (F(4x4))
    (40, 48, 13, 11, 40, 3, 1, 0, 1, 1),   # 11x9 outputs: F(3x3) with a partial tile column
]


def test_determinism_cases_take_every_tile_size():
    tiles = {conv._wino_tile(conv._geometry((N, C, H, W), (K, C, k, k), s, p, d, G))
             for N, C, H, W, K, k, s, p, d, G in DETERMINISM_CASES if k == 3 and s == d == G == 1}
    assert tiles == {2, 3, 4}


@pytest.mark.parametrize("case", DETERMINISM_CASES, ids=lambda c: "x".join(map(str, c)))
def test_bitwise_identical_with_1_and_2_threads(case):
    N, C, H, W, K, k, s, p, d, G = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    w = rng.standard_normal((K, C // G, k, k), dtype=np.float32)
    b = rng.standard_normal(K, dtype=np.float32)
    gy = rng.standard_normal(conv.conv2d_output_shape(x.shape, w.shape, s, p, d, G), dtype=np.float32)

    geom = conv._geometry(x.shape, w.shape, s, p, d, G)
    split = conv._winograd(geom) and conv._plan(geom, 4, wino=conv._wino_cap(geom),
                                                 tile=conv._wino_tile(geom)).kernel_split
    assert geom.work >= conv.SMALL_PARALLEL_WORK or split  # several tasks: threads matter

    def run():
        return (conv.conv2d_forward(x, w, b, s, p, d, G),
                conv.conv2d_backward_input(gy, w, x.shape, s, p, d, G),
                conv.conv2d_backward_weight(gy, x, w.shape, s, p, d, G),
                conv.conv2d_backward_bias(gy),
                *conv.conv2d_backward_weight(gy, x, w.shape, s, p, d, G, bias=True),
                *conv.conv2d_backward(gy, x, w, s, p, d, G, bias=True))

    before = get_num_threads()
    try:
        set_num_threads(1)
        one = run()
        set_num_threads(2)
        two = run()
        again = run()
    finally:
        set_num_threads(before)
    for a, b2, c in zip(one, two, again):
        assert a.tobytes() == b2.tobytes()
        assert a.tobytes() == c.tobytes()
    # Channels-last inputs (as the outputs are) give the same bits, with any threads: only the
    # packing differs. (Except where the GEMM itself reads gy in the other layout: the column path's
    # weight gradient, and the bias gradient, summed in another order; those agree to rounding.)
    x_cl, gy_cl = (np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2) for a in (x, gy))
    columns = conv._columns_path(conv._geometry(x.shape, w.shape, s, p, d, G))
    try:
        cls = []
        for threads in (1, 2):
            set_num_threads(threads)
            cls.append((conv.conv2d_forward(x_cl, w, b, s, p, d, G),
                        conv.conv2d_backward_input(gy_cl, w, x.shape, s, p, d, G),
                        conv.conv2d_backward_weight(gy_cl, x_cl, w.shape, s, p, d, G),
                        conv.conv2d_backward_bias(gy_cl),
                        *conv.conv2d_backward_weight(gy_cl, x_cl, w.shape, s, p, d, G, bias=True),
                        *conv.conv2d_backward(gy_cl, x_cl, w, s, p, d, G, bias=True)))
    finally:
        set_num_threads(before)
    for a, c1, c2 in zip(one, *cls):
        assert c1.tobytes() == c2.tobytes()
    for i, (a, c) in enumerate(zip(one, cls[0])):
        if i in (3, 5, 8) or (i in (2, 4, 7) and columns):
            np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-3)
        else:
            assert a.tobytes() == c.tobytes()
    # and the fast kernels are right on these shapes too
    ref = conv.conv2d_forward_reference(x.astype(np.float64), w.astype(np.float64), b, s, p, d, G)
    mag = conv.conv2d_forward_reference(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64),
                                        np.abs(b), s, p, d, G)
    tile = conv._wino_tile(geom) if conv._winograd(geom) else None
    _close(one[0], ref, mag, np.float32, "image", tile)
    ref = conv.conv2d_backward_weight_reference(gy.astype(np.float64), x.astype(np.float64), w.shape,
                                                s, p, d, G)
    mag = conv.conv2d_backward_weight_reference(np.abs(gy).astype(np.float64),
                                                np.abs(x).astype(np.float64), w.shape, s, p, d, G)
    _close(one[2], ref, mag, np.float32, "filter", tile and conv._wino_tile(geom, grad=True))


def test_dtypes_and_int_or_pair_arguments():
    rng = np.random.default_rng(2)
    for dt in (np.float32, np.float64):
        x = rng.standard_normal((2, 3, 8, 7)).astype(dt)
        w = rng.standard_normal((5, 3, 3, 3)).astype(dt)
        y1 = conv.conv2d_forward(x, w, None, 2, 1, 1)
        y2 = conv.conv2d_forward(x, w, None, (2, 2), [1, 1], (1, 1))
        assert y1.dtype == dt and y1.shape == (2, 5, 4, 4)
        assert y1.tobytes() == y2.tobytes()
        gy = rng.standard_normal(y1.shape).astype(dt)
        assert conv.conv2d_backward_input(gy, w, x.shape, 2, 1, 1).dtype == dt
        assert conv.conv2d_backward_weight(gy, x, w.shape, 2, 1, 1).dtype == dt
        assert conv.conv2d_backward_bias(gy).dtype == dt


@pytest.mark.parametrize("x_shape, w_shape, kwargs, match", [
    ((2, 3, 8, 8), (4, 2, 3, 3), {}, r"weight shape \(4, 2, 3, 3\).*input shape \(2, 3, 8, 8\)"),
    ((2, 6, 8, 8), (4, 3, 3, 3), {"groups": 4}, r"groups=4 does not divide the 6 input channels"),
    ((2, 6, 8, 8), (4, 2, 3, 3), {"groups": 3}, r"groups=3 does not divide the 4 output channels"),
    ((2, 3, 2, 8), (4, 3, 3, 3), {}, r"output size 0x6 <= 0 for input shape \(2, 3, 2, 8\)"),
    ((2, 3, 8, 8), (4, 3, 3, 3), {"dilation": 4}, r"output size -0x0|output size .* <= 0"),
    ((2, 3, 8), (4, 3, 3, 3), {}, r"input must be 4-D"),
    ((2, 3, 8, 8), (4, 3, 3, 3), {"stride": 0}, r"stride must be >= 1"),
    ((2, 3, 8, 8), (4, 3, 3, 3), {"padding": -1}, r"padding must be >= 0"),
    ((2, 3, 8, 8), (4, 3, 3, 3), {"stride": (1, 2, 3)}, r"stride must be an int or a pair"),
])
def test_shape_errors(x_shape, w_shape, kwargs, match):
    x = np.zeros(x_shape, np.float32)
    w = np.zeros(w_shape, np.float32)
    with pytest.raises(ValueError, match=match):
        conv.conv2d_forward(x, w, **kwargs)
    with pytest.raises(ValueError, match=match):
        conv.conv2d_forward_reference(x, w, **kwargs)


def test_gradient_and_bias_shape_errors():
    x = np.zeros((2, 3, 8, 8), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    gy = np.zeros((2, 4, 7, 7), np.float32)  # the output is 6x6
    with pytest.raises(ValueError, match=r"output gradient shape \(2, 4, 7, 7\).*\(2, 4, 6, 6\)"):
        conv.conv2d_backward_input(gy, w, x.shape, 1, 0, 1, 1)
    with pytest.raises(ValueError, match=r"output gradient shape \(2, 4, 7, 7\).*\(2, 4, 6, 6\)"):
        conv.conv2d_backward_weight(gy, x, w.shape, 1, 0, 1, 1)
    with pytest.raises(ValueError, match=r"bias shape \(3,\)"):
        conv.conv2d_forward(x, w, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"must be 4-D"):
        conv.conv2d_backward_bias(np.zeros((2, 4, 6), np.float32))
    with pytest.raises(TypeError, match=r"float32 or float64"):
        conv.conv2d_forward(x.astype(np.int64), w.astype(np.int64))


def test_empty_batch():
    x = np.zeros((0, 3, 8, 8), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    gy = np.zeros((0, 4, 6, 6), np.float32)
    assert conv.conv2d_forward(x, w).shape == (0, 4, 6, 6)
    assert conv.conv2d_backward_input(gy, w, x.shape, 1, 0, 1, 1).shape == x.shape
    gw = conv.conv2d_backward_weight(gy, x, w.shape, 1, 0, 1, 1)
    assert gw.shape == w.shape and not gw.any()
    gb = conv.conv2d_backward_bias(gy)
    assert gb.shape == (4,) and not gb.any()


@pytest.mark.parametrize("channels_per_block", [1, 5, None])  # None: S_BLOCK_BYTES as set
def test_channel_split_weight_gradient_in_blocks_of_channels(channels_per_block):
    """A one-image Winograd weight gradient split by output channel sums S over blocks of its
    channels (the last block short when the channels do not divide): right whatever the block."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 128, 19, 19), dtype=np.float32)
    gy = rng.standard_normal((1, 128, 19, 19), dtype=np.float32)
    g = conv._geometry(x.shape, (128, 128, 3, 3), 1, 1, 1, 1)
    m = conv._wino_tile(g, grad=True)
    assert conv._plan(g, 4, max_tasks=conv.MAX_SUM_TASKS, wino=conv._wino_cap(g), tile=m).channel_split
    before = conv.S_BLOCK_BYTES
    if channels_per_block:
        conv.S_BLOCK_BYTES = channels_per_block * (m + 2) ** 2 * 128 * 4
    try:
        gw, gb = conv.conv2d_backward_weight(gy, x, (128, 128, 3, 3), 1, 1, bias=True)
    finally:
        conv.S_BLOCK_BYTES = before
    ref = conv.conv2d_backward_weight_reference(gy.astype(np.float64), x.astype(np.float64), (128, 128, 3, 3), 1, 1)
    mag = conv.conv2d_backward_weight_reference(np.abs(gy).astype(np.float64), np.abs(x).astype(np.float64),
                                                (128, 128, 3, 3), 1, 1)
    _close(gw, ref, mag, np.float32, "filter", m)
    np.testing.assert_allclose(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("x_shape, w_shape", [
    ((256, 64, 9, 9), (64, 64, 3, 3)), ((128, 64, 32, 32), (64, 64, 3, 3)), ((128, 32, 14, 14), (64, 32, 3, 3)),
    ((256, 128, 9, 9), (128, 128, 3, 3)), ((64, 128, 19, 19), (128, 128, 3, 3)), ((16, 64, 9, 9), (64, 64, 3, 3)),
    ((128, 1, 28, 28), (32, 1, 3, 3)), ((100, 3, 20, 20), (16, 3, 5, 5)), ((7, 16, 30, 30), (8, 16, 3, 3))])
@pytest.mark.parametrize("max_tasks", [conv.MAX_TASKS, conv.MAX_SUM_TASKS])
def test_plans_of_whole_images_give_every_task_the_same_work(x_shape, w_shape, max_tasks):
    """Threads take tasks in turn: tasks of whole images hold as many images (+-1), every unit no more
    than the cap, and together every image once, in order."""
    g = conv._geometry(x_shape, w_shape, 1, 1, 1, 1)
    wino = conv._wino_cap(g) if conv._winograd(g) else 0
    tile = conv._wino_tile(g) if wino else 2
    plan = conv._plan(g, 4, max_tasks=max_tasks, wino=wino, tile=tile)
    units = [u for task in plan.tasks for u in task]
    assert len(plan.tasks) <= max_tasks
    if plan.channel_split or any(u[2:4] != units[0][2:4] for u in units):
        return  # (rows of images, or channel blocks: other rules)
    assert [u[0] for u in units] == [0] + [u[1] for u in units[:-1]] and units[-1][1] == x_shape[0]
    images = [sum(u[1] - u[0] for u in task) for task in plan.tasks]
    assert max(images) - min(images) <= 1, images
    assert len(plan.tasks) in (1, x_shape[0]) or len(plan.tasks) % 2 == 0
    rows, width = (-(-g.Ho // tile), -(-g.Wo // tile)) if wino else (g.Ho, g.Wo)
    cap = wino or max(conv.MIN_ROWS, conv.UNIT_BYTES // (g.kh * g.kw * g.Cg * 4))
    assert all((u[1] - u[0]) * rows * width <= cap or u[1] - u[0] == 1 for u in units)
