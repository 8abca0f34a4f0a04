"""Resizing NCHW images: nearest and bilinear interpolation, with PyTorch's index and weight rules.

Both modes are separable: each output pixel reads input rows and columns that depend only on its own
row and column. The op gathers along the width, then along the height (the order of PyTorch's CPU
kernel, so bilinear's products and sums are the same ones), and backward scatters the gradient back
the same way, adding each input pixel's taps in a fixed order (``_rounds``).
"""

import math

import numpy as np

from freenet.errors import FreenetError, op
from freenet.tensor import record

_MODES = ("nearest", "nearest-exact", "bilinear")


def _pair(value, name):
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise FreenetError(f"interpolate: {name} must be a number or a pair for a 4-d input, not {value!r}")
        return tuple(value)
    return (value, value)


def _nearest(in_size, out_size, scale, exact):
    """Source index of each output index (PyTorch's nearest_idx and nearest_exact_idx, in float32)."""
    dst = np.arange(out_size)
    if not exact and out_size == in_size:
        return dst
    if not exact and out_size == 2 * in_size:
        return dst >> 1
    s = np.float32(1.0 / scale) if scale else np.float32(in_size) / np.float32(out_size)
    if exact:
        src = np.floor(((dst + 0.5) * np.float64(s)).astype(np.float32))
    else:
        src = np.floor(dst.astype(np.float32) * s)
    return np.minimum(src.astype(np.int64), in_size - 1)


