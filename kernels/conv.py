"""2-D convolution (NCHW, cross-correlation as in PyTorch): forward, input, weight and bias gradients.

Two designs, both on single-threaded BLAS calls over fixed blocks:

* **Winograd F(m x m, 3x3)**, m = 2, 3 or 4 (``winograd.py``), for 3x3, stride-1, undilated,
  ungrouped convolutions with at least WINO_MIN_CHANNELS input channels: per block of m x m output
  tiles, pack the input rows channels-last, transform them (V = B^T d B), (m + 2)^2 GEMMs
  ``V[xi] @ U[xi]`` with U = G g G^T, transform back (A^T M A) into the output rows, add the bias.
  9 m^2 / (m + 2)^2 times fewer multiplications than the direct sum (2.25x, 3.24x, 4x); the tile
  size is fixed by the output size (``_wino_tile``: F(3x3) for 9x9 and 14x14, F(4x4) for 19x19 and
  32x32), the same for the forward, input and weight gradients.
* **im2col + GEMM** (``im2col.py``) for everything else: output pixels ``(n, oh, ow)`` are the rows of
  a matrix product whose inner dimension is the kernel taps ``(i, j, c)`` of one group; pack the
  input rows channels-last, im2col, ``cols @ W`` per group into the output rows, add the bias. A
  1x1, stride-1, unpadded convolution skips im2col (the channels-last pack is the column matrix).

Both produce output rows (pixel, channel): the result is channels-last (NHWC memory under the NCHW
shape, ``layout.py``; the strided input gradient, by col2im, is NCHW), and a channels-last input
needs no packing beyond padding. The column path for few taps (C * kh * kw <= COL_MAX_TAPS: a
network's first layer) works in NCHW: the forward sums the taps itself (``im2col.cols_forward``, no
GEMM; from shifted copies of each channel at stride 1, else column matrices), and the gradients'
GEMMs read per-image column matrices as they are. A Winograd
unit runs start to finish in one Numba call (``winograd.WINO_UNIT[m]``, BLAS through SciPy), so two
threads do not queue for the GIL between its steps. So in a conv net
the activations stay channels-last from one convolution to the next (through batch norm, ReLU and
2x2 max pooling, which keep the layout), forward and backward, and are never transposed.
Measured on the 2-core Zen 4 machine, against the same code storing NCHW and packing it back: the
go9-6x64 training step 290 -> 211 ms at 2 threads (``benchmarks/step_profile.py go9``).

Work is cut into *units* (a few whole images, a range of output or tile rows of one image, or, for
few pixels and many channels, a range of output channels) whose size depends only on the problem's
shape; units are grouped into *tasks*, each run by one thread of the pool (``parallel.run_blocks``)
with its own thread-local scratch buffers.

* forward: each output element is written by exactly one task.
* input gradient, stride 1: the convolution of ``gy`` with the spatially flipped filter, in and out
  channels swapped (padding ``d * (k - 1) - p``), by the forward code (Winograd when 3x3). Stride
  > 1: ``gy_rows @ W`` and col2im, per whole image.
* weight gradient: each task sums ``gy_unit^T @ cols_unit`` (Winograd: the (m + 2)^2 products of the
  transformed gy and input tiles) over its units in order; task partials are added in task order.
* bias gradient: float64 sums per channel in an order fixed by the shape (``norm.channel_sums`` for
  NCHW, row-block column sums for channels-last), on one thread below a million values.

Nothing depends on the thread count, so results are bit-identical with any number of threads.
Winograd rounds differently from the direct sum (errors follow the largest magnitude in each tile
rather than each element's own), more so for larger tiles: measured, the largest error relative to
the sum of |terms| (the largest in the element's (2m - 1)^2 neighbourhood) is 3.3e-7 for F(2x2),
1.7e-6 for F(3x3) and 5.4e-6 for F(4x4) in float32 (float64: 6.5e-16, 3.2e-15, 5.9e-15); see
``WINO_TOL`` in the tests.
"""

import functools
import inspect
import itertools
import threading

import numba
import numpy as np

from freenet.kernels.gemm import matmul_into
from freenet.kernels.im2col import (col2im_cols, col2im_rows, cols_forward, im2col_cols, im2col_rows,
                                    pack_rows, store_rows, weight_rows, weight_taps, weight_untaps)
from freenet.kernels.layout import channels_last, from_nhwc_rows, nhwc_rows
from freenet.kernels.norm import column_sums, sum_channels
from freenet.kernels import parallel
from freenet.kernels.parallel import MAILBOX, Serve, block_ranges, run_blocks, run_kernels
from freenet.kernels.winograd import WINOGRAD, _wino_split_unit, stage_split, wino_pack_any
from freenet.kernels.winograd_transforms import (FILTER, FILTER_GRAD, TILES_GY, TILES_IN, WINO_GRAD_SPLIT_UNIT,
                                                 WINO_GRAD_UNIT, WINO_SPLIT_UNIT, WINO_UNIT)

UNIT_BYTES = 1 << 20  # column-matrix bytes per unit: the im2col output stays in L2 for the GEMM
PARALLEL_WORK = 1 << 27  # flops + 64 x elements in and out; below this one task: waking the pool
                         # (~0.1-0.2 ms here) costs more than a second thread saves
SMALL_PARALLEL_WORK = 1 << 26  # from here, a problem with pixels for two whole units of at least
                               # SPLIT_MIN_TILES tiles (MIN_ROWS rows) splits too: go9 at batch 16
                               # (144 tiles) fwd+bwd 1.66 -> 1.49 ms at 2 threads; at batch 8 (72)
                               # splitting cost more (0.86 -> 0.94), and a 19x19 image cut in two
                               # (25 tiles) too (a go19-6x128 batch-1 evaluation 6.3 -> 8.0 ms). So
                               # does one with few pixels and SPLIT_CHANNELS output channels, by
                               # channel: (1, 128, 19x19, 128) fwd+bwd 2.03 -> 1.43 ms, its
                               # batch-1 evaluation 6.0 -> 4.6 ms (with the pool's polling threads)
SPLIT_MIN_TILES = 48
MIN_ROWS = 256  # fewer rows make the GEMM slower (e.g. 95 rows: -25% here)
SPLIT_CHANNELS = 128  # few pixels but at least this many output channels: split the channels
MIN_UNITS = 2  # above PARALLEL_WORK, at least this many units, so batch-1 problems split too
WINO_TILES = 240  # Winograd: tiles per unit (each tile is (m + 2)^2 x C values of V); with C = K = 64
                  # the GEMMs (tiles, C) @ (C, K) stay under OpenBLAS's small-matrix size (M*N*K <= 1e6):
                  # 1.4x faster. For C * K up to 4x more (128 channels), fewer tiles keep them under it
                  # (61 tiles, 128 x 128: 130 GF/s against 118 at 240); past that, 240 (see _wino_cap).
WINO_SMALL_GEMM = 1_000_000
WINO_TILE = None  # force this Winograd tile size m (2, 3 or 4) for every shape (tests); None: the rule;
                  # 0: no Winograd, every convolution direct (benchmarks/winograd_curves.py compares the two)
WINO_F4_COST = 1.1  # F(4x4)'s larger transforms: its multiplies count this much more in the rule
WINO_MIN_CHANNELS = 8  # Winograd only with this many input channels (the GEMMs' inner size)
COL_MAX_TAPS = 32  # C * kh * kw up to this (one group): NCHW column matrices, no channels-last copies
KERNEL_SPLIT_WORK = 1 << 22  # a Winograd problem of one unit from here (go9 at batch 1: 6.6M) runs as
KERNEL_SPLIT_MIN = 16        # two kernel calls of half the output channels each (at least this many),
                             # one per thread (``run_kernels``): go9-b1 forward 84 -> 50-56 us on an
                             # AMD EPYC host, 80 -> 66-70 us on an Intel Xeon one (calm phases)
FILTER_ROW = 512  # wino_filter: channel pairs per pass (go9's 64 x 64: 256-1024 all within 10%)
S_BLOCK_BYTES = 1 << 20  # a channel-split Winograd weight gradient: sums S per block of output channels
                         # (go19-256-b1's 128 channels per unit: 4.7 MB of S at once, or 5 blocks of 1 MB:
                         # 1.69 -> 1.37 ms at 2 threads; blocks of 0.5 / 2 MB 1.47 / 1.32)
MAX_TASKS = 16  # tasks per call: enough to balance two or more threads on a noisy machine
MAX_SUM_TASKS = 8  # weight gradient: each task returns a (K, C*kh*kw) partial to be added up

__all__ = [
    "conv2d_forward", "Conv2dPrepared", "conv2d_backward", "conv2d_backward_input", "conv2d_backward_weight",
    "conv2d_backward_bias",
    "conv2d_forward_reference", "conv2d_backward_input_reference",
    "conv2d_backward_weight_reference", "conv2d_backward_bias_reference", "conv2d_output_shape",
]


# ----------------------------------------------------------------------------------------------
# Shapes


def _pair(v, name):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"conv2d: {name} must be an int or a pair, got {v!r}")
        a, b = v
    else:
        a = b = v
    try:
        a, b = int(a), int(b)
    except (TypeError, ValueError):
        raise ValueError(f"conv2d: {name} must be an int or a pair of ints, got {v!r}") from None
    return a, b


