"""2-D max, average and global average pooling over NCHW arrays (float32 or float64).

Inputs are (N, C, H, W) or (C, H, W). Every kernel works plane by plane: a ``prange`` over the N*C
(n, c) planes (or fixed blocks of 8 planes sharing scratch memory), each plane computed start to
finish by one thread, so results do not depend on the thread count. Sums are accumulated in float64
and rounded once to the input's dtype. Padding must be at most half the kernel size (as PyTorch);
there is no ceil_mode.

``max_pool2d_forward`` returns, with the pooled values, the index ``h * W + w`` of each window's
maximum within its (n, c) input plane (as PyTorch's ``return_indices``). On ties the first maximum in
row-major window order wins; a NaN wins over any number and over earlier NaNs (as PyTorch: a window
with NaNs gives NaN, indexed at its last NaN). A window that holds no input element at all (possible
only with dilation) gives -inf and index -1, and no gradient.
"""

import numpy as np
from numba import njit, prange

from freenet.kernels.layout import channels_last, from_nhwc_rows, nhwc_rows
from freenet.kernels.norm import acc_sum, lane_total

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ----------------------------------------------------------------------------------------------
# Argument handling shared by kernels and reference twins


def _pair(v, name):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
        a, b = v
    else:
        a = b = v
    try:
        return int(a), int(b)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}") from None


def _as_planes(x, fn):
    """(N, C, H, W) or (C, H, W) float array -> contiguous (N*C, H, W) view/copy and the lead shape."""
    x = np.asarray(x)
    if x.ndim not in (3, 4):
        raise ValueError(f"{fn}: expected input of shape (N, C, H, W) or (C, H, W), got {x.shape}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: expected float32 or float64 input, got {x.dtype}")
    lead = x.shape[:-2]
    planes = np.ascontiguousarray(x).reshape((-1,) + x.shape[-2:])
    return planes, lead


