"""Batch normalisation over every dim but the channel dim 1: (N, C), (N, C, L), (N, C, H, W), ...

The input is viewed as (N, C, S) with S the product of the trailing dims. Training-mode kernels run a
``prange`` over channels and each channel is handled start to finish by one thread: its statistics
(or gradient sums) are accumulated sequentially in float64, in an order fixed by the shape, and the
same thread then writes the channel's outputs while its data is still in cache. So the result bits do
not depend on the thread count, and each tensor is read from memory about once.

Statistics: ``mean`` and ``invstd = 1 / sqrt(var + eps)`` are float64 arrays of shape (C,), with
``var`` the biased batch variance (as PyTorch normalises). ``batch_norm_unbiased_var`` recovers the
unbiased variance that ``batch_norm_update_running`` wants. Sums use a shift by the channel's first
element (one pass over the data, without the cancellation of a plain sum of squares).

The core kernels also serve the fused BN + ReLU and BN + add + ReLU passes in ``fused.py``.
"""

import numpy as np
from numba import njit, prange

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ----------------------------------------------------------------------------------------------
# Numba kernels
#
# Reductions use lane accumulators: element s of a row of length S is added to lane s % L of a
# float64 accumulator array (L = min(S, MAX_LANES), fixed by the shape). The loop over lanes has no
# dependence between iterations, so it vectorises without reassociating any sum; lanes are combined
# in index order at the end.

MAX_LANES = 512


def _lanes(size):
    return min(size, MAX_LANES)


def _acc_sum(r, a):
    """a[j] += r[k * L + j] over all blocks k of row r (L = len(a))."""
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
    """a1 += r - shift, a2 += (r - shift)**2, lane-wise as in ``acc_sum``."""
    lanes = a1.shape[0]
    size = r.shape[0]
    k = 0
    while k + lanes <= size:
        blk = r[k:k + lanes]
        for j in range(lanes):
            d = np.float64(blk[j]) - shift
            a1[j] += d
            a2[j] += d * d
        k += lanes
    rest = r[k:]
    for j in range(size - k):
        d = np.float64(rest[j]) - shift
        a1[j] += d
        a2[j] += d * d


def _acc_grad(g, x, mu, a1, a2):
    """a1 += g, a2 += g * (x - mu), lane-wise as in ``acc_sum``."""
    lanes = a1.shape[0]
    size = g.shape[0]
    k = 0
    while k + lanes <= size:
        gb = g[k:k + lanes]
        xb = x[k:k + lanes]
        for j in range(lanes):
            v = np.float64(gb[j])
            a1[j] += v
            a2[j] += v * (np.float64(xb[j]) - mu)
        k += lanes
    gb = g[k:]
    xb = x[k:]
    for j in range(size - k):
        v = np.float64(gb[j])
        a1[j] += v
        a2[j] += v * (np.float64(xb[j]) - mu)


def _lane_total(a):
    t = 0.0
    for j in range(a.shape[0]):
        t += a[j]
    return t


def _relu_mask_row(g, y, out):
    """out = g where y > 0, else 0."""
    for i in range(g.shape[0]):
        out[i] = g[i] if y[i] > 0 else 0


def _bn_train_forward(x, gamma, beta, eps, res, has_res, relu, y, mean, invstd):
    """y = gamma * (x - mean) * invstd + beta, then ReLU if ``relu``; with ``has_res`` it is
    relu(... + res) (the residual form always applies ReLU). Computed in float64, rounded once."""
    n_rows, channels, size = x.shape
    count = n_rows * size
    for c in prange(channels):
        a1 = np.zeros(lanes(size))
        a2 = np.zeros(lanes(size))
        shift = np.float64(x[0, c, 0])
        for n in range(n_rows):
            acc_shifted(x[n, c], shift, a1, a2)
        m1 = lane_total(a1) / count
        var = max(lane_total(a2) / count - m1 * m1, 0.0)
        mu = shift + m1
        inv = 1.0 / np.sqrt(var + eps)
        mean[c] = mu
        invstd[c] = inv
        scale = gamma[c] * inv
        b = beta[c]
        for n in range(n_rows):
            xr = x[n, c]
            yr = y[n, c]
            if has_res:
                rr = res[n, c]
                for i in range(size):
                    z = (np.float64(xr[i]) - mu) * scale + b + np.float64(rr[i])
                    yr[i] = 0.0 if z < 0.0 else z
            elif relu:
                for i in range(size):
                    z = (np.float64(xr[i]) - mu) * scale + b
                    yr[i] = 0.0 if z < 0.0 else z
            else:
                for i in range(size):
                    yr[i] = (np.float64(xr[i]) - mu) * scale + b