class _Geometry:
    """Validated shapes of one convolution. Padding may be negative only when built internally."""

    __slots__ = ("N", "C", "H", "W", "K", "Cg", "Kg", "G", "kh", "kw", "sh", "sw", "ph", "pw",
                 "dh", "dw", "Ho", "Wo", "w_shape", "pointwise", "plans")

    def __init__(self, x_shape, w_shape, stride, padding, dilation, groups, internal=False):
        x_shape, w_shape = tuple(x_shape), tuple(w_shape)
        if len(x_shape) != 4:
            raise ValueError(f"conv2d: input must be 4-D (N, C, H, W), got shape {x_shape}")
        if len(w_shape) != 4:
            raise ValueError(f"conv2d: weight must be 4-D (K, C/groups, kh, kw), got shape {w_shape}")
        self.sh, self.sw = _pair(stride, "stride")
        self.ph, self.pw = _pair(padding, "padding")
        self.dh, self.dw = _pair(dilation, "dilation")
        G = int(groups)
        if self.sh < 1 or self.sw < 1:
            raise ValueError(f"conv2d: stride must be >= 1, got {(self.sh, self.sw)}")
        if self.dh < 1 or self.dw < 1:
            raise ValueError(f"conv2d: dilation must be >= 1, got {(self.dh, self.dw)}")
        if not internal and (self.ph < 0 or self.pw < 0):
            raise ValueError(f"conv2d: padding must be >= 0, got {(self.ph, self.pw)}")
        if G < 1:
            raise ValueError(f"conv2d: groups must be >= 1, got {G}")
        N, C, H, W = x_shape
        K, Cg, kh, kw = w_shape
        if C % G:
            raise ValueError(f"conv2d: groups={G} does not divide the {C} input channels "
                             f"of input shape {x_shape}")
        if K % G:
            raise ValueError(f"conv2d: groups={G} does not divide the {K} output channels "
                             f"of weight shape {w_shape}")
        if Cg * G != C:
            raise ValueError(f"conv2d: weight shape {w_shape} with groups={G} expects "
                             f"{Cg * G} input channels, input shape {x_shape} has {C}")
        if kh < 1 or kw < 1:
            raise ValueError(f"conv2d: empty kernel in weight shape {w_shape}")
        Ho = (H + 2 * self.ph - self.dh * (kh - 1) - 1) // self.sh + 1
        Wo = (W + 2 * self.pw - self.dw * (kw - 1) - 1) // self.sw + 1
        if Ho <= 0 or Wo <= 0:
            raise ValueError(
                f"conv2d: output size {Ho}x{Wo} <= 0 for input shape {x_shape}, weight shape "
                f"{w_shape}, stride {(self.sh, self.sw)}, padding {(self.ph, self.pw)}, "
                f"dilation {(self.dh, self.dw)}")
        self.N, self.C, self.H, self.W, self.K, self.Cg, self.kh, self.kw = N, C, H, W, K, Cg, kh, kw
        self.G, self.Kg, self.Ho, self.Wo = G, K // G, Ho, Wo
        self.w_shape = w_shape
        # 1x1, stride 1, unpadded, one group: the channels-last input is the column matrix.
        self.pointwise = (kh == 1 and kw == 1 and self.sh == 1 and self.sw == 1 and self.ph == 0
                          and self.pw == 0 and G == 1)
        self.plans = {}

    def in_rows(self, oh0, oh1):
        """Input rows [h0, h1) read by output rows [oh0, oh1), clipped to the image."""
        h0 = max(0, oh0 * self.sh - self.ph)
        h1 = min(self.H, (oh1 - 1) * self.sh - self.ph + (self.kh - 1) * self.dh + 1)
        return h0, max(h0, h1)

    @property
    def out_shape(self):
        return (self.N, self.K, self.Ho, self.Wo)

    @property
    def flops(self):
        return 2 * self.N * self.K * self.Cg * self.kh * self.kw * self.Ho * self.Wo

    @property
    def work(self):
        """flops, plus data movement for the memory-bound shapes."""
        return self.flops + 64 * self.N * (self.C * self.H * self.W + self.K * self.Ho * self.Wo)

    @property
    def big(self):
        """Worth more than one task whatever its shape (see also SMALL_PARALLEL_WORK)."""
        return self.work >= PARALLEL_WORK


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1):
    """The output shape ``(N, K, Ho, Wo)``; raises ``ValueError`` when the shapes do not fit."""
    return _Geometry(x_shape, w_shape, stride, padding, dilation, groups).out_shape


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _dtype(*arrays):
    dts = [a.dtype if isinstance(a, np.ndarray) else np.asarray(a).dtype for a in arrays]
    dt = dts[0] if dts.count(dts[0]) == len(dts) else np.result_type(*dts)
    if dt not in _FLOATS:
        raise TypeError(f"conv2d: float32 or float64 arrays expected, got {dt}")
    return dt


def _check_gy(gy, g, who):
    if tuple(gy.shape) != g.out_shape:
        raise ValueError(f"{who}: output gradient shape {tuple(gy.shape)} does not match the "
                         f"convolution's output shape {g.out_shape}")


# ----------------------------------------------------------------------------------------------
# Reference twins: plain NumPy, one product per kernel tap on a padded, strided slice, in float64.


def _tap(g, i, j):
    """The (row, column) slices of the padded input read by kernel tap (i, j)."""
    hs = slice(i * g.dh, i * g.dh + g.sh * (g.Ho - 1) + 1, g.sh)
    ws = slice(j * g.dw, j * g.dw + g.sw * (g.Wo - 1) + 1, g.sw)
    return hs, ws


def _padded(x, g):
    return np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (g.ph, g.ph), (g.pw, g.pw)))


