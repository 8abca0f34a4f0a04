"""Batch normalisation over every dim but the channel dim 1: (N, C), (N, C, L), (N, C, H, W), ...

The input is viewed as (N, C, S) with S the product of the trailing dims. Training-mode kernels run a
``prange`` over blocks of channels (fixed by the shape) and each block is handled start to finish by
one thread: its statistics (or gradient sums) are accumulated in float64, in an order fixed by the
shape, and the same thread then writes the block's outputs while its data is still in cache. So the
result bits do not depend on the thread count, and each tensor is read from memory about once.

Statistics: ``mean`` and ``invstd = 1 / sqrt(var + eps)`` are float64 arrays of shape (C,), with
``var`` the biased batch variance (as PyTorch normalises). ``batch_norm_unbiased_var`` recovers the
unbiased variance that ``batch_norm_update_running`` wants. Sums use a shift by the channel's first
element (one pass over the data, without the cancellation of a plain sum of squares).

The core kernels also serve the fused BN + ReLU and BN + add + ReLU passes in ``fused.py``.
"""

import types

import numpy as np
from numba import njit, prange

from freenet.kernels.layout import from_nhwc_rows, nhwc_rows, rows_layout

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ----------------------------------------------------------------------------------------------
# Numba kernels
#
# Layout: x is viewed as rows x2 = x.reshape(N, C * S); channel c owns columns [c * S, (c + 1) * S)
# of every row. Channels go in blocks of CB consecutive channels (CB fixed by the shape alone: many
# channels per block when planes are small, one when they are large), so a block owns a contiguous
# segment of every row, and each block is handled start to finish by one thread.
#
# Reductions use lane accumulators: column j of a segment is added to lane j % L of a float64 array
# (L = min(segment width, MAX_LANES)). A block of several channels has L = its whole width, so a lane
# never mixes channels. The loop over lanes has no dependence between iterations and vectorises
# without reassociating any sum; a channel's lanes are then added up in lane order.

MAX_LANES = 512
MIN_BLOCKS = 8  # aim for this many channel blocks, for parallelism (the bits do not depend on it)