def _bn_backward(gy, x, y, use_mask, gamma, mean, invstd, gx, gres, write_gres, ggamma, gbeta):
    """Backward of the training-mode forward. With ``use_mask`` the incoming gradient is first
    zeroed where y <= 0 (ReLU); with ``write_gres`` that masked gradient is also stored in gres."""
    n_rows, channels, size = x.shape
    count = n_rows * size
    for c in prange(channels):
        mu = mean[c]
        inv = invstd[c]
        a1 = np.zeros(lanes(size))
        a2 = np.zeros(lanes(size))
        scratch = np.empty(size if use_mask and not write_gres else 0, dtype=gy.dtype)
        for n in range(n_rows):
            g = gy[n, c]
            if use_mask:
                t = gres[n, c] if write_gres else scratch
                relu_mask_row(g, y[n, c], t)
                acc_grad(t, x[n, c], mu, a1, a2)
            else:
                acc_grad(g, x[n, c], mu, a1, a2)
        sum_g = lane_total(a1)
        sum_gx = lane_total(a2)
        gbeta[c] = sum_g
        ggamma[c] = sum_gx * inv
        k = gamma[c] * inv
        mean_g = sum_g / count
        coef = sum_gx * inv * inv / count
        for n in range(n_rows):
            g = gy[n, c]
            xr = x[n, c]
            out = gx[n, c]
            if use_mask:
                yr = y[n, c]
                for i in range(size):
                    v = np.float64(g[i]) if yr[i] > 0 else 0.0
                    out[i] = k * (v - mean_g - (np.float64(xr[i]) - mu) * coef)
            else:
                for i in range(size):
                    out[i] = k * (np.float64(g[i]) - mean_g - (np.float64(xr[i]) - mu) * coef)


def _bn_eval_forward(x, mean, scale, beta, y):
    n_rows, channels, size = x.shape
    for p in prange(n_rows * channels):
        n = p // channels
        c = p % channels
        mu = mean[c]
        k = scale[c]
        b = beta[c]
        xr = x[n, c]
        yr = y[n, c]
        for i in range(size):
            yr[i] = (np.float64(xr[i]) - mu) * k + b


lanes = njit(cache=True)(_lanes)
acc_sum = njit(cache=True)(_acc_sum)
acc_shifted = njit(cache=True)(_acc_shifted)
acc_grad = njit(cache=True)(_acc_grad)
lane_total = njit(cache=True)(_lane_total)
relu_mask_row = njit(cache=True)(_relu_mask_row)
bn_train_forward = njit(cache=True, parallel=True)(_bn_train_forward)
bn_backward = njit(cache=True, parallel=True)(_bn_backward)
bn_eval_forward = njit(cache=True, parallel=True)(_bn_eval_forward)


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


def train_forward(fn, x, gamma, beta, eps, residual, relu):
    shape = np.shape(x)
    x3 = as_ncs(fn, x)
    check_train_count(fn, shape)
    channels = x3.shape[1]
    g = channel_param(fn, gamma, "gamma", channels, 1.0)
    b = channel_param(fn, beta, "beta", channels, 0.0)
    if residual is None:
        r3 = np.empty((0, 0, 0), dtype=x3.dtype)
    else:
        r3 = like_ncs(fn, residual, "residual", shape, x3.dtype)
    y = np.empty_like(x3)
    mean = np.empty(channels)
    invstd = np.empty(channels)
    bn_train_forward(x3, g, b, float(eps), r3, residual is not None, bool(relu), y, mean, invstd)
    return y.reshape(shape), mean, invstd


def backward(fn, gy, y, x, gamma, mean, invstd, write_gres):
    x = np.asarray(x)
    shape = x.shape
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
    x3 = as_ncs(fn, x)
    channels = x3.shape[1]
    mu = channel_param(fn, running_mean, "running_mean", channels, 0.0)
    var = channel_param(fn, running_var, "running_var", channels, 1.0)
    g = channel_param(fn, gamma, "gamma", channels, 1.0)
    b = channel_param(fn, beta, "beta", channels, 0.0)
    scale = g / np.sqrt(var + float(eps))
    y = np.empty_like(x3)
    bn_eval_forward(x3, mu, scale, b, y)
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