def conv2d_forward_reference(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    g = _Geometry(np.shape(x), np.shape(w), stride, padding, dilation, groups)
    dt = _dtype(np.asarray(x), np.asarray(w))
    xp, w64 = _padded(x, g), np.asarray(w, np.float64)
    y = np.zeros(g.out_shape)
    for gi in range(g.G):
        cs, ks = slice(gi * g.Cg, (gi + 1) * g.Cg), slice(gi * g.Kg, (gi + 1) * g.Kg)
        for i in range(g.kh):
            for j in range(g.kw):
                hs, ws = _tap(g, i, j)
                y[:, ks] += np.einsum("nchw,kc->nkhw", xp[:, cs, hs, ws], w64[ks, :, i, j])
    if bias is not None:
        y += np.asarray(bias, np.float64).reshape(1, -1, 1, 1)
    return y.astype(dt)


def conv2d_backward_input_reference(gy, w, x_shape, stride=1, padding=0, dilation=1, groups=1):
    g = _Geometry(x_shape, np.shape(w), stride, padding, dilation, groups)
    _check_gy(gy, g, "conv2d_backward_input_reference")
    dt = _dtype(np.asarray(gy), np.asarray(w))
    gy64, w64 = np.asarray(gy, np.float64), np.asarray(w, np.float64)
    gxp = np.zeros((g.N, g.C, g.H + 2 * g.ph, g.W + 2 * g.pw))
    for gi in range(g.G):
        cs, ks = slice(gi * g.Cg, (gi + 1) * g.Cg), slice(gi * g.Kg, (gi + 1) * g.Kg)
        for i in range(g.kh):
            for j in range(g.kw):
                hs, ws = _tap(g, i, j)
                gxp[:, cs, hs, ws] += np.einsum("nkhw,kc->nchw", gy64[:, ks], w64[ks, :, i, j])
    return gxp[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W].astype(dt)


def conv2d_backward_weight_reference(gy, x, w_shape, stride=1, padding=0, dilation=1, groups=1):
    g = _Geometry(np.shape(x), w_shape, stride, padding, dilation, groups)
    _check_gy(gy, g, "conv2d_backward_weight_reference")
    dt = _dtype(np.asarray(gy), np.asarray(x))
    xp, gy64 = _padded(x, g), np.asarray(gy, np.float64)
    gw = np.zeros(tuple(w_shape))
    for gi in range(g.G):
        cs, ks = slice(gi * g.Cg, (gi + 1) * g.Cg), slice(gi * g.Kg, (gi + 1) * g.Kg)
        for i in range(g.kh):
            for j in range(g.kw):
                hs, ws = _tap(g, i, j)
                gw[ks, :, i, j] = np.einsum("nkhw,nchw->kc", gy64[:, ks], xp[:, cs, hs, ws])
    return gw.astype(dt)


def conv2d_backward_bias_reference(gy):
    gy = np.asarray(gy)
    if gy.ndim != 4:
        raise ValueError(f"conv2d_backward_bias: output gradient must be 4-D, got shape {gy.shape}")
    return np.asarray(gy, np.float64).sum(axis=(0, 2, 3)).astype(_dtype(gy))


# ----------------------------------------------------------------------------------------------
# Work plan: fixed by the shape alone, cached per geometry.


@functools.lru_cache(maxsize=512)
def _geometry_cached(x_shape, w_shape, stride, padding, dilation, groups, internal):
    return _Geometry(x_shape, w_shape, stride, padding, dilation, groups, internal)


def _hashable(v):
    return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else int(v)


def _geometry(x_shape, w_shape, stride, padding, dilation, groups, internal=False):
    if type(x_shape) is tuple and type(w_shape) is tuple:  # as given (hashed as is: a call costs 2 us less)
        try:
            return _geometry_cached(x_shape, w_shape, stride, padding, dilation, groups, internal)
        except TypeError:  # unhashable: a list, say
            pass
    try:
        key = (tuple(int(a) for a in x_shape), tuple(int(a) for a in w_shape), _hashable(stride),
               _hashable(padding), _hashable(dilation), int(groups))
    except (TypeError, ValueError):  # let _Geometry word the error
        return _Geometry(x_shape, w_shape, stride, padding, dilation, groups, internal)
    return _geometry_cached(*key, internal)


class _Plan:
    """Units of work grouped into tasks (one pool block each), fixed by the shape alone.

    A unit ``(n0, n1, r0, r1, k0, k1)`` is rows [r0, r1) of images [n0, n1) and output channels
    [k0, k1) (of each group); rows are output rows, or rows of m x m tiles for Winograd. Units normally
    split the pixels (about UNIT_BYTES of columns with at least MIN_ROWS rows, or WINO_TILES tiles);
    a problem with few pixels and many channels (batch 1, say) is split by output channel instead,
    each unit then preparing its own slice of the weights.
    """

    def __init__(self, g, itemsize, split_images, max_tasks, wino, tile):
        if wino:
            rows, width = -(-g.Ho // tile), -(-g.Wo // tile)
            cap = min_rows = wino
        else:
            rows, width = g.Ho, g.Wo
            min_rows = MIN_ROWS
            cap = max(MIN_ROWS, UNIT_BYTES // (g.kh * g.kw * g.Cg * itemsize))
        total = g.N * rows * width
        small = g.work >= SMALL_PARALLEL_WORK
        self.channel_split = (small and split_images and g.G == 1 and g.K >= SPLIT_CHANNELS
                              and total < MIN_UNITS * min_rows)
        big = g.big or self.channel_split or (small and total >= MIN_UNITS * (SPLIT_MIN_TILES if wino else MIN_ROWS))
        if self.channel_split:
            per = -(-g.K // MIN_UNITS)
            units = [(0, g.N, 0, rows, k0, k1) for k0, k1 in block_ranges(g.K, per)]
        else:
            count = -(-total // cap)
            if big:
                count = max(count, MIN_UNITS)
                count += count % 2  # an even count balances two threads
            if count <= g.N or not split_images:
                # whole images, never more than ``cap`` rows (GEMM sizes past a BLAS threshold are
                # slower); tasks of as many images (+-1), each in as many units, so that threads
                # taking tasks in turn get the same work (ragged tasks, as go9-b256's weight gradient
                # in 4 tasks of 52 images and one of 48, kept a thread idle for a fifth of the call)
                max_per = max(1, cap // (rows * width))
                units_at_least = min(g.N, max(count, -(-g.N // max_per)))
                n_tasks = min(units_at_least, max_tasks) if big else 1
                if n_tasks % 2 and n_tasks > 1:
                    n_tasks += 1 if n_tasks < min(max_tasks, g.N) else -1
                per_task = -(-g.N // n_tasks)
                pieces = max(-(-per_task // max_per), -(-units_at_least // n_tasks))
                self.tasks = [[(a + n0, a + n1, 0, rows, 0, g.Kg) for n0, n1 in _even_ranges(b - a, pieces)]
                              for a, b in _even_ranges(g.N, n_tasks)]
                return
            else:
                pieces = min(rows, -(-count // g.N))
                per = -(-rows // pieces)
                units = [(n, n + 1, r0, r1, 0, g.Kg)
                         for n in range(g.N) for r0, r1 in block_ranges(rows, per)]
        count = min(len(units), max_tasks) if big else 1
        per = -(-len(units) // count)
        self.tasks = [units[a:b] for a, b in block_ranges(len(units), per)]


def _even_ranges(n, parts):
    """``range(n)`` in ``min(parts, n)`` consecutive ranges whose sizes differ by at most one (the
    larger first); fixed by n and parts alone."""
    parts = max(1, min(parts, n))
    base, extra = divmod(n, parts)
    bounds = [0]
    for i in range(parts):
        bounds.append(bounds[-1] + base + (i < extra))
    return list(zip(bounds[:-1], bounds[1:]))


def _plan(g, itemsize, split_images=True, max_tasks=MAX_TASKS, wino=0, tile=2):
    """The plan of ``g``; ``wino`` is the Winograd tiles (``tile`` x ``tile``) per unit (0: im2col rows)."""
    key = (itemsize, split_images, max_tasks, wino, tile)
    plan = g.plans.get(key)
    if plan is None:
        plan = g.plans[key] = _Plan(g, itemsize, split_images, max_tasks, wino, tile)
        # a Winograd problem of one unit, worth splitting by output channel into kernel calls
        # (``_wino_split``, ``_wino_grad_split``)
        plan.split_args = {}  # _split_args
        plan.kernel_split = (wino and not plan.channel_split and len(plan.tasks) == 1
                             and len(plan.tasks[0]) == 1 and g.G == 1 and g.work >= KERNEL_SPLIT_WORK
                             and len(_split_channels(g.K)) > 1)
    return plan


def _winograd(g):
    """Whether the convolution of ``g`` runs as Winograd F(m x m, 3x3) (m: ``_wino_tile``)."""
    return (WINO_TILE != 0 and g.kh == 3 and g.kw == 3 and g.sh == 1 and g.sw == 1 and g.dh == 1 and g.dw == 1
            and g.G == 1 and g.C >= WINO_MIN_CHANNELS)


_local = threading.local()


def _scratch(slot, n, dtype):
    """A thread-local buffer of ``n`` elements, reused across calls (tasks never share one).

    64-byte aligned: unaligned AVX-512 stores cost im2col 10-25% here.
    """
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    key = (slot, np.dtype(dtype).char)
    buf = bufs.get(key)
    if buf is None or buf.size < n:
        raw = np.empty(n + 64 // np.dtype(dtype).itemsize, dtype)
        start = (-raw.ctypes.data % 64) // raw.itemsize
        buf = bufs[key] = raw[start:start + n]
    return buf[:n]


def _pack(x, g, unit, nhwc):
    """The input rows read by ``unit``, channels-last: (first row, (n, h, w, c) array). ``x`` is NCHW,
    or (``nhwc``) already channels-last (N, H, W, C): then its rows are used in place when they are
    contiguous."""
    n0, n1, oh0, oh1 = unit[:4]
    h0, h1 = g.in_rows(oh0, oh1)
    if nhwc:
        rows = x[n0:n1, h0:h1]
        if not rows.flags.c_contiguous:
            rows = _scratch("xs", rows.size, x.dtype).reshape(rows.shape)
            np.copyto(rows, x[n0:n1, h0:h1])
        return h0, rows
    xv = _scratch("xs", (n1 - n0) * (h1 - h0) * g.W * g.C, x.dtype)
    xv = xv.reshape(n1 - n0, h1 - h0, g.W, g.C)
    pack_rows(x, n0, n1, h0, h1, xv)
    return h0, xv


def _columns(x, g, unit, gi, h0, xv):
    """The column matrix of group ``gi`` for ``unit``, from the packed rows ``xv``."""
    n0, n1, oh0, oh1 = unit[:4]
    R = (n1 - n0) * (oh1 - oh0) * g.Wo
    if g.pointwise:
        return xv.reshape(R, g.C)
    Q = g.kh * g.kw * g.Cg
    cols = _scratch("cols", R * Q, x.dtype).reshape(R, Q)
    im2col_rows(xv, h0, g.H, g.W, gi * g.Cg, g.Cg, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw,
                g.dh, g.dw, oh0, oh1, g.Wo, cols)
    return cols


def _weights(w, G, flip, k0, k1, out=None):
    """Tap-major GEMM weights for output channels [k0, k1) of each group (see ``weight_taps``)."""
    T = w.shape[2] * w.shape[3]
    cin = w.shape[0] // G if flip else w.shape[1]
    if out is None:
        out = np.empty((G, T * cin, k1 - k0), w.dtype)
    weight_taps(w, G, flip, k0, k1, out)
    return out


# ----------------------------------------------------------------------------------------------
# Fast kernels


def _forward(x, nhwc, w, flip, bias, g, y, wq=None):
    """y = conv(x, w') + bias where w' is ``w``, or (flip) ``w`` flipped with in/out channels swapped.

    ``x`` is NCHW, or (``nhwc``) channels-last (N, H, W, C); ``y`` is the output channels-last, as
    rows (N * Ho * Wo, K). ``g`` is the geometry of the convolution actually computed (of x and w');
    ``wq`` the GEMM weights of all output channels when prepared beforehand (``Conv2dPrepared``).
    """
    plan = _plan(g, y.itemsize)
    L = g.Ho * g.Wo
    Q = g.kh * g.kw * g.Cg
    prepared = wq is not None
    if not prepared and not plan.channel_split:
        wq = _weights(w, g.G, flip, 0, g.Kg)

    def task(t):
        for unit in plan.tasks[t]:
            n0, n1, oh0, oh1, k0, k1 = unit
            R = (n1 - n0) * (oh1 - oh0) * g.Wo
            if prepared:
                wu = wq[:, :, k0:k1]
            elif plan.channel_split:  # G == 1
                wu = _scratch("w", Q * (k1 - k0), y.dtype).reshape(1, Q, k1 - k0)
                _weights(w, 1, flip, k0, k1, wu)
            else:
                wu = wq
            p0 = n0 * L + oh0 * g.Wo
            out = y[p0:p0 + R, g.G * k0:g.G * k1]  # (k0 > 0 only when G == 1)
            h0, xv = _pack(x, g, unit, nhwc)
            for gi in range(g.G):
                cols = _columns(x, g, unit, gi, h0, xv)
                matmul_into(cols, wu[gi], out[:, gi * (k1 - k0):(gi + 1) * (k1 - k0)])
            if bias is not None:
                out += bias[g.G * k0:g.G * k1]

    run_blocks(task, len(plan.tasks))
    return y


def _wino_tile(g, grad=False):
    """The Winograd tile size m of F(m x m, 3x3) for ``g``: the forward and input gradient, or
    (``grad``) the weight gradient. Fixed by the output size: the fewest GEMM multiplies per output,
    (m + 2)^2 ceil(Ho / m) ceil(Wo / m) / (Ho Wo), F(4x4)'s counted WINO_F4_COST times; ties to the
    smaller tile. 9x9: F(3x3) (2.78 against 4.94 and 4.0); 14x14: F(3x3) (3.19; F(4x4) 2.94 x 1.1);
    19x19 and 32x32: F(4x4) (2.49 and 2.25); outputs of 2x2 or less: F(2x2).

    Measured at 1 thread (``python benchmarks/winograd_tiles.py``, ms per call for F(2x2), F(3x3),
    F(4x4); forward, input gradient, weight gradient; a shared machine, so a few % of noise):

        go9-b256 (256,64,9x9,64)     fwd 15.9  8.9 12.6   in 15.8  9.1 16.1   w 16.9 10.3 14.9
        go9-b16  (16,64,9x9,64)      fwd 0.70 0.54 0.78   in 0.69 0.54 0.76   w 0.74 0.52 0.86
        go9-b1   (1,64,9x9,64)       fwd 0.091 0.086 0.128  in 0.097 0.101 0.122  w 0.084 0.079 0.138
        go9-128  (256,128,9x9,128)   fwd 42.0 40.2 40.1   in 46.0 29.7 39.6   w 47.6 31.5 45.0
        mnist-c2 (128,32,14x14,64)   fwd 12.3  8.1  8.2   in 12.8  8.8 11.1   w  9.2  9.2 13.4
        go19     (64,64,19x19,64)    fwd 16.8 15.7 14.5   in 17.0 12.2 10.5   w 12.3 12.6 11.9
        go19-b64 (64,128,19x19,128)  fwd 44.3 38.1 33.7   in 44.0 37.7 31.5   w 51.2 45.5 39.2
        go19-256-b1 (1,256,19x19,256) fwd 3.3 3.6 3.0     in 3.1  3.4  2.8    w  3.3  3.4  2.8
        cifar    (128,64,32x32,64)   fwd 71.0 63.9 54.9   in 70.8 62.7 66.7   w 73.6 64.1 61.1

    The weight gradient follows the same rule (its measurements agree).
    """
    return WINO_TILE if WINO_TILE is not None else _wino_tile_size(g.Ho, g.Wo)


@functools.lru_cache(maxsize=256)
def _wino_tile_size(Ho, Wo):
    """The rule of ``_wino_tile`` for an Ho x Wo output."""
    best = None
    for m in (2, 3, 4):
        cost = (m + 2) ** 2 * -(-Ho // m) * -(-Wo // m) * (WINO_F4_COST if m == 4 else 1.0)
        if best is None or cost < best[0]:
            best = (cost, m)
    return best[1]


def _wino_cap(g):
    """Tiles per Winograd unit: WINO_TILES, or fewer when that keeps the GEMMs under OpenBLAS's
    small-matrix size (WINO_SMALL_GEMM) and is no less than a quarter of WINO_TILES."""
    ck = g.C * g.K
    if ck * WINO_TILES > WINO_SMALL_GEMM and ck * (WINO_TILES // 4) <= WINO_SMALL_GEMM:
        return WINO_SMALL_GEMM // ck
    return WINO_TILES


# The matrices per tile size and dtype (rounded once from float64 for the larger tiles). The filter
# transform G g G^T and the weight gradient's inverse G^T S G apply G twice, separably (``wino_filter``,
# ``FILTER_GRAD``): as a GEMM by kron(G, G) (a^2 x 9) the inverse took twice as long (go19-256-b1,
# 32768 filters: 754 us against 362 generic and 268 unrolled, one thread).
_DTYPES = (np.float32, np.float64)
_G = {m: {dt: G.astype(dt) for dt in _DTYPES} for m, (_, G, _) in WINOGRAD.items()}
_BT = {m: {dt: BT.astype(dt) for dt in _DTYPES} for m, (BT, _, _) in WINOGRAD.items()}
_AT = {m: {dt: AT.astype(dt) for dt in _DTYPES} for m, (_, _, AT) in WINOGRAD.items()}
_A = {m: {dt: np.ascontiguousarray(AT.T, dt) for dt in _DTYPES} for m, (_, _, AT) in WINOGRAD.items()}


def _wino_input(x, nhwc, n0, n1, a0, a1, tw, m, ph, pw, dt):
    """Pack and transform the input tiles of tile rows [a0, a1) of images [n0, n1): (T, planes).
    ``x`` is NCHW or (``nhwc``) channels-last (N, H, W, C)."""
    nb, a = n1 - n0, m + 2
    T = nb * (a1 - a0) * tw
    C = x.shape[3 if nhwc else 1]
    Wt = m * tw + 2
    xs = _scratch("xs", nb * (m * (a1 - a0) + 2) * Wt * C, dt).reshape(nb, m * (a1 - a0) + 2, Wt, C)
    wino_pack_any(x, nhwc, n0, n1, m * a0, ph, pw, xs)
    V3, V = _planes("V", T, C, dt, a * a)
    TILES_IN[m](xs, m, tw, T, _BT[m][dt.type], V3, _scratch("wt", a * Wt * C, dt))
    return T, V3, V


def _wino_forward(x, nhwc, w, flip, bias, g, y, weights=None, m=None, res=None, relu=False):
    """``_forward`` by Winograd F(m x m, 3x3): pack, input transform, (m + 2)^2 GEMMs, output transform
    (straight into the rows of ``y``).

    ``weights(k0, k1)``, when the filter is prepared beforehand (for tile ``m``), gives the transformed
    filter U of output channels [k0, k1), C-contiguous. ``res`` (rows like ``y``) is added after the
    bias, then ReLU with ``relu``."""
    if m is None:
        m = _wino_tile(g)
    plan = _plan(g, y.itemsize, wino=_wino_cap(g), tile=m)
    if plan.kernel_split:
        _wino_split(x, nhwc, w, flip, bias, g, y, weights, m, res, relu, plan)
        return y
    L = g.Ho * g.Wo
    tw = -(-g.Wo // m)
    dt = y.dtype
    has_bias = bias is not None
    b = bias if has_bias else np.zeros(g.K, dt)
    has_res = res is not None
    if not has_res:
        res = y  # (not read)
    if weights is None and not plan.channel_split:
        U = _wino_weights(w, flip, 0, g.K, g.C, dt, "U", m)

    def task(t):
        for n0, n1, a0, a1, k0, k1 in plan.tasks[t]:
            nb, kk = n1 - n0, k1 - k0
            oh0, oh1 = m * a0, min(m * a1, g.Ho)
            R = nb * (oh1 - oh0) * g.Wo
            if weights is not None:
                Uu = weights(k0, k1)
            elif plan.channel_split:
                Uu = _wino_weights(w, flip, k0, k1, g.C, dt, "w", m)
            else:
                Uu = U
            xs, wt, V3, M3, wo = _wino_buffers(_wino_scratch(nb, a1 - a0, tw, m, g.C, kk, dt.itemsize), dt)
            p0 = n0 * L + oh0 * g.Wo
            WINO_UNIT[m](x, nhwc, n0, n1, m * a0, g.ph, g.pw, m, tw, nb * (a1 - a0) * tw, _BT[m][dt.type], Uu,
                      _AT[m][dt.type], oh0, oh1, g.Wo, b[k0:k1], has_bias, res[p0:p0 + R], has_res, relu,
                      xs, wt, V3, M3, wo, y[p0:p0 + R], k0)

    run_blocks(task, len(plan.tasks))
    return y


def _wino_split(x, nhwc, w, flip, bias, g, y, weights, m, res, relu, plan):
    """``_wino_forward`` of a one-unit problem as blocks of output channels (``_split_channels``), each
    one GIL-free kernel call that transforms its part of the filter (unless ``weights`` gives U) and
    runs the unit on it (``WINO_SPLIT_UNIT``, ``run_kernels``): two threads share a small convolution
    without handing the GIL to each other. Each block transforms the whole input. The Python here
    is kept short: it is a tenth of a batch-1 call. The pool's threads serve their blocks of the
    calls that follow from compiled code (``parallel.Serve``)."""
    calls = _wino_split_calls(x, nhwc, w, flip, bias, g, y, weights, m, res, relu, plan)
    serve = None if numba.config.DISABLE_JIT else Serve(stage_split, [(c[_TAG], *(c[i] for i in _STAGED))
                                                                      for c in calls[1:]])
    run_kernels(WINO_SPLIT_UNIT[m], calls, serve)


def _wino_split_calls(x, nhwc, w, flip, bias, g, y, weights, m, res, relu, plan):
    """The arguments of ``_wino_split``'s kernel calls, one tuple per block. Each block's tag says
    its fixed arguments (its ``_split_args`` block, and flip, nhwc and whether there are a bias, a
    residual and ReLU), for a pool thread that serves it (``_wino_split_unit``)."""
    has_bias, has_res = bias is not None, res is not None
    switches = flip | nhwc << 1 | has_bias << 2 | has_res << 3 | relu << 4
    polls = parallel.SPIN_POLLS
    calls = []
    for (k0, k1), (head, U, (pack, out, bufs), zeros, tag) in zip(_split_channels(g.K),
                                                                 _split_args(plan, g, m, y.dtype, weights is None)):
        if weights is not None:
            U = weights(k0, k1)
        calls.append((w, flip, *head, x, nhwc, *pack, U, *out, bias[k0:k1] if has_bias else zeros, has_bias,
                      res if has_res else y, has_res, relu, *bufs, y, k0, MAILBOX, tag << 5 | switches, polls))
    return calls


# where a split call (``WINO_SPLIT_UNIT``'s parameters) has its tag and the arrays ``stage_split`` takes
_PARAMETERS = list(inspect.signature(_wino_split_unit).parameters)
_TAG = _PARAMETERS.index("tag")
_STAGED = [_PARAMETERS.index(name) for name in ("x", "w", "bias", "U", "res", "out")]
_SERVE_TAGS = itertools.count(1)  # a tag per _split_args block, never reused (0: none)


def _split_args(plan, g, m, dt, transform):
    """The arguments of ``_wino_split``'s kernel calls that depend on the shape alone (buffers of this
    thread), worked out once per plan and thread: per block (head, U, (three runs of the rest),
    a zero bias, a tag for ``_wino_split_calls``)."""
    key = (threading.get_ident(), dt.char, transform)
    args = plan.split_args.get(key)
    if args is None:
        rows, tw = -(-g.Ho // m), -(-g.Wo // m)
        P = (m + 2) ** 2
        G, BT, AT = _G[m][dt.type], _BT[m][dt.type], _AT[m][dt.type]
        args = []
        for i, (k0, k1) in enumerate(_split_channels(g.K)):
            bufs = tuple(_wino_buffers(_wino_scratch(g.N, rows, tw, m, g.C, k1 - k0, dt.itemsize), dt, str(i)))
            if transform:
                U = _planes(f"U{i}", g.C, k1 - k0, dt, P)[0]
                gt, ht = _filter_scratch(k1 - k0, dt, f"U{i}")
            else:
                U, gt, ht = None, BT, BT  # (U given per call; gt, ht not used)
            args.append(((k0, k1, G, gt, ht, transform), U,
                         ((0, g.N, 0, g.ph, g.pw, m, tw, g.N * rows * tw, BT), (AT, 0, g.Ho, g.Wo), bufs),
                         np.zeros(k1 - k0, dt), next(_SERVE_TAGS)))
        args = plan.split_args[key] = args
    return args


def _split_channels(K):
    """The output channel blocks of ``_wino_split``: two halves, the first a multiple of 16 (whole
    vectors), each at least KERNEL_SPLIT_MIN channels; else one block. Fixed by K alone."""
    half = -(-K // 32) * 16
    return ((0, half), (half, K)) if min(half, K - half) >= KERNEL_SPLIT_MIN else ((0, K),)


@functools.lru_cache(maxsize=1024)
def _wino_scratch(nb, tile_rows, tw, m, C, K, itemsize):
    """The scratch of one Winograd forward unit (``nb`` images, ``tile_rows`` rows of ``tw`` tiles):
    (slot, size, shape) of the packed rows xs, the transform's row buffer wt, the planes V and M
    (``_planes`` strides) and the output transform's buffer wo, as ``WINO_UNIT[m]`` takes them."""
    a, Wt, T = m + 2, m * tw + 2, nb * tile_rows * tw
    shapes = [(nb, m * tile_rows + 2, Wt, C), (a * Wt * C,), (a * a, _plane_rows(T, C, itemsize), C),
              (a * a, _plane_rows(T, K, itemsize), K), (m * a * K,)]
    return tuple((slot, int(np.prod(shape)), shape) for slot, shape in zip(("xs", "wt", "V", "M", "wo"), shapes))


def _wino_buffers(scratch, dtype, suffix=""):
    """The thread-local buffers of a ``_wino_scratch`` layout (slot names + ``suffix``)."""
    return [_scratch(slot + suffix, n, dtype).reshape(shape) for slot, n, shape in scratch]


def _planes(slot, rows, cols, dtype, count=16):
    """``count`` (rows, cols) planes in scratch, apart by a stride that spreads them over L1's sets.

    The transforms touch all planes at once; planes 4 KB apart (a (16, 256, 64) float32 array)
    share L1 sets and make the input transform 10x slower here. The planes are ``rows2 >= rows``
    rows apart, ``rows2`` chosen so that the plane stride in bytes has the fewest factors of 2 (an
    odd number of cache lines when the rows allow it). Returns the C-contiguous (count, rows2,
    cols) array the kernels take and its (count, rows, cols) view the GEMMs take.
    """
    rows2 = _plane_rows(rows, cols, np.dtype(dtype).itemsize)
    buf = _scratch(slot, count * rows2 * cols, dtype).reshape(count, rows2, cols)
    return buf, buf[:, :rows]


@functools.lru_cache(maxsize=1024)
def _plane_rows(rows, cols, itemsize):
    """The plane stride of ``_planes`` in rows: the fewest factors of 2 in its byte size."""
    best = None
    for r2 in range(rows, rows + 16):
        nbytes = r2 * cols * itemsize
        twos = (nbytes & -nbytes).bit_length() if nbytes else 0
        if best is None or twos < best[0]:
            best = (twos, r2)
    return best[1]


def _wino_weights(w, flip, k0, k1, cin, dtype, slot, m=2):
    """U = G g G^T for output channels [k0, k1) (``wino_filter``, as ``FILTER[m]``), in ``slot``: a C-contiguous
    (a^2, rows2, k1 - k0) buffer whose planes hold U (cin, k1 - k0) in their first cin rows (``_planes``:
    planes 4 KB apart would make the transform writing them all at once miss L1 on every store).
    Forward: U[xi, c, k] from g = w[k, c]; input gradient (flip): U[xi, k, c] from g = w[k, c]
    rotated by 180 degrees. ``w`` is C-contiguous."""
    dtype = np.dtype(dtype)
    U, _ = _planes(slot, cin, k1 - k0, dtype, (m + 2) ** 2)
    FILTER[m](w, flip, k0, k1, _G[m][dtype.type], U, *_filter_scratch(k1 - k0, dtype, slot))
    return U


def _filter_scratch(outputs, dtype, slot, rows2=3):
    """``wino_filter``'s two buffers for ``outputs`` output channels (9 and ``rows2`` rows; the weight
    gradient's ``wino_filter_grad`` takes 9 and 3a): rows of about FILTER_ROW values (whole input
    channels), a cache line longer than that, so that the rows do not share L1 sets."""
    n = max(1, FILTER_ROW // outputs) * outputs + 64 // np.dtype(dtype).itemsize
    buf = _scratch(slot + "g", (9 + rows2) * n, dtype).reshape(9 + rows2, n)
    return buf[:9], buf[9:]


def _wino_grad_split(gy, gy_nhwc, x, x_nhwc, g, gw, bias, m, plan):
    """``_wino_backward_weight`` of a one-unit problem as blocks of output channels, each one GIL-free
    kernel call (``WINO_GRAD_SPLIT_UNIT``, ``run_kernels``) that writes its rows of gw (and of the
    bias gradient, with ``bias``). Each block transforms the whole input and output gradient."""
    calls, sums = _wino_grad_calls(gy, gy_nhwc, x, x_nhwc, g, gw, bias, m, plan)
    run_kernels(WINO_GRAD_SPLIT_UNIT[m], calls)
    return gw, (sums.astype(gw.dtype) if bias else None)


def _wino_grad_calls(gy, gy_nhwc, x, x_nhwc, g, gw, bias, m, plan):
    """The arguments of ``_wino_grad_split``'s kernel calls (one tuple per block) and the float64
    bias sums they fill (with ``bias``)."""
    dt = gw.dtype
    key = (threading.get_ident(), dt.char, "grad")
    args = plan.split_args.get(key)
    if args is None:
        a, rows, tw = m + 2, -(-g.Ho // m), -(-g.Wo // m)
        P, T, Wt = a * a, g.N * rows * tw, m * tw + 2
        args = []
        for i, (k0, k1) in enumerate(_split_channels(g.K)):
            sfx = f"g{i}"
            bufs = (_scratch("xs" + sfx, g.N * (m * rows + 2) * Wt * g.C, dt).reshape(g.N, m * rows + 2, Wt, g.C),
                    _scratch("wt" + sfx, a * Wt * g.C, dt), _planes("V" + sfx, T, g.C, dt, P)[0],
                    _scratch("gs" + sfx, g.N * m * rows * m * tw * g.K, dt).reshape(g.N, m * rows, m * tw, g.K),
                    _scratch("wg" + sfx, a * m * tw * g.K, dt), _planes("M" + sfx, T, g.K, dt, P)[0],
                    _planes("Gk" + sfx, T, k1 - k0, dt, P)[0], _planes("S" + sfx, k1 - k0, g.C, dt, P)[0],
                    *_filter_scratch(g.C, dt, "S" + sfx, 3 * a))
            args.append(((0, g.N, 0, g.ph, g.pw, m, tw, T, _BT[m][dt.type], _A[m][dt.type], _G[m][dt.type], k0, k1),
                         bufs))
        args = plan.split_args[key] = args
    sums = np.zeros(g.K) if bias else np.empty(0)
    calls = [(x, x_nhwc, gy, gy_nhwc) + head + bufs + (gw, sums[k0:k1] if bias else sums)
             for (k0, k1), (head, bufs) in zip(_split_channels(g.K), args)]
    return calls, sums


def _wino_backward_weight(gy, gy_nhwc, x, x_nhwc, g, gw, bias):
    """Weight gradient by Winograd: S[xi] = sum over tiles of Gy[xi]^T V[xi], then gw = G^T S G.
    ``gy`` and ``x`` are each NCHW or (``*_nhwc``) channels-last (N, H, W, C). Returns (gw, the
    bias gradient with ``bias`` when the units hold whole channels, else None)."""
    m = _wino_tile(g, grad=True)
    a = m + 2
    P = a * a
    plan = _plan(g, gw.itemsize, max_tasks=MAX_SUM_TASKS, wino=_wino_cap(g), tile=m)
    dt = gw.dtype
    if plan.kernel_split:
        return _wino_grad_split(gy, gy_nhwc, x, x_nhwc, g, gw, bias, m, plan)
    tw = -(-g.Wo // m)
    G = _G[m][dt.type]
    sums = bias and not plan.channel_split
    no_sums = np.empty(0)

    def task(t):
        acc = None if plan.channel_split else np.empty((P, g.K, g.C), dt)
        bias_acc = np.zeros(g.K) if sums else no_sums
        for u, (n0, n1, a0, a1, k0, k1) in enumerate(plan.tasks[t]):
            nb, kk = n1 - n0, k1 - k0
            if not plan.channel_split:  # the whole unit in one call
                T, Wt = nb * (a1 - a0) * tw, m * tw + 2
                xs = _scratch("xs", nb * (m * (a1 - a0) + 2) * Wt * g.C, dt)
                gs = _scratch("gs", nb * m * (a1 - a0) * m * tw * g.K, dt)
                WINO_GRAD_UNIT[m](x, x_nhwc, gy, gy_nhwc, n0, n1, m * a0, g.ph, g.pw, m, tw, T, _BT[m][dt.type],
                               _A[m][dt.type], u == 0, xs.reshape(nb, m * (a1 - a0) + 2, Wt, g.C),
                               _scratch("wt", a * Wt * g.C, dt), _planes("V", T, g.C, dt, P)[0],
                               gs.reshape(nb, m * (a1 - a0), m * tw, g.K), _scratch("wg", a * m * tw * g.K, dt),
                               _planes("M", T, g.K, dt, P)[0], acc, bias_acc)
                continue
            T, _, V = _wino_input(x, x_nhwc, n0, n1, a0, a1, tw, m, g.ph, g.pw, dt)
            gs = _scratch("gs", nb * m * (a1 - a0) * m * tw * g.K, dt)
            gs = gs.reshape(nb, m * (a1 - a0), m * tw, g.K)
            wino_pack_any(gy, gy_nhwc, n0, n1, m * a0, 0, 0, gs)
            G3, Gy = _planes("M", T, g.K, dt, P)
            TILES_GY[m](gs, m, tw, T, _A[m][dt.type], G3, _scratch("wt", a * m * tw * g.K, dt))
            # channel split: the unit owns gw[k0:k1]: the result, in place, in blocks of output
            # channels whose sums S stay in cache for the inverse transform
            kc = max(1, min(kk, S_BLOCK_BYTES // (P * g.C * dt.itemsize)))
            S3, S = _planes("acc", kc, g.C, dt, P)
            gt, ht = _filter_scratch(g.C, dt, "acc", 3 * a)
            for j0 in range(k0, k1, kc):
                j1 = min(j0 + kc, k1)
                matmul_into(Gy[:, :, j0:j1].transpose(0, 2, 1), V, S[:, :j1 - j0])
                FILTER_GRAD[m](S3, G, j0, j1, gw, gt, ht)
        return acc, bias_acc

    partials = run_blocks(task, len(plan.tasks))
    if plan.channel_split:
        return gw, None
    total, bias_total = partials[0]
    for p, b in partials[1:]:
        total += p
        bias_total += b
    FILTER_GRAD[m](total, G, 0, g.K, gw, *_filter_scratch(g.C, dt, "acc", 3 * a))
    return gw, (bias_total.astype(dt) if sums else None)


def _columns_path(g):
    """Few taps per output (C * kh * kw small, one group): NCHW, no channels-last copies.

    Inner sizes this small leave BLAS far below its speed and make the work moving data; this path
    moves the least: the filter is used as it is, the forward sums the taps itself (``cols_forward``)
    straight into an NCHW output, and the input gradient adds straight into NCHW.
    """
    return g.G == 1 and g.C * g.kh * g.kw <= COL_MAX_TAPS


def _image_tasks(g, itemsize):
    """Tasks of whole images for the column path (as the im2col plan, without splitting images)."""
    return [[(n0, n1) for n0, n1, _, _, _, _ in t] for t in _plan(g, itemsize, split_images=False).tasks]


def _cols_args(g):
    return g.ph, g.pw, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw


def _image_scratch(g, dtype):
    return _scratch("xp", g.C * (g.H + 2 * g.ph) * (g.W + 2 * g.pw), dtype).reshape(
        g.C, g.H + 2 * g.ph, g.W + 2 * g.pw)


def _col_forward(x, w2, bias, g, y):
    """Column path forward over whole images per task, into the NCHW output ``y``; ``w2`` is the
    filter as (K, C kh kw)."""
    b = bias if bias is not None else np.zeros(g.K, y.dtype)
    tasks = _image_tasks(g, y.itemsize)
    if g.sh == 1 and g.sw == 1:  # the kernel's shifted copies, else its column rows
        size = g.C * g.kw * (g.H + 2 * g.ph) * g.Wo
    else:
        size = g.C * g.kh * g.kw * g.Ho * g.Wo

    def task(t):
        buf = _scratch("cols", size, y.dtype)
        for n0, n1 in tasks[t]:
            cols_forward(x, w2, b, n0, n1, *_cols_args(g), _image_scratch(g, y.dtype), buf, y)

    run_blocks(task, len(tasks))
    return y


def _col_backward_input(gy, w, g, gx):
    """Column path input gradient: gx[n] = col2im(w^T @ gy[n]), a block of images at a time."""
    Q, L = g.C * g.kh * g.kw, g.Ho * g.Wo
    wt = w.reshape(g.K, Q).T
    gy3 = gy.reshape(g.N, g.K, L)
    tasks = _image_tasks(g, gx.itemsize)

    def task(t):
        for n0, n1 in tasks[t]:
            cols = _scratch("cols", (n1 - n0) * Q * L, gx.dtype).reshape(n1 - n0, Q, L)
            matmul_into(wt, gy3[n0:n1], cols)
            col2im_cols(cols, n0, *_cols_args(g), _image_scratch(g, gx.dtype), gx)

    run_blocks(task, len(tasks))
    return gx


def _col_backward_weight(gy, gy_nhwc, x, g, gw, bias):
    """Column path weight gradient: the sum over images, in order, of gy[n] @ cols(n)^T (gy NCHW, or
    channels-last rows with ``gy_nhwc``). With ``bias`` the columns end in a row of ones, whose
    products are the bias gradient. Returns (gw, that bias gradient or None)."""
    Q, L = g.C * g.kh * g.kw, g.Ho * g.Wo
    rows = Q + 1 if bias else Q
    gy3 = gy.reshape(g.N, L, g.K).transpose(0, 2, 1) if gy_nhwc else gy.reshape(g.N, g.K, L)
    tasks = _image_tasks(g, gw.itemsize)

    def task(t):
        acc = None
        for n0, n1 in tasks[t]:
            nb = n1 - n0
            cols = _scratch("cols", nb * rows * L, gw.dtype).reshape(nb, rows, L)
            cols[:, Q:] = 1
            im2col_cols(x, n0, *_cols_args(g), _image_scratch(g, gw.dtype), cols)
            # transposed, (rows, K) = cols @ gy^T: the few rows of taps along the GEMM's rows, the
            # channels along its vectors, no lanes wasted (the same bits: fma(a, b, c) = fma(b, a, c))
            per_image = _scratch("tmp", nb * rows * g.K, gw.dtype).reshape(nb, rows, g.K)
            matmul_into(cols, gy3[n0:n1].transpose(0, 2, 1), per_image)
            block = np.add.reduce(per_image, axis=0)  # image after image, in order
            if acc is None:
                acc = block
            else:
                acc += block
        return acc

    partials = run_blocks(task, len(tasks))
    total = partials[0]
    for p in partials[1:]:
        total += p
    gw.reshape(g.K, Q)[...] = total[:Q].T
    return gw, (total[Q].copy() if bias else None)


def _layout(a, dt):
    """``a`` as a C-contiguous array of dtype ``dt``, without changing its memory order: (the NHWC
    array, True) when ``a`` is channels-last, else (the NCHW array, False)."""
    a = np.asarray(a)
    if channels_last(a):
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1), dt), True
    return np.ascontiguousarray(a, dt), False


def _rows_output(N, K, Ho, Wo, dt):
    """A new output of the row paths: its channels-last rows (N * Ho * Wo, K) and its NCHW view."""
    rows = np.empty((N * Ho * Wo, K), dt)
    return rows, from_nhwc_rows(rows, (N, K, Ho, Wo))


def _check_bias(bias, g, dt):
    if bias is None:
        return None
    bias = np.ascontiguousarray(bias, dt)
    if bias.shape != (g.K,):
        raise ValueError(f"conv2d: bias shape {bias.shape} does not match the {g.K} output "
                         f"channels of weight shape {g.w_shape}")
    return bias


def conv2d_forward(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """y[n, k] = bias[k] + sum over c, i, j of w[k, c, i, j] * x[n, c', s*o + d*(i, j) - p] (per group).

    x (N, C, H, W), w (K, C/groups, kh, kw), bias (K,) or None; stride, padding, dilation: an int
    or a pair. Returns (N, K, Ho, Wo) in the inputs' float dtype. Deterministic with any number of
    threads.

    Memory layout: x may be C-contiguous (NCHW) or channels-last (NHWC memory under the NCHW shape,
    as ``x.transpose(0, 2, 3, 1)`` C-contiguous); the result is channels-last. That is what the GEMMs
    produce and what the next convolution reads, so a chain of convolutions never transposes its
    activations.
    """
    key = _call_key(x, w, bias, stride, padding, dilation, groups)
    try:
        known = _KNOWN_SPLITS.get(key)
    except TypeError:  # unhashable: a list, say
        known = key = None
    if known is not None:
        g, m, plan, nhwc = known
        rows, y = _rows_output(g.N, g.K, g.Ho, g.Wo, x.dtype)
        _wino_split(x.transpose(0, 2, 3, 1) if nhwc else x, nhwc, w, False, bias, g, rows, None, m, None, False, plan)
        return y
    g = _geometry(np.shape(x), np.shape(w), stride, padding, dilation, groups)
    dt = _dtype(x, w)
    given = (x, w, bias)
    bias = _check_bias(bias, g, dt)
    if g.N * g.K * g.Ho * g.Wo == 0 or g.C == 0:
        y = np.empty(g.out_shape, dt)
        y[...] = 0 if bias is None else bias.reshape(-1, 1, 1)
        return y
    w = np.ascontiguousarray(w, dt)
    if _columns_path(g):
        return _col_forward(np.ascontiguousarray(x, dt), w.reshape(g.K, -1), bias, g, np.empty(g.out_shape, dt))
    rows, y = _rows_output(g.N, g.K, g.Ho, g.Wo, dt)
    x, nhwc = _layout(x, dt)
    if _winograd(g):
        m = _wino_tile(g)
        _wino_forward(x, nhwc, w, False, bias, g, rows, m=m)
        plan = _plan(g, y.itemsize, wino=_wino_cap(g), tile=m)
        as_given = w is given[1] and bias is given[2] and (x is given[0] or (nhwc and given[0].dtype == dt))
        if key is not None and plan.kernel_split and as_given:
            if len(_KNOWN_SPLITS) >= 256:
                _KNOWN_SPLITS.clear()
            _KNOWN_SPLITS[key] = (g, m, plan, nhwc)  # (as given: no copies, no conversions)
    else:
        _forward(x, nhwc, w, False, bias, g, rows)
    return y


# conv2d_forward calls that ran as a one-unit Winograd split (batch 1): their geometry, tile, plan and
# layout by _call_key, so that the next call with arrays of the same types, shapes, strides and
# dtypes goes straight to the kernels. Its checks, conversions and planning took 8-12 us of go9-b1's
# Python work per call (more right after the kernels, with the interpreter's data out of cache).
_KNOWN_SPLITS = {}


def _call_key(x, w, bias, stride, padding, dilation, groups):
    """What fixes a conv2d_forward call's work besides the values: the arrays' shapes, strides and
    dtypes, the geometry arguments and the settings the tests change (None for inputs other than
    ndarrays; unhashable when an argument is)."""
    if type(x) is not np.ndarray or type(w) is not np.ndarray or not (bias is None or type(bias) is np.ndarray):
        return None
    return (x.shape, x.strides, x.dtype, w.shape, w.strides, w.dtype,
            None if bias is None else (bias.shape, bias.strides, bias.dtype),
            stride, padding, dilation, groups, WINO_TILE, KERNEL_SPLIT_WORK, KERNEL_SPLIT_MIN)


class Conv2dPrepared:
    """``conv2d_forward`` with fixed weights, for inference: the weights are transformed for the chosen
    algorithm (Winograd's U, the tap-major GEMM weights) once, not per call, and an optional
    residual add and ReLU follow the convolution. Computes in the weights' dtype.

    >>> import numpy as np
    >>> w = np.ones((4, 8, 3, 3), np.float32)
    >>> conv = Conv2dPrepared(w, np.zeros(4, np.float32), padding=1)
    >>> float(conv(np.ones((1, 8, 5, 5), np.float32), relu=True)[0, 0, 2, 2])
    72.0

    Gives the same bits as ``conv2d_forward(x, w, bias, ...)`` (plus ``residual``, then ReLU).
    """

    def __init__(self, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
        w = np.asarray(w)
        self.dtype = _dtype(w)
        self.w = np.array(w, self.dtype, order="C")  # a copy: later changes to w do not leak in
        self.geometry = (stride, padding, dilation, groups)
        # validates the weights and geometry once, on an input as large as the dilated kernel
        dh, dw = _pair(dilation, "dilation")
        size = (max(1, dh * (self.w.shape[2] - 1) + 1), max(1, dw * (self.w.shape[3] - 1) + 1))
        g = _geometry((1, self.w.shape[1] * int(groups)) + size, self.w.shape, *self.geometry)
        self.bias = _check_bias(bias, g, self.dtype)
        if bias is not None:
            self.bias = self.bias.copy()
        if _columns_path(g):
            self.path, self.prepared = "columns", self.w.reshape(g.K, -1)
        elif _winograd(g):
            self.path, self.prepared = "winograd", {}  # (tile size, k0, k1): U, made on first use
            self.captured = {}  # (input shape, forced tile): the fixed arguments of a one-unit call
        else:
            self.path, self.prepared = "im2col", _weights(self.w, g.G, False, 0, g.Kg)

    def _u(self, m, k0, k1):
        """Winograd's U of output channels [k0, k1) for tile size m (C-contiguous planes, U in their
        first C rows), made on first use."""
        K, C = self.w.shape[:2]
        U = self.prepared.get((m, k0, k1))
        if U is None:
            if (m, 0, K) not in self.prepared:
                self.prepared[(m, 0, K)] = _wino_weights(self.w, False, 0, K, C, self.dtype, "U", m).copy()
            U = self.prepared.setdefault((m, k0, k1), np.ascontiguousarray(self.prepared[(m, 0, K)][:, :C, k0:k1]))
        return U

    def _capture(self, x_shape):
        """The Winograd call for inputs of ``x_shape`` when its plan is a single unit (small batches,
        as tree search evaluates): every argument that depends on the shape alone, worked out once,
        so a call is a layout check, an output allocation and one kernel call. False otherwise."""
        g = _geometry(x_shape, self.w.shape, *self.geometry)
        if g.C == 0 or g.N * g.K * g.Ho * g.Wo == 0:
            return False
        m = _wino_tile(g)
        plan = _plan(g, self.dtype.itemsize, wino=_wino_cap(g), tile=m)
        if plan.channel_split or plan.kernel_split or len(plan.tasks) != 1 or len(plan.tasks[0]) != 1:
            return False  # (a kernel split, as conv2d_forward's, gives its bits)
        rows = plan.tasks[0][0][3]  # tile rows (the unit is the whole batch)
        tw = -(-g.Wo // m)
        bias = self.bias if self.bias is not None else np.zeros(g.K, self.dtype)
        return (g, m, tw, g.N * rows * tw, _wino_scratch(g.N, rows, tw, m, g.C, g.K, self.dtype.itemsize),
                self._u(m, 0, g.K), bias)

    def _run_captured(self, cap, x, residual, relu):
        g, m, tw, T, scratch, U, bias = cap
        dt = self.dtype
        xs, wt, V, M, wo = _wino_buffers(scratch, dt)
        x, nhwc = _layout(x, dt)
        rows, y = _rows_output(g.N, g.K, g.Ho, g.Wo, dt)
        if residual is not None and np.shape(residual) != y.shape:
            raise ValueError(f"conv2d: residual shape {np.shape(residual)} does not match the output "
                             f"shape {y.shape}")
        res = rows if residual is None else nhwc_rows(residual, dt)
        WINO_UNIT[m](x, nhwc, 0, g.N, 0, g.ph, g.pw, m, tw, T, _BT[m][dt.type], U, _AT[m][dt.type], 0, g.Ho, g.Wo,
                  bias, self.bias is not None, res, residual is not None, relu, xs, wt, V, M, wo, rows, 0)
        return y

    def __call__(self, x, residual=None, relu=False):
        """conv(x) [+ residual] [then ReLU] for x (N, C, H, W); residual has the output's shape."""
        if self.path == "winograd":
            key = (np.shape(x), WINO_TILE)
            cap = self.captured.get(key)
            if cap is None:
                cap = self.captured[key] = self._capture(key[0])
            if cap:
                return self._run_captured(cap, x, residual, relu)
        g = _geometry(np.shape(x), self.w.shape, *self.geometry)
        if g.C == 0 or g.N * g.K * g.Ho * g.Wo == 0:
            y = np.empty(g.out_shape, self.dtype)
            y[...] = 0 if self.bias is None else self.bias.reshape(-1, 1, 1)
        elif self.path == "columns":
            y = _col_forward(np.ascontiguousarray(x, self.dtype), self.prepared, self.bias, g,
                             np.empty(g.out_shape, self.dtype))
        else:
            x, nhwc = _layout(x, self.dtype)
            rows, y = _rows_output(g.N, g.K, g.Ho, g.Wo, self.dtype)
            if self.path == "winograd":  # the residual and ReLU in the same pass
                if residual is not None and np.shape(residual) != y.shape:
                    raise ValueError(f"conv2d: residual shape {np.shape(residual)} does not match the output "
                                     f"shape {y.shape}")
                res = None if residual is None else nhwc_rows(residual, self.dtype)
                m = _wino_tile(g)
                _wino_forward(x, nhwc, self.w, False, self.bias, g, rows, lambda k0, k1: self._u(m, k0, k1), m,
                              res, relu)
                return y
            _forward(x, nhwc, self.w, False, self.bias, g, rows, self.prepared)
        if residual is not None:
            if np.shape(residual) != y.shape:
                raise ValueError(f"conv2d: residual shape {np.shape(residual)} does not match the output "
                                 f"shape {y.shape}")
            y += residual
        if relu:
            np.maximum(y, 0, out=y)
        return y


def conv2d_backward_input(gy, w, x_shape, stride=1, padding=0, dilation=1, groups=1):
    """The gradient with respect to the input of ``conv2d_forward``: its exact transpose.

    gy (N, K, Ho, Wo), w (K, C/groups, kh, kw); returns (N, C, H, W) = ``x_shape``, channels-last
    for stride 1 except on the column path (as ``conv2d_forward``).
    """
    g = _geometry(x_shape, np.shape(w), stride, padding, dilation, groups)
    _check_gy(gy, g, "conv2d_backward_input")
    dt = _dtype(gy, w)
    gx = np.empty((g.N, g.C, g.H, g.W), dt)
    if gx.size == 0:
        return gx
    if gy.size == 0:
        gx[...] = 0
        return gx
    w = np.ascontiguousarray(w, dt)
    if _columns_path(g):
        return _col_backward_input(np.ascontiguousarray(gy, dt), w, g, gx)
    if g.sh == 1 and g.sw == 1:
        # The correlation of gy with the flipped filter, in and out channels swapped per group
        # (channels-last, as the forward).
        pad = (g.dh * (g.kh - 1) - g.ph, g.dw * (g.kw - 1) - g.pw)
        gt = _geometry(np.shape(gy), (g.C, g.Kg, g.kh, g.kw), 1, pad, (g.dh, g.dw), g.G, internal=True)
        gy, nhwc = _layout(gy, dt)
        rows, gx = _rows_output(g.N, g.C, g.H, g.W, dt)
        if _winograd(gt):
            _wino_forward(gy, nhwc, w, True, None, gt, rows)
        else:
            _forward(gy, nhwc, w, True, None, gt, rows)
        return gx
    return _backward_input_col2im(np.ascontiguousarray(gy, dt), w, g, gx)


def _backward_input_col2im(gy, w, g, gx):
    """Strided input gradient: per whole images, cols = gy_rows @ wm, then col2im in row order."""
    plan = _plan(g, gx.itemsize, split_images=False)
    Q = g.kh * g.kw * g.Cg
    L = g.Ho * g.Wo
    wm = np.empty((g.K, Q), gx.dtype)  # wm[k, (i, j, c)] = w[k, c, i, j]
    weight_rows(w.reshape(g.K, g.Cg, g.kh * g.kw), wm)
    gx3 = gx.reshape(g.N, g.C, g.H * g.W)
    zero = np.zeros(1, gx.dtype)

    def task(t):
        for n0, n1, _, _, _, _ in plan.tasks[t]:
            b = n1 - n0
            gys = _scratch("gy", b * L * g.K, gx.dtype).reshape(b, g.Ho, g.Wo, g.K)
            pack_rows(gy, n0, n1, 0, g.Ho, gys)
            rows = gys.reshape(b * L, g.K)
            xv = _scratch("xs", b * g.H * g.W * g.C, gx.dtype).reshape(b, g.H, g.W, g.C)
            xv[...] = 0
            cols = _scratch("cols", b * L * Q, gx.dtype).reshape(b * L, Q)
            for gi in range(g.G):
                ks = slice(gi * g.Kg, (gi + 1) * g.Kg)
                matmul_into(rows[:, ks], wm[ks], cols)
                col2im_rows(cols, 0, g.H, g.W, gi * g.Cg, g.Cg, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw,
                            g.dh, g.dw, 0, g.Ho, g.Wo, xv)
            store_rows(xv.reshape(b * g.H * g.W, g.C), gx3, n0 * g.H * g.W, 0, zero, False)

    run_blocks(task, len(plan.tasks))
    return gx


def conv2d_backward_weight(gy, x, w_shape, stride=1, padding=0, dilation=1, groups=1, bias=False):
    """The gradient with respect to the weight of ``conv2d_forward``: sum over pixels of gy x cols.

    gy (N, K, Ho, Wo), x (N, C, H, W); returns ``w_shape`` = (K, C/groups, kh, kw). Each task sums
    its units in order; the task partials are added in task order. With ``bias``, returns (weight
    gradient, bias gradient): the column and Winograd paths sum gy while they read it anyway (a row
    of ones in the columns; plane (1, 1) of the transformed gy tiles), saving ``conv2d_backward_bias``'s
    pass over gy (0.3-0.4 ms per MNIST layer); the sums run in an order of their own.
    """
    g = _geometry(np.shape(x), w_shape, stride, padding, dilation, groups)
    _check_gy(gy, g, "conv2d_backward_weight")
    gw, gb = _backward_weight(gy, x, g, _dtype(gy, x), bias)
    if not bias:
        return gw
    return gw, (conv2d_backward_bias(gy) if gb is None else gb)


def _backward_weight(gy, x, g, dt, bias):
    """(the weight gradient, the bias gradient when the path makes it with ``bias``, else None)."""
    T, Q = g.kh * g.kw, g.kh * g.kw * g.Cg
    gw = np.empty((g.K, g.Cg, g.kh, g.kw), dt)
    if gy.size == 0 or x.size == 0:
        gw[...] = 0
        return gw, None
    if _columns_path(g):
        gy, gy_nhwc = _layout(gy, dt)
        return _col_backward_weight(gy, gy_nhwc, np.ascontiguousarray(x, dt), g, gw, bias)
    x, x_nhwc = _layout(x, dt)
    if _winograd(g):
        gy, gy_nhwc = _layout(gy, dt)
        return _wino_backward_weight(gy, gy_nhwc, x, x_nhwc, g, gw, bias)
    gy = np.ascontiguousarray(gy, dt)
    plan = _plan(g, np.dtype(dt).itemsize, max_tasks=MAX_SUM_TASKS)
    L = g.Ho * g.Wo
    gy3 = gy.reshape(g.N, g.K, L)
    gw3 = gw.reshape(g.K, g.Cg, T)

    def task(t):
        acc = None if plan.channel_split else np.empty((g.K, Q), dt)
        for u, unit in enumerate(plan.tasks[t]):
            n0, n1, oh0, oh1, k0, k1 = unit
            b, lr, kk = n1 - n0, (oh1 - oh0) * g.Wo, k1 - k0
            ls = slice(oh0 * g.Wo, oh1 * g.Wo)
            h0, xv = _pack(x, g, unit, x_nhwc)
            for gi in range(g.G):
                ks = slice(gi * g.Kg + k0, gi * g.Kg + k1)
                if b == 1:
                    gv = gy3[n0, ks, ls]
                else:
                    gv = _scratch("gy", kk * b * lr, dt).reshape(kk, b, lr)
                    np.copyto(gv, gy3[n0:n1, ks, ls].transpose(1, 0, 2))
                    gv = gv.reshape(kk, b * lr)
                cols = _columns(x, g, unit, gi, h0, xv)
                if plan.channel_split:  # the unit owns gw[k0:k1] (G == 1): the result, in place
                    m = _scratch("acc", kk * Q, dt).reshape(kk, Q)
                    matmul_into(gv, cols, m)
                    weight_untaps(m, gw3[ks])
                elif u == 0:
                    matmul_into(gv, cols, acc[ks])
                else:
                    tmp = _scratch("tmp", kk * Q, dt).reshape(kk, Q)
                    matmul_into(gv, cols, tmp)
                    acc[ks] += tmp
        return acc

    partials = run_blocks(task, len(plan.tasks))
    if not plan.channel_split:
        total = partials[0]
        for p in partials[1:]:
            total += p
        weight_untaps(total, gw3)
    return gw, None


def conv2d_backward(gy, x, w, stride=1, padding=0, dilation=1, groups=1, input=True, weight=True, bias=False):
    """The gradients of ``conv2d_forward`` asked for (``input``, ``weight``, ``bias``) as (gx, gw, gb),
    None for the others: bit for bit ``conv2d_backward_input``, ``conv2d_backward_weight`` and
    ``conv2d_backward_bias``.

    A small Winograd convolution, whose gradients are each one unit of work split into two kernel
    calls by channel (go9 at batch 1), runs both gradients at once, the weight gradient on the
    calling thread and the input gradient on the pool's, each thread one gradient instead of half of
    each: one hand-over instead of two, and neither waits for the other's half.
    """
    joint = _joint_backward(gy, x, w, stride, padding, dilation, groups, bias) if input and weight else None
    if joint is not None:
        return joint
    gx = conv2d_backward_input(gy, w, np.shape(x), stride, padding, dilation, groups) if input else None
    gw = gb = None
    if weight:
        gw = conv2d_backward_weight(gy, x, np.shape(w), stride, padding, dilation, groups, bias=bias)
        if bias:
            gw, gb = gw
    elif bias:
        gb = conv2d_backward_bias(gy)
    return gx, gw, gb


def _joint_backward(gy, x, w, stride, padding, dilation, groups, bias):
    """``conv2d_backward``'s (gx, gw, gb) as one job of kernel calls when the input gradient (see
    ``conv2d_backward_input``) and the weight gradient are both split Winograd problems (``_plan``'s
    ``kernel_split``), with the same calls and buffers as when they run apart; else None."""
    g = _geometry(np.shape(x), np.shape(w), stride, padding, dilation, groups)
    if g.sh != 1 or g.sw != 1 or not _winograd(g) or _columns_path(g) or g.N * g.K * g.Ho * g.Wo == 0:
        return None
    dt = _dtype(gy, w)
    if _dtype(gy, x) != dt:
        return None
    _check_gy(gy, g, "conv2d_backward")
    pad = (g.dh * (g.kh - 1) - g.ph, g.dw * (g.kw - 1) - g.pw)
    gt = _geometry(np.shape(gy), (g.C, g.Kg, g.kh, g.kw), 1, pad, (g.dh, g.dw), g.G, internal=True)
    if not _winograd(gt):
        return None
    m_in, m_w = _wino_tile(gt), _wino_tile(g, grad=True)
    plan_in = _plan(gt, dt.itemsize, wino=_wino_cap(gt), tile=m_in)
    plan_w = _plan(g, dt.itemsize, max_tasks=MAX_SUM_TASKS, wino=_wino_cap(g), tile=m_w)
    if not (plan_in.kernel_split and plan_w.kernel_split):
        return None
    w = np.ascontiguousarray(w, dt)
    gy, gy_nhwc = _layout(gy, dt)
    x, x_nhwc = _layout(x, dt)
    rows, gx = _rows_output(g.N, g.C, g.H, g.W, dt)
    gw = np.empty((g.K, g.Cg, g.kh, g.kw), dt)
    calls_in = _wino_split_calls(gy, gy_nhwc, w, True, None, gt, rows, None, m_in, None, False, plan_in)
    calls_w, sums = _wino_grad_calls(gy, gy_nhwc, x, x_nhwc, g, gw, bias, m_w, plan_w)
    # interleaved, so that with two threads the caller runs the weight gradient's calls (the larger
    # part) and the pool's thread, which starts a few microseconds later, the input gradient's
    kernels, calls = [], []
    for pair in zip(calls_w, calls_in):
        kernels += [WINO_GRAD_SPLIT_UNIT[m_w], WINO_SPLIT_UNIT[m_in]]
        calls += pair
    run_kernels(kernels, calls)
    return gx, gw, (sums.astype(dt) if bias else None)


def conv2d_backward_bias(gy):
    """The bias gradient, gy summed over N, Ho, Wo: one pass, float64 lane sums per channel block
    (``norm.channel_sums``), rounded once to gy's dtype."""
    gy = np.asarray(gy)
    if gy.ndim != 4:
        raise ValueError(f"conv2d_backward_bias: output gradient must be 4-D, got shape {gy.shape}")
    dt = _dtype(gy)
    N, K = gy.shape[:2]
    if gy.size == 0:
        return np.zeros(K, dt)
    if channels_last(gy):  # column sums of the (pixels, K) rows
        return column_sums(nhwc_rows(gy, dt)).astype(dt)
    gy = np.ascontiguousarray(gy, dt)
    sums = np.empty(K)
    sum_channels(gy.reshape(N, K, -1), sums)
    return sums.astype(dt)