def _channel_block(channels, size):
    """Channels per block, from the shape only."""
    return max(1, min(MAX_LANES // size, (channels + MIN_BLOCKS - 1) // MIN_BLOCKS))


def _lanes(width):
    return min(width, MAX_LANES)


def _acc_sum(r, a):
    """a[j] += r[k * L + j] over all blocks k of the segment r (L = len(a))."""
    lanes = a.shape[0]
    size = r.shape[0]
    k = 0
    while k + lanes <= size:
        blk = r[k:k + lanes]
        for j in range(lanes):
            a[j] += np.float64(blk[j])
        k += lanes
    rest = r[k:]
    for j in range(size - k):
        a[j] += np.float64(rest[j])


def _acc_shifted(r, shift, a1, a2):
    """a1 += r - shift, a2 += (r - shift)**2, lane-wise as in ``acc_sum``; shift per lane."""
    lanes = a1.shape[0]
    size = r.shape[0]
    k = 0
    while k + lanes <= size:
        blk = r[k:k + lanes]
        for j in range(lanes):
            d = np.float64(blk[j]) - shift[j]
            a1[j] += d
            a2[j] += d * d
        k += lanes
    rest = r[k:]
    for j in range(size - k):
        d = np.float64(rest[j]) - shift[j]
        a1[j] += d
        a2[j] += d * d


def _acc_grad(g, x, mu, a1, a2):
    """a1 += g, a2 += g * (x - mu), lane-wise as in ``acc_sum``; mu per lane."""
    lanes = a1.shape[0]
    size = g.shape[0]
    k = 0
    while k + lanes <= size:
        gb = g[k:k + lanes]
        xb = x[k:k + lanes]
        for j in range(lanes):
            v = np.float64(gb[j])
            a1[j] += v
            a2[j] += v * (np.float64(xb[j]) - mu[j])
        k += lanes
    gb = g[k:]
    xb = x[k:]
    for j in range(size - k):
        v = np.float64(gb[j])
        a1[j] += v
        a2[j] += v * (np.float64(xb[j]) - mu[j])


def _lane_total(a):
    t = 0.0
    for j in range(a.shape[0]):
        t += a[j]
    return t


def _channel_total(a, ci, nc, size):
    """The lanes of channel ci (of nc in the block) added up in lane order."""
    if nc == 1:
        return lane_total(a)
    return lane_total(a[ci * size:(ci + 1) * size])


def _per_lane(values, size, out):
    """out[j] = values[j // size]: a per-channel value (of the block) for every lane."""
    for j in range(out.shape[0]):
        out[j] = values[j // size]


def _relu_mask_row(g, y, out):
    """out = g where y > 0, else 0."""
    for i in range(g.shape[0]):
        out[i] = g[i] if y[i] > 0 else 0


def _apply_affine(xs, ys, mu, scale, b, rs, mode):
    """ys = (xs - mu) * scale + b lane-wise in float64, then mode 1: ReLU, mode 2: + rs and ReLU.
    A segment of a single channel (all lanes equal) runs as one loop with scalar parameters."""
    lanes = mu.shape[0]
    width = xs.shape[0]
    single = width > lanes
    k = 0
    while k < width:
        m = width - k if single else min(lanes, width - k)
        xb = xs[k:k + m]
        yb = ys[k:k + m]
        if single:
            mu0 = mu[0]
            s0 = scale[0]
            b0 = b[0]
            if mode == 0:
                for j in range(m):
                    yb[j] = (np.float64(xb[j]) - mu0) * s0 + b0
            elif mode == 1:
                for j in range(m):
                    z = (np.float64(xb[j]) - mu0) * s0 + b0
                    yb[j] = 0.0 if z < 0.0 else z
            else:
                rb = rs[k:k + m]
                for j in range(m):
                    z = (np.float64(xb[j]) - mu0) * s0 + b0 + np.float64(rb[j])
                    yb[j] = 0.0 if z < 0.0 else z
        elif mode == 0:
            for j in range(m):
                yb[j] = (np.float64(xb[j]) - mu[j]) * scale[j] + b[j]
        elif mode == 1:
            for j in range(m):
                z = (np.float64(xb[j]) - mu[j]) * scale[j] + b[j]
                yb[j] = 0.0 if z < 0.0 else z
        else:
            rb = rs[k:k + m]
            for j in range(m):
                z = (np.float64(xb[j]) - mu[j]) * scale[j] + b[j] + np.float64(rb[j])
                yb[j] = 0.0 if z < 0.0 else z
        k += m


def _apply_grad(g, xs, out, mu, k_, mean_g, coef):
    """out = k * (g - mean_g - (xs - mu) * coef) lane-wise in float64 (a single-channel segment
    wider than the lanes as one loop with scalar parameters)."""
    lanes = mu.shape[0]
    width = xs.shape[0]
    if width > lanes:
        m0 = mu[0]
        k0 = k_[0]
        g0 = mean_g[0]
        c0 = coef[0]
        for j in range(width):
            out[j] = k0 * (np.float64(g[j]) - g0 - (np.float64(xs[j]) - m0) * c0)
        return
    for j in range(width):
        out[j] = k_[j] * (np.float64(g[j]) - mean_g[j] - (np.float64(xs[j]) - mu[j]) * coef[j])


def _bn_train_forward(x, gamma, beta, eps, res, mode, y, mean, invstd):
    """Batch statistics, then y = gamma * (x - mean) * invstd + beta; mode 1 adds a ReLU, mode 2
    adds ``res`` and a ReLU. Computed in float64, rounded once."""
    n_rows, channels, size = x.shape
    count = n_rows * size
    cb = channel_block(channels, size)
    x2 = x.reshape(n_rows, channels * size)
    y2 = y.reshape(n_rows, channels * size)
    r2 = res.reshape(res.shape[0], res.shape[1] * res.shape[2])
    for blk in prange((channels + cb - 1) // cb):
        c0 = blk * cb
        nc = min(cb, channels - c0)
        lo = c0 * size
        hi = lo + nc * size
        nl = lanes(hi - lo)
        first = np.empty(nc)
        for ci in range(nc):
            first[ci] = x[0, c0 + ci, 0]
        shift = np.empty(nl)
        per_lane(first, size, shift)
        a1 = np.zeros(nl)
        a2 = np.zeros(nl)
        for n in range(n_rows):
            acc_shifted(x2[n, lo:hi], shift, a1, a2)
        mu_c = np.empty(nc)
        scale_c = np.empty(nc)
        beta_c = np.empty(nc)
        for ci in range(nc):
            c = c0 + ci
            m1 = channel_total(a1, ci, nc, size) / count
            var = max(channel_total(a2, ci, nc, size) / count - m1 * m1, 0.0)
            mu = first[ci] + m1
            inv = 1.0 / np.sqrt(var + eps)
            mean[c] = mu
            invstd[c] = inv
            mu_c[ci] = mu
            scale_c[ci] = gamma[c] * inv
            beta_c[ci] = beta[c]
        mu_l = np.empty(nl)
        scale_l = np.empty(nl)
        beta_l = np.empty(nl)
        per_lane(mu_c, size, mu_l)
        per_lane(scale_c, size, scale_l)
        per_lane(beta_c, size, beta_l)
        for n in range(n_rows):
            xs = x2[n, lo:hi]
            apply_affine(xs, y2[n, lo:hi], mu_l, scale_l, beta_l,
                         r2[n, lo:hi] if mode == 2 else xs, mode)


def _bn_backward(gy, x, y, use_mask, gamma, mean, invstd, gx, gres, write_gres, ggamma, gbeta):
    """Backward of the training-mode forward. With ``use_mask`` the incoming gradient is first
    zeroed where y <= 0 (ReLU); with ``write_gres`` that masked gradient is also stored in gres."""
    n_rows, channels, size = x.shape
    count = n_rows * size
    cb = channel_block(channels, size)
    width = channels * size
    gy2 = gy.reshape(n_rows, width)
    x2 = x.reshape(n_rows, width)
    y2 = y.reshape(y.shape[0], y.shape[1] * y.shape[2])
    gx2 = gx.reshape(n_rows, width)
    gres2 = gres.reshape(gres.shape[0], gres.shape[1] * gres.shape[2])
    for blk in prange((channels + cb - 1) // cb):
        c0 = blk * cb
        nc = min(cb, channels - c0)
        lo = c0 * size
        hi = lo + nc * size
        nl = lanes(hi - lo)
        mu_l = np.empty(nl)
        per_lane(mean[c0:c0 + nc], size, mu_l)
        a1 = np.zeros(nl)
        a2 = np.zeros(nl)
        # the masked gradient goes to gres, or else to a scratch copy of the block (in cache for
        # the second pass; writing it to gx and updating gx in place does not vectorise)
        scratch = np.empty((n_rows if use_mask and not write_gres else 0, hi - lo), dtype=gy.dtype)
        for n in range(n_rows):
            if use_mask:
                t = gres2[n, lo:hi] if write_gres else scratch[n]
                relu_mask_row(gy2[n, lo:hi], y2[n, lo:hi], t)
                acc_grad(t, x2[n, lo:hi], mu_l, a1, a2)
            else:
                acc_grad(gy2[n, lo:hi], x2[n, lo:hi], mu_l, a1, a2)
        k_c = np.empty(nc)
        mean_g_c = np.empty(nc)
        coef_c = np.empty(nc)
        for ci in range(nc):
            c = c0 + ci
            inv = invstd[c]
            sum_g = channel_total(a1, ci, nc, size)
            sum_gx = channel_total(a2, ci, nc, size)
            gbeta[c] = sum_g
            ggamma[c] = sum_gx * inv
            k_c[ci] = gamma[c] * inv
            mean_g_c[ci] = sum_g / count
            coef_c[ci] = sum_gx * inv * inv / count
        k_l = np.empty(nl)
        mean_g_l = np.empty(nl)
        coef_l = np.empty(nl)
        per_lane(k_c, size, k_l)
        per_lane(mean_g_c, size, mean_g_l)
        per_lane(coef_c, size, coef_l)
        for n in range(n_rows):
            if use_mask:
                g = gres2[n, lo:hi] if write_gres else scratch[n]
            else:
                g = gy2[n, lo:hi]
            apply_grad(g, x2[n, lo:hi], gx2[n, lo:hi], mu_l, k_l, mean_g_l, coef_l)


def _affine_channels(x, mu_t, scale_t, beta_t, relu, y):
    """y = (x - mu) * scale + beta per channel [then ReLU], mu_t etc. per lane of each channel
    block (``lane_table``): a prange over (row, channel block) segments."""
    n_rows, channels, size = x.shape
    cb = channel_block(channels, size)
    nb = (channels + cb - 1) // cb
    width = channels * size
    x2 = x.reshape(n_rows, width)
    y2 = y.reshape(n_rows, width)
    mode = 1 if relu else 0
    for it in prange(n_rows * nb):
        n = it // nb
        blk = it % nb
        lo = blk * cb * size
        hi = min(lo + cb * size, width)
        xs = x2[n, lo:hi]
        apply_affine(xs, y2[n, lo:hi], mu_t[blk], scale_t[blk], beta_t[blk], xs, mode)


def _channel_sums(g, out):
    """out[c] = the sum of g[:, c, :] (g (rows, channels, size)), in float64 lane sums; channel blocks
    in parallel, each summed start to finish by one thread (the bits do not depend on the threads)."""
    n_rows, channels, size = g.shape
    cb = channel_block(channels, size)
    g2 = g.reshape(n_rows, channels * size)
    for blk in prange((channels + cb - 1) // cb):
        c0 = blk * cb
        nc = min(cb, channels - c0)
        lo = c0 * size
        hi = lo + nc * size
        acc = np.zeros(lanes(hi - lo))
        for n in range(n_rows):
            acc_sum(g2[n, lo:hi], acc)
        for ci in range(nc):
            out[c0 + ci] = channel_total(acc, ci, nc, size)


# Channels-last (NHWC) inputs, as the convolutions produce: x is viewed as rows x2 (pixels, C), a
# channel per column. Rows go in blocks of ROW_BLOCK (fixed); a prange over blocks sums each block's
# rows in order into per-channel float64 partials (the loop over channels vectorises), the partials
# are added in block order, and a second prange applies the result. The bits do not depend on the
# thread count (they differ from the NCHW kernels', which sum in another order).

ROW_BLOCK = 128


def _rows_stats(x2, shift, a1, a2):
    """Per row block b: a1[b] = sum of (x - shift), a2[b] = sum of (x - shift)^2, per channel
    (a1, a2 (blocks, C)). Blocks sum in local arrays, as in ``rows_sums``."""
    rows, channels = x2.shape
    for blk in prange(a1.shape[0]):
        s1 = np.zeros(channels)
        s2 = np.zeros(channels)
        for r in range(blk * ROW_BLOCK, min(rows, (blk + 1) * ROW_BLOCK)):
            xr = x2[r]
            for c in range(channels):
                d = np.float64(xr[c]) - shift[c]
                s1[c] += d
                s2[c] += d * d
        a1[blk, :] = s1
        a2[blk, :] = s2


def _rows_sums(x2, a1):
    """Per row block b: a1[b] = the sum of its rows, per channel, in float64. (Summed in a local
    array: LLVM then vectorises the loop over channels, 2.5x faster than adding into a1 in place.)"""
    rows, channels = x2.shape
    for blk in prange(a1.shape[0]):
        acc = np.zeros(channels)
        for r in range(blk * ROW_BLOCK, min(rows, (blk + 1) * ROW_BLOCK)):
            xr = x2[r]
            for c in range(channels):
                acc[c] += np.float64(xr[c])
        a1[blk, :] = acc


def _rows_affine(x2, mu, scale, b, r2, mode, y2):
    """y = (x - mu) * scale + b per channel in float64; mode 1: then ReLU, 2: + r then ReLU. (The
    arithmetic of ``apply_affine``, written out: calling it a row at a time gives the same bits in 3x
    the time, 0.18 -> 0.52 ms on a go9 batch-256 activation.)"""
    rows, channels = x2.shape
    for blk in prange((rows + ROW_BLOCK - 1) // ROW_BLOCK):
        for r in range(blk * ROW_BLOCK, min(rows, (blk + 1) * ROW_BLOCK)):
            xr = x2[r]
            yr = y2[r]
            if mode == 0:
                for c in range(channels):
                    yr[c] = (np.float64(xr[c]) - mu[c]) * scale[c] + b[c]
            elif mode == 1:
                for c in range(channels):
                    z = (np.float64(xr[c]) - mu[c]) * scale[c] + b[c]
                    yr[c] = 0.0 if z < 0.0 else z
            else:
                rr = r2[r]
                for c in range(channels):
                    z = (np.float64(xr[c]) - mu[c]) * scale[c] + b[c] + np.float64(rr[c])
                    yr[c] = 0.0 if z < 0.0 else z


def _rows_grad_sums(gy2, x2, y2, use_mask, mu, gres2, write_gres, a1, a2):
    """Per row block: a1 = sum of g, a2 = sum of g * (x - mu), per channel; g = gy, zero where
    y <= 0 with ``use_mask`` (that g also stored in gres with ``write_gres``). Blocks sum in local
    arrays, as in ``rows_sums``."""
    rows, channels = x2.shape
    for blk in prange(a1.shape[0]):
        s1 = np.zeros(channels)
        s2 = np.zeros(channels)
        for r in range(blk * ROW_BLOCK, min(rows, (blk + 1) * ROW_BLOCK)):
            gr = gy2[r]
            xr = x2[r]
            if use_mask:
                yr = y2[r]
                if write_gres:
                    tr = gres2[r]
                    for c in range(channels):
                        v = gr[c] if yr[c] > 0 else 0
                        tr[c] = v
                        s1[c] += np.float64(v)
                        s2[c] += np.float64(v) * (np.float64(xr[c]) - mu[c])
                else:
                    for c in range(channels):
                        v = np.float64(gr[c]) if yr[c] > 0 else 0.0
                        s1[c] += v
                        s2[c] += v * (np.float64(xr[c]) - mu[c])
            else:
                for c in range(channels):
                    v = np.float64(gr[c])
                    s1[c] += v
                    s2[c] += v * (np.float64(xr[c]) - mu[c])
        a1[blk, :] = s1
        a2[blk, :] = s2


def _rows_grad_apply(gy2, x2, y2, use_mask, mu, k_, mean_g, coef, gx2):
    """gx = k * (g - mean_g - (x - mu) * coef) per channel in float64 (g masked as in the sums)."""
    rows, channels = x2.shape
    for blk in prange((rows + ROW_BLOCK - 1) // ROW_BLOCK):
        for r in range(blk * ROW_BLOCK, min(rows, (blk + 1) * ROW_BLOCK)):
            gr = gy2[r]
            xr = x2[r]
            out = gx2[r]
            if use_mask:
                yr = y2[r]
                for c in range(channels):
                    v = np.float64(gr[c]) if yr[c] > 0 else 0.0
                    out[c] = k_[c] * (v - mean_g[c] - (np.float64(xr[c]) - mu[c]) * coef[c])
            else:
                for c in range(channels):
                    out[c] = k_[c] * (np.float64(gr[c]) - mean_g[c] - (np.float64(xr[c]) - mu[c]) * coef[c])


def _block_total(a, out):
    """out[c] = the sum of a[:, c], block after block."""
    for c in range(out.shape[0]):
        out[c] = 0.0
    for blk in range(a.shape[0]):
        for c in range(out.shape[0]):
            out[c] += a[blk, c]


channel_block = njit(cache=True)(_channel_block)
lanes = njit(cache=True)(_lanes)
acc_sum = njit(cache=True)(_acc_sum)
acc_shifted = njit(cache=True)(_acc_shifted)
acc_grad = njit(cache=True)(_acc_grad)
lane_total = njit(cache=True)(_lane_total)
channel_total = njit(cache=True)(_channel_total)
per_lane = njit(cache=True)(_per_lane)
relu_mask_row = njit(cache=True)(_relu_mask_row)
apply_affine = njit(cache=True)(_apply_affine)
apply_grad = njit(cache=True)(_apply_grad)
bn_train_forward = njit(cache=True, parallel=True)(_bn_train_forward)
bn_backward = njit(cache=True, parallel=True)(_bn_backward)
affine_channels = njit(cache=True, parallel=True)(_affine_channels)
channel_sums = njit(cache=True, parallel=True)(_channel_sums)


def _serial_twin(f):
    """A copy of the Python function ``f`` under another name. Numba's on-disk cache keys a function
    by its module, name and bytecode, not by ``parallel``: a serial and a parallel njit of the same
    function would load each other's machine code."""
    twin = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial", f.__defaults__, f.__closure__)
    twin.__qualname__ = f.__qualname__ + "_serial"
    twin.__doc__ = f.__doc__
    return twin


# Serial twins of the sums, for small arrays: launching the parallel loop wakes Numba's sleeping
# threads (~40 us here), more than summing 1M values costs on one thread (the bits are the same).
channel_sums_serial = njit(cache=True)(_serial_twin(_channel_sums))
PARALLEL_SUM_SIZE = 1 << 20
rows_stats = njit(cache=True, parallel=True)(_rows_stats)
rows_sums = njit(cache=True, parallel=True)(_rows_sums)
rows_sums_serial = njit(cache=True)(_serial_twin(_rows_sums))
rows_affine = njit(cache=True, parallel=True)(_rows_affine)
rows_grad_sums = njit(cache=True, parallel=True)(_rows_grad_sums)
rows_grad_apply = njit(cache=True, parallel=True)(_rows_grad_apply)
block_total = njit(cache=True)(_block_total)


def lane_table(values, channels, size):
    """(blocks, lanes) float64 table: entry [b, j] is ``values`` of the channel owning lane j of
    channel block b, for ``affine_channels``."""
    cb = _channel_block(channels, size)
    nb = -(-channels // cb)
    lane = np.arange(_lanes(cb * size))
    owner = np.minimum(np.arange(nb)[:, None] * cb + lane[None, :] // size, channels - 1)
    return np.ascontiguousarray(np.asarray(values, dtype=np.float64)[owner])


# ----------------------------------------------------------------------------------------------
# Argument handling


def as_ncs(fn, x, name="input"):
    """Validated contiguous (N, C, S) view/copy of a float array with at least 2 dims."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"{fn}: {name} must have shape (N, C, ...), got {x.shape}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: expected float32 or float64 {name}, got {x.dtype}")
    if x.size == 0:
        raise ValueError(f"{fn}: {name} of shape {x.shape} is empty")
    return np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)


def like_ncs(fn, a, name, shape, dtype):
    """``a`` as a contiguous (N, C, S) array of ``dtype``, required to have exactly ``shape``."""
    a = np.asarray(a)
    if a.shape != shape:
        raise ValueError(f"{fn}: {name} has shape {a.shape}, expected {shape}")
    return np.ascontiguousarray(a, dtype=dtype).reshape(shape[0], shape[1], -1)


def channel_param(fn, a, name, channels, fill):
    """Per-channel parameter as float64 (C,); None means all ``fill``."""
    if a is None:
        return np.full(channels, fill, dtype=np.float64)
    a = np.asarray(a)
    if a.shape != (channels,):
        raise ValueError(f"{fn}: {name} has shape {a.shape}, expected ({channels},) for an input "
                         f"with {channels} channels")
    return np.ascontiguousarray(a, dtype=np.float64)


def check_train_count(fn, shape):
    if shape[0] * int(np.prod(shape[2:], dtype=np.int64)) < 2:
        raise ValueError(f"{fn}: expected more than 1 value per channel when training, got input "
                         f"of shape {shape}")


def _rows_train_forward(x, g, b, eps, residual, mode):
    """``train_forward`` of a channels-last x: (y channels-last, mean, invstd)."""
    shape = x.shape
    x2 = nhwc_rows(x, x.dtype)
    channels = shape[1]
    r2 = x2 if residual is None else nhwc_rows(residual, x.dtype)
    blocks = -(-x2.shape[0] // ROW_BLOCK)
    shift = x2[0].astype(np.float64)
    a1, a2 = np.empty((blocks, channels)), np.empty((blocks, channels))
    rows_stats(x2, shift, a1, a2)
    s1, s2 = np.empty(channels), np.empty(channels)
    block_total(a1, s1)
    block_total(a2, s2)
    count = x2.shape[0]
    m1 = s1 / count
    var = np.maximum(s2 / count - m1 * m1, 0.0)
    mean = shift + m1
    invstd = 1.0 / np.sqrt(var + eps)
    y2 = np.empty_like(x2)
    rows_affine(x2, mean, g * invstd, b, r2, mode, y2)
    return from_nhwc_rows(y2, shape), mean, invstd


def sum_channels(g3, out):
    """``channel_sums`` of g (rows, channels, size), on one thread when it is small."""
    (channel_sums if g3.size >= PARALLEL_SUM_SIZE else channel_sums_serial)(g3, out)


def column_sums(rows):
    """The float64 sums of the columns of the C-contiguous 2-D ``rows`` (per channel of channels-last
    rows): row blocks in parallel, each summed in order, the blocks added in order."""
    a1 = np.empty((-(-rows.shape[0] // ROW_BLOCK), rows.shape[1]))
    (rows_sums if rows.size >= PARALLEL_SUM_SIZE else rows_sums_serial)(rows, a1)
    out = np.empty(rows.shape[1])
    block_total(a1, out)
    return out


def train_forward(fn, x, gamma, beta, eps, residual, relu):
    shape = np.shape(x)
    if rows_layout(x) and x.dtype in _FLOAT_DTYPES:
        check_train_count(fn, shape)
        if residual is not None and np.shape(residual) != shape:
            raise ValueError(f"{fn}: residual has shape {np.shape(residual)}, expected {shape}")
        return _rows_train_forward(x, channel_param(fn, gamma, "gamma", shape[1], 1.0),
                                   channel_param(fn, beta, "beta", shape[1], 0.0), float(eps), residual,
                                   2 if residual is not None else (1 if relu else 0))
    x3 = as_ncs(fn, x)
    check_train_count(fn, shape)
    channels = x3.shape[1]
    g = channel_param(fn, gamma, "gamma", channels, 1.0)
    b = channel_param(fn, beta, "beta", channels, 0.0)
    if residual is None:
        r3 = np.empty((0, 0, 0), dtype=x3.dtype)
    else:
        r3 = like_ncs(fn, residual, "residual", shape, x3.dtype)
    mode = 2 if residual is not None else (1 if relu else 0)
    y = np.empty_like(x3)
    mean = np.empty(channels)
    invstd = np.empty(channels)
    bn_train_forward(x3, g, b, float(eps), r3, mode, y, mean, invstd)
    return y.reshape(shape), mean, invstd


def _rows_backward(gy, y, x, gm, mu, inv, write_gres):
    """``backward`` of a channels-last x: gx (and gres) channels-last, float64 ggamma and gbeta."""
    shape = x.shape
    dt = gy.dtype
    g2 = nhwc_rows(gy, dt)
    x2 = nhwc_rows(x, dt)
    use_mask = y is not None
    y2 = nhwc_rows(y, dt) if use_mask else g2
    channels = shape[1]
    blocks = -(-x2.shape[0] // ROW_BLOCK)
    gres2 = np.empty_like(g2) if write_gres else g2
    a1, a2 = np.empty((blocks, channels)), np.empty((blocks, channels))
    rows_grad_sums(g2, x2, y2, use_mask, mu, gres2, write_gres, a1, a2)
    sum_g, sum_gx = np.empty(channels), np.empty(channels)
    block_total(a1, sum_g)
    block_total(a2, sum_gx)
    count = x2.shape[0]
    gx2 = np.empty_like(g2)
    rows_grad_apply(g2, x2, y2, use_mask, mu, gm * inv, sum_g / count, sum_gx * inv * inv / count, gx2)
    out = (from_nhwc_rows(gx2, shape),)
    if write_gres:
        out += (from_nhwc_rows(gres2, shape),)
    return out + (sum_gx * inv, sum_g)


def backward(fn, gy, y, x, gamma, mean, invstd, write_gres):
    x = np.asarray(x)
    shape = x.shape
    if rows_layout(x) and x.dtype in _FLOAT_DTYPES:
        if np.shape(gy) != shape:
            raise ValueError(f"{fn}: gradient has shape {np.shape(gy)}, input has shape {shape}")
        if y is not None and np.shape(y) != shape:
            raise ValueError(f"{fn}: output has shape {np.shape(y)}, expected {shape}")
        gy = np.asarray(gy)
        if gy.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{fn}: expected float32 or float64 gradient, got {gy.dtype}")
        channels = shape[1]
        *grads, ggamma, gbeta = _rows_backward(
            gy, y, x, channel_param(fn, gamma, "gamma", channels, 1.0),
            channel_param(fn, mean, "mean", channels, 0.0), channel_param(fn, invstd, "invstd", channels, 1.0),
            write_gres)
        return tuple(grads) + (ggamma.astype(gy.dtype), gbeta.astype(gy.dtype))
    g3 = as_ncs(fn, gy, "gradient")
    if g3.shape[:2] != shape[:2] or np.shape(gy) != shape:
        raise ValueError(f"{fn}: gradient has shape {np.shape(gy)}, input has shape {shape}")
    x3 = like_ncs(fn, x, "input", shape, g3.dtype)
    channels = x3.shape[1]
    gm = channel_param(fn, gamma, "gamma", channels, 1.0)
    mu = channel_param(fn, mean, "mean", channels, 0.0)
    inv = channel_param(fn, invstd, "invstd", channels, 1.0)
    use_mask = y is not None
    y3 = like_ncs(fn, y, "output", shape, g3.dtype) if use_mask else g3
    gx = np.empty_like(g3)
    gres = np.empty_like(g3) if write_gres else np.empty((0, 0, 0), dtype=g3.dtype)
    ggamma = np.empty(channels)
    gbeta = np.empty(channels)
    bn_backward(g3, x3, y3, use_mask, gm, mu, inv, gx, gres, write_gres, ggamma, gbeta)
    out = (gx.reshape(shape),)
    if write_gres:
        out += (gres.reshape(shape),)
    return out + (ggamma.astype(g3.dtype), gbeta.astype(g3.dtype))


# ----------------------------------------------------------------------------------------------
# Public kernels


def batch_norm_train_forward(x, gamma, beta, eps=1e-5):
    """Training-mode batch norm. ``gamma``/``beta`` of shape (C,) or None (no affine).
    Returns ``(y, mean, invstd)``; mean and invstd are float64 (C,)."""
    return train_forward("batch_norm_train_forward", x, gamma, beta, eps, None, False)


def batch_norm_backward(gy, x, gamma, mean, invstd):
    """Gradient of ``batch_norm_train_forward``: ``(gx, ggamma, gbeta)``, in gy's dtype."""
    return backward("batch_norm_backward", gy, None, x, gamma, mean, invstd, False)


def batch_norm_eval_forward(x, running_mean, running_var, gamma, beta, eps=1e-5):
    """Inference-mode batch norm with running statistics (per-channel affine map)."""
    fn = "batch_norm_eval_forward"
    shape = np.shape(x)
    x3 = x if rows_layout(x) and x.dtype in _FLOAT_DTYPES else as_ncs(fn, x)
    channels = x3.shape[1]
    mu = channel_param(fn, running_mean, "running_mean", channels, 0.0)
    var = channel_param(fn, running_var, "running_var", channels, 1.0)
    g = channel_param(fn, gamma, "gamma", channels, 1.0)
    b = channel_param(fn, beta, "beta", channels, 0.0)
    scale = g / np.sqrt(var + float(eps))
    if x3 is x:  # channels-last: per-channel rows
        x2 = nhwc_rows(x, x.dtype)
        y2 = np.empty_like(x2)
        rows_affine(x2, mu, scale, b, x2, 0, y2)
        return from_nhwc_rows(y2, shape)
    size = x3.shape[2]
    y = np.empty_like(x3)
    affine_channels(x3, lane_table(mu, channels, size), lane_table(scale, channels, size),
                    lane_table(b, channels, size), False, y)
    return y.reshape(shape)


def batch_norm_unbiased_var(invstd, eps, count):
    """The unbiased batch variance from ``invstd`` of a training forward over ``count`` values
    per channel (``count = x.size // C``), for ``batch_norm_update_running``."""
    count = int(count)
    if count < 2:
        raise ValueError(f"batch_norm_unbiased_var: need at least 2 values per channel, got {count}")
    invstd = np.asarray(invstd, dtype=np.float64)
    return np.maximum(1.0 / (invstd * invstd) - float(eps), 0.0) * (count / (count - 1))


def batch_norm_update_running(running_mean, running_var, mean, var_unbiased, momentum=0.1):
    """In place: running = (1 - momentum) * running + momentum * batch (PyTorch's rule)."""
    fn = "batch_norm_update_running"
    for name, a in (("running_mean", running_mean), ("running_var", running_var)):
        if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype not in _FLOAT_DTYPES:
            raise ValueError(f"{fn}: {name} must be a 1-D float32/float64 ndarray, got "
                             f"{type(a).__name__} {np.shape(a)}")
    channels = running_mean.shape[0]
    if running_var.shape != (channels,):
        raise ValueError(f"{fn}: running_var has shape {running_var.shape}, running_mean has "
                         f"shape {running_mean.shape}")
    m = channel_param(fn, mean, "mean", channels, 0.0)
    v = channel_param(fn, var_unbiased, "var_unbiased", channels, 1.0)
    momentum = float(momentum)
    running_mean[...] = (1.0 - momentum) * running_mean.astype(np.float64) + momentum * m
    running_var[...] = (1.0 - momentum) * running_var.astype(np.float64) + momentum * v


# ----------------------------------------------------------------------------------------------
# NumPy reference twins (float64 throughout, rounded once)


def _ref_params(x, gamma, beta):
    channels = x.shape[1]
    g = np.ones(channels) if gamma is None else np.asarray(gamma, dtype=np.float64)
    b = np.zeros(channels) if beta is None else np.asarray(beta, dtype=np.float64)
    bshape = (1, channels) + (1,) * (x.ndim - 2)
    return g.reshape(bshape), b.reshape(bshape), bshape


def batch_norm_train_forward_reference(x, gamma, beta, eps=1e-5):
    x = np.asarray(x)
    g, b, bshape = _ref_params(x, gamma, beta)
    axes = (0,) + tuple(range(2, x.ndim))
    v = x.astype(np.float64)
    mean = v.mean(axis=axes)
    var = v.var(axis=axes)
    invstd = 1.0 / np.sqrt(var + eps)
    y = (v - mean.reshape(bshape)) * invstd.reshape(bshape) * g + b
    return y.astype(x.dtype), mean, invstd


def batch_norm_backward_reference(gy, x, gamma, mean, invstd):
    gy = np.asarray(gy)
    x = np.asarray(x)
    g, _, bshape = _ref_params(x, gamma, None)
    axes = (0,) + tuple(range(2, x.ndim))
    count = x.size // x.shape[1]
    dy = gy.astype(np.float64)
    inv = np.asarray(invstd, dtype=np.float64).reshape(bshape)
    xhat = (x.astype(np.float64) - np.asarray(mean, dtype=np.float64).reshape(bshape)) * inv
    gbeta = dy.sum(axis=axes)
    ggamma = (dy * xhat).sum(axis=axes)
    gx = g * inv / count * (count * dy - gbeta.reshape(bshape) - xhat * ggamma.reshape(bshape))
    return gx.astype(gy.dtype), ggamma.astype(gy.dtype), gbeta.astype(gy.dtype)


def batch_norm_eval_forward_reference(x, running_mean, running_var, gamma, beta, eps=1e-5):
    x = np.asarray(x)
    g, b, bshape = _ref_params(x, gamma, beta)
    mu = np.asarray(running_mean, dtype=np.float64).reshape(bshape)
    var = np.asarray(running_var, dtype=np.float64).reshape(bshape)
    return ((x.astype(np.float64) - mu) / np.sqrt(var + eps) * g + b).astype(x.dtype)


def batch_norm_update_running_reference(running_mean, running_var, mean, var_unbiased,
                                        momentum=0.1):
    for c in range(running_mean.shape[0]):
        running_mean[c] = (1 - momentum) * float(running_mean[c]) + momentum * float(mean[c])
        running_var[c] = (1 - momentum) * float(running_var[c]) + momentum * float(var_unbiased[c])