def _pool_geometry(fn, x_shape, kernel_size, stride, padding, dilation=1):
    """Validated ((kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow)) for an input of ``x_shape``."""
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    p = _pair(padding, "padding")
    d = _pair(dilation, "dilation")
    if min(k) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise ValueError(f"{fn}: need kernel_size, stride, dilation >= 1 and padding >= 0, got "
                         f"kernel_size={k}, stride={s}, padding={p}, dilation={d}")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{fn}: padding {p} must be at most half of kernel_size {k}")
    h, w = x_shape[-2], x_shape[-1]
    span = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
    if span[0] > h + 2 * p[0] or span[1] > w + 2 * p[1]:
        raise ValueError(f"{fn}: kernel_size {k} with dilation {d} spans {span}, larger than the "
                         f"padded input {(h + 2 * p[0], w + 2 * p[1])} (input {tuple(x_shape)}, "
                         f"padding {p})")
    out = ((h + 2 * p[0] - span[0]) // s[0] + 1, (w + 2 * p[1] - span[1]) // s[1] + 1)
    return k, s, p, d, out


def _inside_offsets(size, k, s, p, d, out):
    """For each output position o: the window offsets lo[o] <= i < hi[o] whose input position
    o * s - p + i * d lies in [0, size)."""
    start = np.arange(out, dtype=np.int64) * s - p
    lo = np.maximum(0, -(start // d))  # ceil(-start / d)
    hi = np.minimum(k, -((start - size) // d))  # ceil((size - start) / d)
    return lo, hi


def _check_shape(fn, name, shape):
    shape = tuple(int(v) for v in shape)
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise ValueError(f"{fn}: {name} must be (N, C, H, W) or (C, H, W) with positive sizes, "
                         f"got {shape}")
    return shape


def _grad_planes(fn, gy, out_shape_expected):
    gy = np.asarray(gy)
    if gy.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: expected float32 or float64 gradient, got {gy.dtype}")
    if gy.shape != out_shape_expected:
        raise ValueError(f"{fn}: gradient has shape {gy.shape}, expected {out_shape_expected}")
    return np.ascontiguousarray(gy).reshape((-1,) + gy.shape[-2:])


# ----------------------------------------------------------------------------------------------
# Numba kernels


def _max_pool_plane(x, y, idx, sh, sw, ph, pw, dh, dw, i_lo, i_hi, j_lo, j_hi):
    """One (n, c) plane: x (H, W) -> y, idx (OH, OW). Window offsets i_lo[oh] <= i < i_hi[oh],
    j_lo[ow] <= j < j_hi[ow] land inside the input (precomputed: integer division is slow)."""
    height, width = x.shape
    out_h, out_w = y.shape
    xf = x.reshape(height * width)
    row_step = dh * width
    for oh in range(out_h):
        h0 = oh * sh - ph
        ilo = i_lo[oh]
        rows = i_hi[oh] - ilo
        for ow in range(out_w):
            jlo = j_lo[ow]
            cols = j_hi[ow] - jlo
            if rows <= 0 or cols <= 0:
                y[oh, ow] = -np.inf
                idx[oh, ow] = -1
                continue
            first = (h0 + ilo * dh) * width + ow * sw - pw + jlo * dw
            best = xf[first]
            where = first
            for i in range(rows):
                k = first + i * row_step
                for j in range(cols):
                    v = xf[k]
                    take = (v > best) | (v != v)
                    best = v if take else best
                    where = k if take else where
                    k += dw
            y[oh, ow] = best
            idx[oh, ow] = where


def _max_pool_2x2_plane(x, y, idx):
    """``_max_pool_plane`` for 2x2 windows, stride 2, no padding or dilation (most CNNs): the four
    candidates in the same order (row-major), with the same rule for ties and NaN."""
    width = x.shape[1]
    out_h, out_w = y.shape
    for oh in range(out_h):
        r0 = x[2 * oh]
        r1 = x[2 * oh + 1]
        yr = y[oh]
        ir = idx[oh]
        base = 2 * oh * width
        for ow in range(out_w):
            j = 2 * ow
            best = r0[j]
            where = base + j
            v = r0[j + 1]
            take = (v > best) | (v != v)
            best = v if take else best
            where = base + j + 1 if take else where
            v = r1[j]
            take = (v > best) | (v != v)
            best = v if take else best
            where = base + width + j if take else where
            v = r1[j + 1]
            take = (v > best) | (v != v)
            best = v if take else best
            where = base + width + j + 1 if take else where
            yr[ow] = best
            ir[ow] = where


def _max_pool_2x2_planes(x, y, idx):
    for p in prange(x.shape[0]):
        max_pool_2x2_plane(x[p], y[p], idx[p])


def _max_pool_planes(x, y, idx, sh, sw, ph, pw, dh, dw, i_lo, i_hi, j_lo, j_hi):
    # The per-plane work is a separate function: Numba's outlined prange body optimises worse.
    for p in prange(x.shape[0]):
        max_pool_plane(x[p], y[p], idx[p], sh, sw, ph, pw, dh, dw, i_lo, i_hi, j_lo, j_hi)


def _max_pool_backward_planes(gy, idx, gx, bad):
    """Scatters gy to the argmax positions; an index outside [-1, size) marks its plane in ``bad``
    (checked here, in cache, rather than by extra passes over idx)."""
    planes, out_h, out_w = gy.shape
    size = gx.shape[1]
    for p in prange(planes):
        out = gx[p]
        for i in range(size):
            out[i] = 0
        for oh in range(out_h):
            g = gy[p, oh]
            ir = idx[p, oh]
            for ow in range(out_w):
                where = ir[ow]
                if 0 <= where < size:
                    out[where] += g[ow]
                elif where != -1:
                    bad[p] = 1


def _max_pool_2x2_nhwc(x, y, idx):
    """``_max_pool_2x2_plane`` on channels-last data, x (N, H, W, C) -> y, idx (N, Ho, Wo, C), the loop
    over channels innermost: the same candidates in the same order, the same rule, the same bits.
    Rows of 2-D views are indexed directly (no views per window)."""
    images, height, width, channels = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    x2 = x.reshape(images * height * width, channels)
    y2 = y.reshape(images * out_h * out_w, channels)
    i2 = idx.reshape(images * out_h * out_w, channels)
    for it in prange(images * out_h):
        n = it // out_h
        oh = it - n * out_h
        for ow in range(out_w):
            q = it * out_w + ow
            w0 = 2 * oh * width + 2 * ow  # the window's first input in the plane
            pa = n * height * width + w0
            pc = pa + width
            for ch in range(channels):
                best = x2[pa, ch]
                where = w0
                v = x2[pa + 1, ch]
                take = (v > best) | (v != v)
                best = v if take else best
                where = w0 + 1 if take else where
                v = x2[pc, ch]
                take = (v > best) | (v != v)
                best = v if take else best
                where = w0 + width if take else where
                v = x2[pc + 1, ch]
                take = (v > best) | (v != v)
                best = v if take else best
                where = w0 + width + 1 if take else where
                y2[q, ch] = best
                i2[q, ch] = where


def _max_pool_2x2_backward_nhwc(gy, idx, gx, bad):
    """``_max_pool_backward_planes`` on channels-last data, for 2x2 windows, stride 2, no padding (from
    ``_max_pool_2x2_nhwc``): gy, idx (N, Ho, Wo, C), gx (N, H, W, C). The windows do not overlap, so
    each input gets its value (the gradient at its window's argmax, else 0) in one pass with no
    zeroing first; the row and column a window never covers (odd H or W) get 0. An argmax outside
    its window marks ``bad``.
    Rows of the 2-D views are indexed directly (no views per window: their reference counts cost
    more than the arithmetic here)."""
    images, height, width, channels = gx.shape
    out_h, out_w = gy.shape[1], gy.shape[2]
    g2 = gy.reshape(images * out_h * out_w, channels)
    i2 = idx.reshape(images * out_h * out_w, channels)
    x2 = gx.reshape(images * height * width, channels)
    for n in prange(images):
        wrong = 0
        for oh in range(out_h):
            for ow in range(out_w):
                q = (n * out_h + oh) * out_w + ow
                w0 = 2 * oh * width + 2 * ow  # the window's first input in the plane
                pa = n * height * width + w0
                pc = pa + width
                for ch in range(channels):
                    k = i2[q, ch] - w0
                    v = g2[q, ch]
                    x2[pa, ch] = v if k == 0 else 0
                    x2[pa + 1, ch] = v if k == 1 else 0
                    x2[pc, ch] = v if k == width else 0
                    x2[pc + 1, ch] = v if k == width + 1 else 0
                    wrong += (k != 0) & (k != 1) & (k != width) & (k != width + 1)
            for w in range(2 * out_w, width):  # the column no window covers
                for r in range(2):
                    p = (n * height + 2 * oh + r) * width + w
                    for ch in range(channels):
                        x2[p, ch] = 0
        for h in range(2 * out_h, height):  # the row no window covers
            for w in range(width):
                p = (n * height + h) * width + w
                for ch in range(channels):
                    x2[p, ch] = 0
        if wrong:
            bad[n] = 1


PLANE_BLOCK = 8  # planes per prange iteration where scratch memory is reused across planes


def _avg_pool_plane(x, y, kh, kw, sh, sw, ph, pw, include_pad, cols):
    """One plane, separably: for each output row, the window's rows summed into the float64 scratch
    ``cols`` (W + 2 * pw, zero at the padding; a long vectorisable loop), then kw neighbours of
    ``cols`` per output."""
    height, width = x.shape
    out_h, out_w = y.shape
    for w in range(cols.shape[0]):
        cols[w] = 0.0
    inner = cols[pw:pw + width]
    for oh in range(out_h):
        h0 = oh * sh - ph
        hlo = max(h0, 0)
        hhi = min(h0 + kh, height)
        for w in range(width):
            inner[w] = 0.0
        for h in range(hlo, hhi):
            xr = x[h]
            for w in range(width):
                inner[w] += np.float64(xr[w])
        for ow in range(out_w):
            base = ow * sw
            t = 0.0
            for j in range(kw):
                t += cols[base + j]
            if include_pad:
                count = kh * kw
            else:
                w0 = base - pw
                count = (hhi - hlo) * (min(w0 + kw, width) - max(w0, 0))
            y[oh, ow] = t / count


def _avg_pool_planes(x, y, kh, kw, sh, sw, ph, pw, include_pad):
    planes, width = x.shape[0], x.shape[2]
    for b in prange((planes + PLANE_BLOCK - 1) // PLANE_BLOCK):
        cols = np.empty(width + 2 * pw)
        for p in range(b * PLANE_BLOCK, min(b * PLANE_BLOCK + PLANE_BLOCK, planes)):
            avg_pool_plane(x[p], y[p], kh, kw, sh, sw, ph, pw, include_pad, cols)


def _avg_pool_backward_plane(gy, gx, kh, kw, sh, sw, ph, pw, include_pad, cols, acc):
    """One plane, separably (the mirror of the forward): each output row's shares spread over kw
    neighbours of the float64 scratch ``cols`` (W + 2 * pw), which is then added to the window's rows
    of the float64 scratch ``acc`` (H, W) in long vectorisable loops."""
    out_h, out_w = gy.shape
    height, width = gx.shape
    for h in range(height):
        for w in range(width):
            acc[h, w] = 0.0
    inner = cols[pw:pw + width]
    for oh in range(out_h):
        h0 = oh * sh - ph
        hlo = max(h0, 0)
        hhi = min(h0 + kh, height)
        for w in range(cols.shape[0]):
            cols[w] = 0.0
        for ow in range(out_w):
            base = ow * sw
            if include_pad:
                count = kh * kw
            else:
                w0 = base - pw
                count = (hhi - hlo) * (min(w0 + kw, width) - max(w0, 0))
            share = np.float64(gy[oh, ow]) / count
            for j in range(kw):
                cols[base + j] += share
        for h in range(hlo, hhi):
            ar = acc[h]
            for w in range(width):
                ar[w] += inner[w]
    for h in range(height):
        for w in range(width):
            gx[h, w] = acc[h, w]


def _avg_pool_backward_planes(gy, gx, kh, kw, sh, sw, ph, pw, include_pad):
    planes = gy.shape[0]
    height, width = gx.shape[1], gx.shape[2]
    for b in prange((planes + PLANE_BLOCK - 1) // PLANE_BLOCK):
        cols = np.empty(width + 2 * pw)
        acc = np.empty((height, width))
        for p in range(b * PLANE_BLOCK, min(b * PLANE_BLOCK + PLANE_BLOCK, planes)):
            avg_pool_backward_plane(gy[p], gx[p], kh, kw, sh, sw, ph, pw, include_pad, cols, acc)


PLANE_LANES = 16  # lanes of the float64 accumulator for whole-plane sums (fastest here)


def _plane_means(x, out):
    planes, size = x.shape
    for b in prange((planes + PLANE_BLOCK - 1) // PLANE_BLOCK):
        acc = np.empty(min(size, PLANE_LANES))
        for p in range(b * PLANE_BLOCK, min(b * PLANE_BLOCK + PLANE_BLOCK, planes)):
            acc[:] = 0.0
            acc_sum(x[p], acc)
            out[p] = lane_total(acc) / size


def _plane_fill(gy, gx):
    planes, size = gx.shape
    for p in prange(planes):
        v = np.float64(gy[p]) / size
        out = gx[p]
        for i in range(size):
            out[i] = v


max_pool_plane = njit(cache=True)(_max_pool_plane)
max_pool_planes = njit(cache=True, parallel=True)(_max_pool_planes)
max_pool_2x2_plane = njit(cache=True)(_max_pool_2x2_plane)
max_pool_2x2_planes = njit(cache=True, parallel=True)(_max_pool_2x2_planes)
max_pool_backward_planes = njit(cache=True, parallel=True)(_max_pool_backward_planes)
max_pool_2x2_nhwc = njit(cache=True, parallel=True)(_max_pool_2x2_nhwc)
max_pool_2x2_backward_nhwc = njit(cache=True, parallel=True)(_max_pool_2x2_backward_nhwc)
avg_pool_plane = njit(cache=True)(_avg_pool_plane)
avg_pool_planes = njit(cache=True, parallel=True)(_avg_pool_planes)
avg_pool_backward_plane = njit(cache=True)(_avg_pool_backward_plane)
avg_pool_backward_planes = njit(cache=True, parallel=True)(_avg_pool_backward_planes)
plane_means = njit(cache=True, parallel=True)(_plane_means)
plane_fill = njit(cache=True, parallel=True)(_plane_fill)


# ----------------------------------------------------------------------------------------------
# Public kernels


def _index_dtype(plane_size):
    # int32 halves the argmax traffic (written forward, read backward); planes past 2^31 need int64
    return np.int32 if plane_size < 2**31 else np.int64


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1):
    """Max pooling with -inf padding. Returns ``(y, argmax)``; argmax (int32, or int64 for planes of
    2^31 values or more; shape of y) is the index ``h * W + w`` of each maximum within its (n, c)
    input plane, -1 for a window wholly in the padding."""
    fn = "max_pool2d_forward"
    if channels_last(x) and x.dtype in _FLOAT_DTYPES and _pair(kernel_size, "kernel_size") == (2, 2) \
            and stride in (None, 2, (2, 2), [2, 2]) and padding in (0, (0, 0), [0, 0]) \
            and dilation in (1, (1, 1), [1, 1]):
        return _max_pool_2x2_channels_last(x, fn)
    planes, lead = _as_planes(x, fn)
    k, s, p, d, out = _pool_geometry(fn, lead + planes.shape[1:], kernel_size, stride, padding,
                                     dilation)
    y = np.empty((planes.shape[0],) + out, dtype=planes.dtype)
    idx = np.empty((planes.shape[0],) + out, dtype=_index_dtype(planes.shape[1] * planes.shape[2]))
    i_lo, i_hi = _inside_offsets(planes.shape[1], k[0], s[0], p[0], d[0], out[0])
    j_lo, j_hi = _inside_offsets(planes.shape[2], k[1], s[1], p[1], d[1], out[1])
    if k == s == (2, 2) and p == (0, 0) and d == (1, 1):
        max_pool_2x2_planes(planes, y, idx)
    else:
        max_pool_planes(planes, y, idx, s[0], s[1], p[0], p[1], d[0], d[1], i_lo, i_hi, j_lo, j_hi)
    return y.reshape(lead + out), idx.reshape(lead + out)


def _max_pool_2x2_channels_last(x, fn):
    """``max_pool2d_forward`` (2x2, stride 2) of a channels-last x: y and argmax channels-last."""
    N, C, H, W = x.shape
    out = _pool_geometry(fn, x.shape, 2, 2, 0)[-1]  # (with the general path's errors)
    x4 = x.transpose(0, 2, 3, 1)
    y = np.empty((N,) + out + (C,), x.dtype)
    idx = np.empty(y.shape, _index_dtype(H * W))
    max_pool_2x2_nhwc(x4, y, idx)
    return y.transpose(0, 3, 1, 2), idx.transpose(0, 3, 1, 2)


def _max_pool_2x2_backward_channels_last(fn, gy, argmax, x_shape, dtype):
    """``max_pool2d_backward`` of a channels-last 2x2 argmax (from ``_max_pool_2x2_channels_last``), a
    channels-last gradient; None when an index lies outside its 2x2 window (not from that forward)."""
    gy = np.asarray(gy)
    if gy.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: expected float32 or float64 gradient, got {gy.dtype}")
    if gy.shape != argmax.shape:
        raise ValueError(f"{fn}: gradient has shape {gy.shape}, expected {argmax.shape}")
    N, C, Ho, Wo = argmax.shape
    g4 = nhwc_rows(gy, gy.dtype).reshape(N, Ho, Wo, C)
    i4 = nhwc_rows(argmax, dtype).reshape(g4.shape)
    rows = np.empty((N * x_shape[2] * x_shape[3], C), gy.dtype)
    bad = np.zeros(N, np.uint8)
    max_pool_2x2_backward_nhwc(g4, i4, rows.reshape(N, x_shape[2], x_shape[3], C), bad)
    return None if bad.any() else from_nhwc_rows(rows, x_shape)


def max_pool2d_backward(gy, argmax, x_shape):
    """Gradient of ``max_pool2d_forward``: each output's gradient goes to its argmax input."""
    fn = "max_pool2d_backward"
    x_shape = _check_shape(fn, "x_shape", x_shape)
    argmax = np.asarray(argmax)
    if argmax.dtype.kind not in "iu":
        raise TypeError(f"{fn}: argmax must hold integers, got {argmax.dtype}")
    if argmax.ndim != len(x_shape) or argmax.shape[:-2] != x_shape[:-2]:
        raise ValueError(f"{fn}: argmax shape {argmax.shape} does not fit input shape {x_shape}")
    size = x_shape[-2] * x_shape[-1]
    dtype = argmax.dtype if argmax.dtype in (np.int32, np.int64) else np.int64
    H, W = x_shape[-2:]
    if channels_last(argmax) and argmax.shape[-2:] == (H // 2, W // 2) and H >= 2 and W >= 2:
        gx = _max_pool_2x2_backward_channels_last(fn, gy, argmax, x_shape, dtype)
        if gx is not None:
            return gx
    # any other argmax (one of another pooling, whose indices leave the 2x2 windows): per plane
    g = _grad_planes(fn, gy, argmax.shape)
    idx = np.ascontiguousarray(argmax, dtype=dtype).reshape(g.shape)
    gx = np.empty((g.shape[0], size), dtype=g.dtype)
    bad = np.zeros(g.shape[0], np.uint8)
    max_pool_backward_planes(g, idx, gx, bad)
    if bad.any():
        raise ValueError(f"{fn}: argmax holds indices outside [-1, {size}) for input {x_shape}")
    return gx.reshape(x_shape)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Average pooling with zero padding; with ``count_include_pad`` the divisor is always the
    window size, else only the input elements inside the window are counted."""
    fn = "avg_pool2d_forward"
    planes, lead = _as_planes(x, fn)
    k, s, p, _, out = _pool_geometry(fn, lead + planes.shape[1:], kernel_size, stride, padding)
    y = np.empty((planes.shape[0],) + out, dtype=planes.dtype)
    avg_pool_planes(planes, y, k[0], k[1], s[0], s[1], p[0], p[1], bool(count_include_pad))
    return y.reshape(lead + out)


def avg_pool2d_backward(gy, x_shape, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Gradient of ``avg_pool2d_forward`` with respect to its input (of shape ``x_shape``)."""
    fn = "avg_pool2d_backward"
    x_shape = _check_shape(fn, "x_shape", x_shape)
    k, s, p, _, out = _pool_geometry(fn, x_shape, kernel_size, stride, padding)
    g = _grad_planes(fn, gy, x_shape[:-2] + out)
    gx = np.empty((g.shape[0],) + x_shape[-2:], dtype=g.dtype)
    avg_pool_backward_planes(g, gx, k[0], k[1], s[0], s[1], p[0], p[1], bool(count_include_pad))
    return gx.reshape(x_shape)


def global_avg_pool2d_forward(x):
    """Mean over H and W: (N, C, H, W) -> (N, C) (or (C, H, W) -> (C,))."""
    planes, lead = _as_planes(x, "global_avg_pool2d_forward")
    flat = planes.reshape(planes.shape[0], -1)
    if flat.shape[1] == 0:
        raise ValueError(f"global_avg_pool2d_forward: empty planes in input of shape "
                         f"{lead + planes.shape[1:]}")
    y = np.empty(planes.shape[0], dtype=planes.dtype)
    plane_means(flat, y)
    return y.reshape(lead)


def global_avg_pool2d_backward(gy, x_shape):
    """Gradient of ``global_avg_pool2d_forward``: gy / (H * W) spread over each plane."""
    fn = "global_avg_pool2d_backward"
    x_shape = _check_shape(fn, "x_shape", x_shape)
    gy = np.asarray(gy)
    if gy.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: expected float32 or float64 gradient, got {gy.dtype}")
    if gy.shape != x_shape[:-2]:
        raise ValueError(f"{fn}: gradient has shape {gy.shape}, expected {x_shape[:-2]}")
    g = np.ascontiguousarray(gy).reshape(-1)
    gx = np.empty((g.shape[0], x_shape[-2] * x_shape[-1]), dtype=g.dtype)
    plane_fill(g, gx)
    return gx.reshape(x_shape)


# ----------------------------------------------------------------------------------------------
# NumPy reference twins: loops over the window offsets, vectorised over everything else.


def _window_view(xp, i, j, s, out):
    """xp[..., i + s0 * oh, j + s1 * ow] for all (oh, ow): the elements at window offset (i, j)."""
    return xp[..., i:i + s[0] * (out[0] - 1) + 1:s[0], j:j + s[1] * (out[1] - 1) + 1:s[1]]


def max_pool2d_forward_reference(x, kernel_size, stride=None, padding=0, dilation=1):
    x = np.asarray(x)
    k, s, p, d, out = _pool_geometry("max_pool2d_forward", x.shape, kernel_size, stride, padding,
                                     dilation)
    height, width = x.shape[-2:]
    xp = np.full(x.shape[:-2] + (height + 2 * p[0], width + 2 * p[1]), -np.inf, dtype=x.dtype)
    xp[..., p[0]:p[0] + height, p[1]:p[1] + width] = x
    flat = np.arange((height + 2 * p[0]) * (width + 2 * p[1])).reshape(xp.shape[-2:])
    flat = (flat // xp.shape[-1] - p[0]) * width + (flat % xp.shape[-1] - p[1])
    inside = np.zeros(xp.shape[-2:], dtype=bool)
    inside[p[0]:p[0] + height, p[1]:p[1] + width] = True
    best = np.full(x.shape[:-2] + out, -np.inf, dtype=x.dtype)
    where = np.full(x.shape[:-2] + out, -1, dtype=np.int64)
    for i in range(k[0]):
        for j in range(k[1]):
            v = _window_view(xp, i * d[0], j * d[1], s, out)
            ok = _window_view(inside, i * d[0], j * d[1], s, out)
            take = ok & ((where < 0) | (v > best) | np.isnan(v))
            best = np.where(take, v, best)
            where = np.where(take, _window_view(flat, i * d[0], j * d[1], s, out), where)
    return best, where


def max_pool2d_backward_reference(gy, argmax, x_shape):
    gy = np.asarray(gy)
    g = gy.reshape(-1, gy.shape[-2] * gy.shape[-1])
    idx = np.asarray(argmax).reshape(g.shape)
    gx = np.zeros((g.shape[0], x_shape[-2] * x_shape[-1]), dtype=gy.dtype)
    for plane in range(g.shape[0]):
        ok = idx[plane] >= 0
        np.add.at(gx[plane], idx[plane][ok], g[plane][ok])
    return gx.reshape(x_shape)


def _avg_divisor(x_shape, k, s, p, out, count_include_pad):
    if count_include_pad:
        return float(k[0] * k[1])
    rows = [min(o * s[0] - p[0] + k[0], x_shape[-2]) - max(o * s[0] - p[0], 0)
            for o in range(out[0])]
    cols = [min(o * s[1] - p[1] + k[1], x_shape[-1]) - max(o * s[1] - p[1], 0)
            for o in range(out[1])]
    return np.outer(rows, cols).astype(np.float64)


def avg_pool2d_forward_reference(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    x = np.asarray(x)
    k, s, p, _, out = _pool_geometry("avg_pool2d_forward", x.shape, kernel_size, stride, padding)
    xp = np.pad(x.astype(np.float64), [(0, 0)] * (x.ndim - 2) + [(p[0], p[0]), (p[1], p[1])])
    total = np.zeros(x.shape[:-2] + out)
    for i in range(k[0]):
        for j in range(k[1]):
            total += _window_view(xp, i, j, s, out)
    return (total / _avg_divisor(x.shape, k, s, p, out, count_include_pad)).astype(x.dtype)


def avg_pool2d_backward_reference(gy, x_shape, kernel_size, stride=None, padding=0,
                                  count_include_pad=True):
    gy = np.asarray(gy)
    k, s, p, _, out = _pool_geometry("avg_pool2d_backward", x_shape, kernel_size, stride, padding)
    share = gy.astype(np.float64) / _avg_divisor(x_shape, k, s, p, out, count_include_pad)
    gxp = np.zeros(tuple(x_shape[:-2]) + (x_shape[-2] + 2 * p[0], x_shape[-1] + 2 * p[1]))
    for i in range(k[0]):
        for j in range(k[1]):
            _window_view(gxp, i, j, s, out)[...] += share
    return gxp[..., p[0]:p[0] + x_shape[-2], p[1]:p[1] + x_shape[-1]].astype(gy.dtype)


def global_avg_pool2d_forward_reference(x):
    x = np.asarray(x)
    return x.astype(np.float64).mean(axis=(-2, -1)).astype(x.dtype)


def global_avg_pool2d_backward_reference(gy, x_shape):
    gy = np.asarray(gy)
    g = gy.astype(np.float64) / (x_shape[-2] * x_shape[-1])
    return np.broadcast_to(g[..., None, None], tuple(x_shape)).astype(gy.dtype)