def _linear(in_size, out_size, scale, align_corners, dtype):
    """(index0, index1, weight0, weight1) of each output index (or (index,) for a copy): PyTorch's
    area_pixel_compute_source_index and guard_index_and_lambda, in the input's dtype. An axis whose
    size does not change is copied, whatever the scale (PyTorch's rule too)."""
    dt = np.dtype(dtype).type
    if out_size == in_size:
        return (np.arange(in_size),)
    if align_corners:
        s = dt(in_size - 1) / dt(out_size - 1) if out_size > 1 else dt(0)
        src = s * np.arange(out_size).astype(dt)
    else:
        s = dt(1.0 / scale) if scale else dt(in_size) / dt(out_size)
        src = np.maximum(s * (np.arange(out_size).astype(dt) + dt(0.5)) - dt(0.5), dt(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    w1 = np.clip(src - i0.astype(dt), dt(0), dt(1))
    i1 = i0 + (i0 < in_size - 1)
    return i0, i1, dt(1) - w1, w1


def _gather(v, axis, taps):
    """Along ``axis``: v at the indices, or the weighted sum of v at the two indices."""
    if len(taps) == 1:
        return np.take(v, taps[0], axis=axis)
    i0, i1, w0, w1 = taps
    shape = (-1,) + (1,) * (v.ndim - 1 - axis)
    return np.take(v, i0, axis=axis) * w0.reshape(shape) + np.take(v, i1, axis=axis) * w1.reshape(shape)


def _rounds(in_size, taps):
    """The transpose of ``taps`` for backward, as rounds: round k lists, for each input index that has
    a k-th tap, that index, the output position it comes from, and its weight (None for nearest). The
    targets of a round are distinct, so a round is one gather and one add; ``None`` targets mean all."""
    out_size = taps[0].size
    if len(taps) == 1:
        sources, positions, weights = taps[0], np.arange(out_size), None
    else:
        i0, i1, w0, w1 = taps
        sources, positions = np.r_[i0, i1], np.r_[np.arange(out_size), np.arange(out_size)]
        weights = np.r_[w0, w1]
    order = np.argsort(sources, kind="stable")
    sources, positions = sources[order], positions[order]
    weights = None if weights is None else weights[order]
    starts = np.flatnonzero(np.r_[True, sources[1:] != sources[:-1]])
    counts = np.diff(np.r_[starts, sources.size])
    rounds = []
    for k in range(int(counts.max(initial=0))):
        picked = starts[counts > k] + k
        targets = sources[picked]
        rounds.append((None if targets.size == in_size else targets, positions[picked],
                       None if weights is None else weights[picked]))
    return rounds


def _scatter(g, axis, size, rounds):
    """The gradient of ``_gather`` along ``axis`` (an input of ``size`` there), round by round: each
    input index's taps are added in a fixed order."""
    shape = list(g.shape)
    shape[axis] = size
    wshape = (-1,) + (1,) * (g.ndim - 1 - axis)
    where = [slice(None)] * g.ndim
    out = None
    for targets, positions, weights in rounds:
        part = np.take(g, positions, axis=axis)
        if weights is not None:
            part *= weights.reshape(wshape)
        if targets is None:
            if out is None:
                out = part
            else:
                out += part
            continue
        if out is None:
            out = np.zeros(shape, dtype=g.dtype)
        where[axis] = targets
        out[tuple(where)] += part
    return np.zeros(shape, dtype=g.dtype) if out is None else out


def _output_size(in_sizes, size, scale_factor):
    if (size is None) == (scale_factor is None):
        raise FreenetError("interpolate: give exactly one of size and scale_factor")
    if size is not None:
        out = tuple(int(n) for n in _pair(size, "size"))
    else:
        scales = tuple(float(s) for s in _pair(scale_factor, "scale_factor"))
        if any(not s > 0 or not math.isfinite(s) for s in scales):
            raise FreenetError(f"interpolate: scale_factor must be positive and finite, not {scale_factor!r}")
        out = tuple(math.floor(n * s) for n, s in zip(in_sizes, scales))
    if any(n <= 0 for n in out):
        raise FreenetError(f"interpolate: the output size {out} must be positive (input {in_sizes}, size={size}, "
                           f"scale_factor={scale_factor})")
    return out


@op
def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resizes ``input`` (N, C, H, W) to ``size`` (an int or (h, w)) or by ``scale_factor`` (output
    floor(H * s), floor(W * s)), by ``mode`` "nearest" (PyTorch's legacy rule: source floor(dst * scale)),
    "nearest-exact" (floor((dst + 0.5) * scale)) or "bilinear" (``align_corners`` as in PyTorch, default
    False). As in PyTorch, a given ``scale_factor`` sets the source coordinates (scale = 1 / scale_factor)
    unless ``recompute_scale_factor`` is true.
    """
    x = input
    if mode not in _MODES:
        raise FreenetError(f"interpolate: mode must be one of {_MODES}, not {mode!r}")
    if mode.startswith("nearest") and align_corners is not None:
        raise FreenetError("interpolate: align_corners can only be set with the interpolating modes (bilinear)")
    if antialias:
        raise FreenetError("interpolate: antialias=True is not supported")
    if x._data.ndim != 4:
        raise FreenetError(f"interpolate: only 4-d (N, C, H, W) inputs are supported, got shape {x._data.shape}")
    if mode == "bilinear" and x._data.dtype.kind != "f":
        raise FreenetError(f"interpolate: bilinear needs a float32 or float64 input, not {x._data.dtype}")
    in_sizes = x._data.shape[2:]
    out_sizes = _output_size(in_sizes, size, scale_factor)
    if scale_factor is not None and not recompute_scale_factor:
        scales = tuple(float(s) for s in _pair(scale_factor, "scale_factor"))
    else:
        scales = (None, None)
    if mode == "bilinear":
        taps = [_linear(n, m, s, bool(align_corners), x._data.dtype) for n, m, s in zip(in_sizes, out_sizes, scales)]
    else:
        taps = [(_nearest(n, m, s, mode == "nearest-exact"),) for n, m, s in zip(in_sizes, out_sizes, scales)]
    out = _gather(_gather(x._data, 3, taps[1]), 2, taps[0])
    rounds = [_rounds(n, t) for n, t in zip(in_sizes, taps)]

    def backward(g):
        return (_scatter(_scatter(g, 2, in_sizes[0], rounds[0]), 3, in_sizes[1], rounds[1]),)

    return record(out, (x,), backward, saved=())
