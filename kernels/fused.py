"""Fused one-pass elementwise kernels for conv nets: bias + ReLU, BN + ReLU, add + ReLU, and
BN + add + ReLU (the end of a residual block), forward and backward.

Layout: (N, C, ...) with channels in dim 1, viewed as (N, C, S). ReLU keeps NaN (as torch.relu) and
its gradient passes where the output is > 0. Elementwise passes run a ``prange`` over (row, channel
block) segments or over fixed-size chunks of the flat array; reductions (bias and BN gradients) run a
``prange`` over channel blocks, each block summed in float64 by one thread in an order fixed by the
shape (see norm.py). Results therefore do not depend on the thread count.

Arrays other than the first are converted to the first one's dtype.
"""

import numpy as np
from numba import njit, prange

from freenet.kernels import norm as _norm
from freenet.kernels.layout import empty_in_layout, flat_like
from freenet.kernels.norm import batch_norm_backward_reference

CHUNK = 1 << 14  # elements per block of the flat elementwise kernels; fixed, not per thread


# ----------------------------------------------------------------------------------------------
# Numba kernels


def _relu_grad_channels(gy, y, gx, gbias):
    """gx = gy where y > 0 else 0; gbias[c] = sum of gx over channel c, in float64 lane sums over
    channel blocks as in norm.py."""
    n_rows, channels, size = gy.shape
    cb = _norm.channel_block(channels, size)
    width = channels * size
    gy2 = gy.reshape(n_rows, width)
    y2 = y.reshape(n_rows, width)
    gx2 = gx.reshape(n_rows, width)
    for blk in prange((channels + cb - 1) // cb):
        c0 = blk * cb
        nc = min(cb, channels - c0)
        lo = c0 * size
        hi = lo + nc * size
        acc = np.zeros(_norm.lanes(hi - lo))
        for n in range(n_rows):
            out = gx2[n, lo:hi]
            _norm.relu_mask_row(gy2[n, lo:hi], y2[n, lo:hi], out)
            _norm.acc_sum(out, acc)
        for ci in range(nc):
            gbias[c0 + ci] = _norm.channel_total(acc, ci, nc, size)


def _add_relu_flat(x, r, y):
    size = x.shape[0]
    for b in prange((size + CHUNK - 1) // CHUNK):
        lo = b * CHUNK
        hi = min(lo + CHUNK, size)
        xb = x[lo:hi]
        rb = r[lo:hi]
        yb = y[lo:hi]
        for i in range(hi - lo):
            z = xb[i] + rb[i]
            yb[i] = 0 if z < 0 else z


def _relu_flat(x, y):
    size = x.shape[0]
    for b in prange((size + CHUNK - 1) // CHUNK):
        lo = b * CHUNK
        hi = min(lo + CHUNK, size)
        xb = x[lo:hi]
        yb = y[lo:hi]
        for i in range(hi - lo):
            z = xb[i]
            yb[i] = 0 if z < 0 else z


def _relu_grad_flat(gy, y, gx):
    size = gy.shape[0]
    for b in prange((size + CHUNK - 1) // CHUNK):
        lo = b * CHUNK
        hi = min(lo + CHUNK, size)
        _norm.relu_mask_row(gy[lo:hi], y[lo:hi], gx[lo:hi])


relu_grad_channels = njit(cache=True, parallel=True)(_relu_grad_channels)
add_relu_flat = njit(cache=True, parallel=True)(_add_relu_flat)
relu_grad_flat = njit(cache=True, parallel=True)(_relu_grad_flat)
relu_flat = njit(cache=True, parallel=True)(_relu_flat)


# ----------------------------------------------------------------------------------------------
# Public kernels


def bias_relu_forward(x, bias):
    """relu(x + bias), bias of shape (C,) broadcast along dim 1 of x (N, C, ...)."""
    fn = "bias_relu_forward"
    shape = np.shape(x)
    x3 = _norm.as_ncs(fn, x)
    bias = np.asarray(bias)
    if bias.shape != (x3.shape[1],):
        raise ValueError(f"{fn}: bias has shape {bias.shape}, expected ({x3.shape[1]},) for "
                         f"input of shape {shape}")
    channels, size = x3.shape[1], x3.shape[2]
    zero = _norm.lane_table(np.zeros(channels), channels, size)
    one = _norm.lane_table(np.ones(channels), channels, size)
    # the bias rounded to x's dtype first: float64 arithmetic then gives exactly x + bias in dtype
    b = _norm.lane_table(bias.astype(x3.dtype), channels, size)
    y = np.empty_like(x3)
    _norm.affine_channels(x3, zero, one, b, True, y)
    return y.reshape(shape)


def bias_relu_backward(gy, y):
    """Gradient of ``bias_relu_forward`` from its output y: ``(gx, gbias)``."""
    fn = "bias_relu_backward"
    shape = np.shape(gy)
    g3 = _norm.as_ncs(fn, gy, "gradient")
    y3 = _norm.like_ncs(fn, y, "output", shape, g3.dtype)
    gx = np.empty_like(g3)
    gbias = np.empty(g3.shape[1])
    relu_grad_channels(g3, y3, gx, gbias)
    return gx.reshape(shape), gbias.astype(g3.dtype)


def relu_forward(x):
    """max(x, 0) (NaN stays NaN), in parallel over fixed chunks."""
    x = np.asarray(x)
    _check_float("relu_forward", x, "input")
    y, yf = empty_in_layout(x, x.dtype)
    relu_flat(flat_like(x, x, x.dtype), yf)
    return y


def relu_backward(gy, y):
    """Gradient of ``relu_forward`` from its output: gy where y > 0, else 0."""
    return add_relu_backward(gy, y)


def add_relu_forward(x, residual):
    """relu(x + residual) for two arrays of the same shape."""
    fn = "add_relu_forward"
    x, residual = np.asarray(x), np.asarray(residual)
    _check_float(fn, x, "input")
    if residual.shape != x.shape:
        raise ValueError(f"{fn}: residual has shape {residual.shape}, input has shape {x.shape}")
    y, yf = empty_in_layout(x, x.dtype)
    add_relu_flat(flat_like(x, x, x.dtype), flat_like(residual, x, x.dtype), yf)
    return y


def add_relu_backward(gy, y):
    """Gradient of ``add_relu_forward``, the same for both inputs: gy where y > 0, else 0."""
    fn = "add_relu_backward"
    gy, y = np.asarray(gy), np.asarray(y)
    _check_float(fn, gy, "gradient")
    if y.shape != gy.shape:
        raise ValueError(f"{fn}: output has shape {y.shape}, gradient has shape {gy.shape}")
    gx, gxf = empty_in_layout(y, gy.dtype)  # in the layout of the forward's output
    relu_grad_flat(flat_like(gy, y, gy.dtype), flat_like(y, y, gy.dtype), gxf)
    return gx


def batch_norm_relu_train_forward(x, gamma, beta, eps=1e-5):
    """relu(batch_norm_train(x)) in one pass. Returns ``(y, mean, invstd)`` (float64 stats)."""
    return _norm.train_forward("batch_norm_relu_train_forward", x, gamma, beta, eps, None, True)


def batch_norm_relu_backward(gy, y, x, gamma, mean, invstd):
    """Gradient of ``batch_norm_relu_train_forward`` (y its output): ``(gx, ggamma, gbeta)``."""
    return _norm.backward("batch_norm_relu_backward", gy, y, x, gamma, mean, invstd, False)


def batch_norm_add_relu_train_forward(x, residual, gamma, beta, eps=1e-5):
    """relu(batch_norm_train(x) + residual) in one pass. Returns ``(y, mean, invstd)``."""
    if residual is None:
        raise ValueError("batch_norm_add_relu_train_forward: residual is None")
    return _norm.train_forward("batch_norm_add_relu_train_forward", x, gamma, beta, eps,
                               residual, True)


def batch_norm_add_relu_backward(gy, y, x, gamma, mean, invstd):
    """Gradient of ``batch_norm_add_relu_train_forward`` (y its output):
    ``(gx, gresidual, ggamma, gbeta)``."""
    return _norm.backward("batch_norm_add_relu_backward", gy, y, x, gamma, mean, invstd, True)


def _check_float(fn, a, name):
    if a.dtype not in _norm._FLOAT_DTYPES:
        raise TypeError(f"{fn}: expected float32 or float64 {name}, got {a.dtype}")
    if a.size == 0:
        raise ValueError(f"{fn}: {name} of shape {a.shape} is empty")


# ----------------------------------------------------------------------------------------------
# NumPy reference twins


def _relu(z):
    return np.where(z < 0, 0, z)


def _channel_shape(x):
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def bias_relu_forward_reference(x, bias):
    x = np.asarray(x)
    return _relu(x + np.asarray(bias, dtype=x.dtype).reshape(_channel_shape(x))).astype(x.dtype)


def bias_relu_backward_reference(gy, y):
    gy = np.asarray(gy)
    gx = np.where(np.asarray(y) > 0, gy, 0).astype(gy.dtype)
    axes = (0,) + tuple(range(2, gy.ndim))
    return gx, gx.astype(np.float64).sum(axis=axes).astype(gy.dtype)


def add_relu_forward_reference(x, residual):
    x = np.asarray(x)
    return _relu(x + np.asarray(residual, dtype=x.dtype)).astype(x.dtype)


def relu_forward_reference(x):
    x = np.asarray(x)
    return _relu(x).astype(x.dtype)


def add_relu_backward_reference(gy, y):
    gy = np.asarray(gy)
    return np.where(np.asarray(y) > 0, gy, 0).astype(gy.dtype)


relu_backward_reference = add_relu_backward_reference


def _bn_pre_activation(x, gamma, beta, eps):
    """BN of x in float64 (not rounded), with the batch statistics."""
    x = np.asarray(x)
    cs = _channel_shape(x)
    axes = (0,) + tuple(range(2, x.ndim))
    v = x.astype(np.float64)
    mean = v.mean(axis=axes)
    invstd = 1.0 / np.sqrt(v.var(axis=axes) + eps)
    g = 1.0 if gamma is None else np.asarray(gamma, dtype=np.float64).reshape(cs)
    b = 0.0 if beta is None else np.asarray(beta, dtype=np.float64).reshape(cs)
    return (v - mean.reshape(cs)) * invstd.reshape(cs) * g + b, mean, invstd


def batch_norm_relu_train_forward_reference(x, gamma, beta, eps=1e-5):
    z, mean, invstd = _bn_pre_activation(x, gamma, beta, eps)
    return _relu(z).astype(np.asarray(x).dtype), mean, invstd


def batch_norm_relu_backward_reference(gy, y, x, gamma, mean, invstd):
    g = add_relu_backward_reference(gy, y)
    return batch_norm_backward_reference(g, x, gamma, mean, invstd)


def batch_norm_add_relu_train_forward_reference(x, residual, gamma, beta, eps=1e-5):
    z, mean, invstd = _bn_pre_activation(x, gamma, beta, eps)
    z = z + np.asarray(residual, dtype=np.float64)
    return _relu(z).astype(np.asarray(x).dtype), mean, invstd


def batch_norm_add_relu_backward_reference(gy, y, x, gamma, mean, invstd):
    g = add_relu_backward_reference(gy, y)
    gx, ggamma, gbeta = batch_norm_backward_reference(g, x, gamma, mean, invstd)
    return gx, g, ggamma, gbeta

