"""Winograd F(m x m, 3x3) transforms for 3x3, stride-1, undilated convolutions (Lavin & Gray, 2015).

An m x m output tile of ``y = x * g`` (cross-correlation) is ``A^T [(G g G^T) . (B^T d B)] A`` for the
a x a input tile ``d`` under it (a = m + 2): a^2 products per tile and channel pair instead of 9 m^2.
Over channels the a^2 element-wise products become a^2 matrix products, one per tile position
xi = a u + v:

    M[xi] (tiles, K) = V[xi] (tiles, C) @ U[xi] (C, K),   V = B^T d B,   U = G g G^T,

and each output tile is ``A^T M A``. The weight gradient uses the same identity the other way round:
``gw = G^T [sum over tiles of (A gy A^T) . (B^T d B)] G``, i.e. a^2 products summed over the tiles.

Three tile sizes (``WINOGRAD[m] = (B^T, G, A^T)``, in ``winograd_matrices.py``), from the Toom-Cook
construction with the points
0, +-1 (+2, +-2) and infinity, scaled so that B^T and A^T are small integers (exact in any float
dtype) and the fractions sit in G (applied once per filter, in float64 then rounded):

* F(2x2, 3x3): 4x4 tiles, 16 planes, 4 multiplies per output;
* F(3x3, 3x3): 5x5 tiles, 25 planes, 2.78 per output (9x9 boards split into 3x3 tiles exactly);
* F(4x4, 3x3): 6x6 tiles, 36 planes, 2.25 per output.

Larger tiles round worse (the transforms have larger entries); the float32 errors measured here
are in the tests (``WINO_TOL``) and in ``conv.py``.

The definitions here are generic in the tile size, driven by the matrices: each transform is two
passes (rows, then columns) of loops ``out += coef * in`` over the channels, innermost, skipping
zero coefficients. The kernels that run are these unrolled per tile size (``winograd_transforms.py``,
see below): the same arithmetic in the same order, so the same bits. Every kernel loops over
channels innermost (channels-last data), so the loops vectorize; each runs on one thread, in a fixed
order. The filter transform G g G^T and the weight gradient's inverse G^T S G apply G separably,
over runs of (input, output) channel pairs, from and to copies of the taps in tap-major order
(``wino_filter``, ``wino_filter_grad``).
"""

import numpy as np
from numba import njit

from freenet.kernels.gemm import gemm_into
from freenet.kernels.simd import transpose_block
from freenet.kernels.spin import STAGED_SLOTS, post as post_job, served_by, spin_until, stage, staged
from freenet.kernels.winograd_matrices import WINOGRAD  # noqa: F401 (m: (B^T, G, A^T))


def _wino_pack(x, n0, n1, r0, ph, pw, out):
    """Zero-padded channels-last rows: out[b, r, s, c] = x[n0 + b, c, r0 + r - ph, s - pw] (0 outside)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    Wt = out.shape[2]
    s0 = min(max(pw, 0), Wt)  # columns [s0, s1) hold the image
    s1 = max(min(W + pw, Wt), s0)
    aliased = (H * W * x.itemsize) % 4096 == 0  # (then strided reads would share L1 sets)
    for b in range(n1 - n0):
        for r in range(out.shape[1]):
            dst = out[b, r]
            ih = r0 + r - ph
            if ih < 0 or ih >= H:
                for s in range(Wt):
                    row = dst[s]
                    for c in range(C):
                        row[c] = 0
                continue
            for s in range(s0):
                row = dst[s]
                for c in range(C):
                    row[c] = 0
            for s in range(s1, Wt):
                row = dst[s]
                for c in range(C):
                    row[c] = 0
            if aliased:  # channel rows 4 KB apart: read each row once, write with stride C
                inner = dst[s0:s1]
                for c in range(C):
                    src = x[n0 + b, c, ih, s0 - pw:s1 - pw]
                    for s in range(s1 - s0):
                        inner[s, c] = src[s]
            else:  # write each pixel's channels contiguously
                src2 = x[n0 + b, :, ih]
                for s in range(s0, s1):
                    for c in range(C):
                        dst[s, c] = src2[c, s - pw]


def _wino_pack_nhwc(x, n0, n1, r0, ph, pw, out):
    """``wino_pack`` of a channels-last x (N, H, W, C): out[b, r, s] = x[n0 + b, r0 + r - ph, s - pw]."""
    H, W, C = x.shape[1], x.shape[2], x.shape[3]
    Wt = out.shape[2]
    s0 = min(max(pw, 0), Wt)  # columns [s0, s1) hold the image
    s1 = max(min(W + pw, Wt), s0)
    for b in range(n1 - n0):
        for r in range(out.shape[1]):
            dst = out[b, r].reshape(Wt * C)
            ih = r0 + r - ph
            if ih < 0 or ih >= H:
                for e in range(Wt * C):
                    dst[e] = 0
                continue
            head = dst[:s0 * C]
            for e in range(s0 * C):
                head[e] = 0
            tail = dst[s1 * C:]
            for e in range((Wt - s1) * C):
                tail[e] = 0
            src = x[n0 + b, ih].reshape(W * C)[(s0 - pw) * C:(s1 - pw) * C]
            inner = dst[s0 * C:s1 * C]
            for e in range((s1 - s0) * C):
                inner[e] = src[e]


def _wino_pack_any(x, nhwc, n0, n1, r0, ph, pw, out):
    """``wino_pack`` of an NCHW x, or (``nhwc``) ``wino_pack_nhwc`` of a channels-last one."""
    if nhwc:
        wino_pack_nhwc(x, n0, n1, r0, ph, pw, out)
    else:
        wino_pack(x, n0, n1, r0, ph, pw, out)


def _wino_filter(w, flip, o0, o1, G, U, gt, ht):
    """The filter transform U = G g G^T of output channels [o0, o1): U[a u + v, i, o - o0] =
    (G g G^T)[u, v] for each input channel i, with g = w[o, i] (K, C, 3, 3), or (``flip``, for the
    input gradient, whose outputs are w's inputs) g = w[i, o] rotated by 180 degrees.

    U's planes may have more rows than the inputs used. Separable, as two passes over the taps of
    ``gt.shape[1] // (o1 - o0)`` input channels at a time, copied tap-major into ``gt`` (9, ib * (o1
    - o0)): first ``ht[s] = sum_r G[u, r] g[r, s]`` for one u at a time (``ht`` (3, same)), then
    ``U[a u + v] = sum_s G[v, s] ht[s]``, loops long enough to vectorize over (input, output)
    channel pairs (per input channel, loops of 32 outputs took twice as long)."""
    a = G.shape[0]
    n_in = w.shape[0] if flip else w.shape[1]
    no = o1 - o0
    w2 = w.reshape(w.shape[0], w.shape[1] * 9)
    U2 = U.reshape(U.shape[0], U.shape[1] * U.shape[2])
    ib = max(1, gt.shape[1] // max(no, 1))
    offsets = np.empty(16, np.int64)
    for i0 in range(0, n_in, ib):
        i1 = min(i0 + ib, n_in)
        n = (i1 - i0) * no
        if flip:
            taps_flipped(w2, o0, no, i0, i1, gt, offsets)
        else:
            taps_by_tap(w2, o0, no, i0, i1, gt, offsets)
        for u in range(a):
            f0, f1, f2 = G[u, 0], G[u, 1], G[u, 2]
            for s in range(3):
                hs, g0, g1, g2 = ht[s], gt[s], gt[3 + s], gt[6 + s]
                for e in range(n):
                    hs[e] = f0 * g0[e] + f1 * g1[e] + f2 * g2[e]
            h0, h1, h2 = ht[0], ht[1], ht[2]
            for v in range(a):
                f0, f1, f2 = G[v, 0], G[v, 1], G[v, 2]
                row = U2[a * u + v, i0 * no:i0 * no + n]
                for e in range(n):
                    row[e] = f0 * h0[e] + f1 * h1[e] + f2 * h2[e]


def _taps_by_tap(w2, o0, no, i0, i1, gt, offsets):
    """gt[tap, (i - i0) no + o] = w2[o0 + o, 9 i + tap] for o < no and i in [i0, i1): the forward's
    filter taps, tap-major. Blocks of L outputs x L tap columns (L values per 64 bytes) are
    transposed in registers (``simd.transpose_block``); the columns and outputs left over are copied
    one by one. ``w2`` and ``gt`` are C-contiguous; ``offsets`` is scratch of 16 int64. The whole
    filter transform (``wino_filter``) of go9's half filter took 13 us instead of 20 with the
    element-by-element copy, go19-256-b1's 303 instead of 370 (its flipped copies 13 / 17 and
    196 / 274 us; one process, alternating)."""
    L = 64 // w2.itemsize
    row = w2.shape[1]
    width = gt.shape[1]
    flat, gflat = w2.reshape(w2.size), gt.reshape(gt.size)
    ncol = 9 * (i1 - i0)
    full_cols, full_rows = ncol // L * L, no // L * L
    for cb in range(0, full_cols, L):
        for c in range(L):
            i, tap = divmod(cb + c, 9)
            offsets[c] = tap * width + i * no
        for ob in range(0, full_rows, L):
            transpose_block(flat, (o0 + ob) * row + 9 * i0 + cb, row, gflat, offsets, L)
            for c in range(L):
                offsets[c] += L
    for o in range(no):
        src = w2[o0 + o]
        for col in range(full_cols if o < full_rows else 0, ncol):
            i, tap = divmod(col, 9)
            gt[tap, i * no + o] = src[9 * i0 + col]


def _taps_flipped(w2, o0, no, i0, i1, gt, offsets):
    """gt[8 - tap, (i - i0) no + o] = w2[i, 9 (o0 + o) + tap] for o < no and i in [i0, i1): the input
    gradient's filter taps (w's outputs as inputs, rotated by 180 degrees), tap-major. Each row's
    run of no x 9 taps is an (no, 9) matrix: blocks of L of its rows are transposed in registers
    (reading L - 9 values past the block, inside the array) when L >= 9, the rest copied one by one."""
    L = 64 // w2.itemsize
    row = w2.shape[1]
    width = gt.shape[1]
    flat, gflat = w2.reshape(w2.size), gt.reshape(gt.size)
    full_rows = no // L * L if L >= 9 else 0
    for i in range(i0, i1):
        src = w2[i]
        d = (i - i0) * no
        done = 0
        for ob in range(0, full_rows, L):
            start = i * row + 9 * (o0 + ob)
            if start + 9 * (L - 1) + L > flat.size:
                break
            for c in range(9):
                offsets[c] = (8 - c) * width + d + ob
            transpose_block(flat, start, 9, gflat, offsets, 9)
            done = ob + L
        for o in range(done, no):
            for tap in range(9):
                gt[8 - tap, d + o] = src[9 * (o0 + o) + tap]


def _wino_filter_grad(S, G, k0, k1, gw, gt, ht):
    """The weight gradient's inverse transform: gw[k0 + k, c] = G^T S[:, k, c] G (3 x 3 from the
    a x a values S[a u + v, k, c]) for k in [0, k1 - k0): S holds a^2 planes of (>= k1 - k0, C) sums
    of tile products, gw (K, C, 3, 3) is C-contiguous. The transpose of ``wino_filter``: two passes
    over (k, c) pairs ``gt.shape[1]`` at a time, ``ht[3 u + s] = sum_v G[v, s] S[a u + v]`` (``ht``
    (3a, same)), then ``gt[3 r + s] = sum_u G[u, r] ht[3 u + s]`` (terms in that order, zeros
    skipped), copied out tap-minor. The kernels run it unrolled per tile size (``FILTER_GRAD``)."""
    a = G.shape[0]
    C = gw.shape[1]
    total = (k1 - k0) * C
    S2 = S.reshape(S.shape[0], S.shape[1] * S.shape[2])
    out = gw.reshape(gw.shape[0] * C * 9)
    base = k0 * C * 9
    chunk = gt.shape[1]
    for e0 in range(0, total, chunk):
        n = min(chunk, total - e0)
        for u in range(a):
            for s in range(3):
                hs = ht[3 * u + s]
                first = True
                for v in range(a):
                    f = G[v, s]
                    if f == 0:
                        continue
                    src = S2[a * u + v, e0:e0 + n]
                    if first:
                        for e in range(n):
                            hs[e] = f * src[e]
                        first = False
                    else:
                        for e in range(n):
                            hs[e] += f * src[e]
        for r in range(3):
            for s in range(3):
                row = gt[3 * r + s]
                first = True
                for u in range(a):
                    f = G[u, r]
                    if f == 0:
                        continue
                    h = ht[3 * u + s]
                    if first:
                        for e in range(n):
                            row[e] = f * h[e]
                        first = False
                    else:
                        for e in range(n):
                            row[e] += f * h[e]
        for e in range(n):
            d = base + (e0 + e) * 9
            for tap in range(9):
                out[d + tap] = gt[tap, e]


# The transforms run in two passes (rows, then columns), each a few loops ``out += coef * in`` over
# channels, which read one array and write another: a single loop writing many planes needs more
# runtime alias checks than LLVM allows, and stays scalar. No views are made inside the loops (each
# view costs a reference-count round trip, per tile most of the time for 64 channels): the arrays
# are reshaped to 2-D once and indexed.


def _wino_tiles(xs, m, tw, T, Bm, V, tmp):
    """V[xi, t, c] = (Bm d Bm^T)[u, v] (xi = a u + v) for the tiles t = (b, i, j) of ``xs``.

    ``xs`` is (nb, rows, Wt, C), channels-last; tile (b, i, j) is d = xs[b, m i : m i + r,
    m j : m j + r] with ``Bm`` (a, r). The input transform: Bm = B^T (r = a); the weight gradient's
    transform of gy: Bm = A (r = m). ``V`` is (a^2, >= T, C). ``tmp`` is scratch of at least
    a * Wt * C entries.
    """
    nb, rows, Wt, C = xs.shape
    a, r = Bm.shape
    n = Wt * C
    na = (rows - r) // m + 1
    x2 = xs.reshape(nb * rows, n)
    d2 = tmp[:a * n].reshape(a, n)
    d3 = tmp[:a * n].reshape(a, Wt, C)
    t0 = 0
    for b in range(nb):
        for i in range(na):
            base = b * rows + m * i
            # rows: Bm d, over whole input rows
            for u in range(a):
                first = True
                for q in range(r):
                    f = Bm[u, q]
                    if f == 0:
                        continue
                    if first:
                        for e in range(n):
                            d2[u, e] = f * x2[base + q, e]
                        first = False
                    else:
                        for e in range(n):
                            d2[u, e] += f * x2[base + q, e]
            # columns: (Bm d) Bm^T, row u of the tiles to planes a u .. a u + a - 1. (Each index
            # is a loop-invariant expression or the channel alone: Numba's negative-index wrap on
            # an ``offset + c`` index would keep LLVM from vectorizing.)
            for u in range(a):
                for j in range(tw):
                    t = t0 + j
                    for v in range(a):
                        xi = a * u + v
                        first = True
                        for q in range(r):
                            f = Bm[v, q]
                            if f == 0:
                                continue
                            s = m * j + q
                            if first:
                                for c in range(C):
                                    V[xi, t, c] = f * d3[u, s, c]
                                first = False
                            else:
                                for c in range(C):
                                    V[xi, t, c] += f * d3[u, s, c]
            t0 += tw


def _wino_output(M, m, tw, AT, oh0, oh1, Wo, out, c0, tmp):
    """out[pixel, c0 + k] = (A^T M A) of the tiles t = (b, i, j), for output rows [oh0, oh1) of each
    image.

    ``M`` is (a^2, >= T, K). The tiles start at output row ``oh0`` (a multiple of m); ``out`` rows
    are the pixels (b, oh, ow), oh in [oh0, oh1); its columns [c0, c0 + K) are written (a whole
    C-contiguous array and an offset: a view of some columns would compile to scalar loops). Parts
    of tiles beyond oh1 or Wo are dropped. ``tmp`` is scratch of at least m * a * K entries.
    """
    a = AT.shape[1]
    K = M.shape[2]
    nrow = oh1 - oh0
    na = (nrow + m - 1) // m
    nb = out.shape[0] // (nrow * Wo)
    h = tmp[:m * a * K].reshape(m * a, K)
    t = 0
    for b in range(nb):
        for i in range(na):
            mi = min(m, nrow - m * i)
            for j in range(tw):
                mj = min(m, Wo - m * j)
                p = (b * nrow + m * i) * Wo + m * j  # the pixel of tile position (0, 0)
                # rows: A^T M
                for y in range(mi):
                    for v in range(a):
                        first = True
                        for u in range(a):
                            f = AT[y, u]
                            if f == 0:
                                continue
                            xi = a * u + v
                            if first:
                                for k in range(K):
                                    h[a * y + v, k] = f * M[xi, t, k]
                                first = False
                            else:
                                for k in range(K):
                                    h[a * y + v, k] += f * M[xi, t, k]
                # columns: (A^T M) A
                for y in range(mi):
                    for x in range(mj):
                        q = p + y * Wo + x
                        first = True
                        for v in range(a):
                            f = AT[x, v]
                            if f == 0:
                                continue
                            if first:
                                for k in range(K):
                                    out[q, c0 + k] = f * h[a * y + v, k]
                                first = False
                            else:
                                for k in range(K):
                                    out[q, c0 + k] += f * h[a * y + v, k]
                t += 1


def _wino_unit(x, nhwc, n0, n1, r0, ph, pw, m, tw, T, BT, U, AT, oh0, oh1, Wo, bias, has_bias, res, has_res,
               relu, xs, wt, V, M, wo, out, c0):
    """One unit of the Winograd forward, start to finish without the GIL: pack the input rows of images
    [n0, n1) from row r0 (x NCHW, or channels-last (N, H, W, C) with ``nhwc``) into ``xs``, transform
    them into the planes V, the (m + 2)^2 GEMMs M[xi] = V[xi] @ U[xi] (``gemm``; U's planes may have more
    rows than the C used), the output transform into columns [c0, c0 + K) of the pixel rows ``out``
    (output rows [oh0, oh1) of each image; K = U's width), then the bias, then the same columns of
    the rows ``res`` (with ``has_res``), then ReLU (with ``relu``; NaN stays NaN, as np.maximum). One call per
    unit keeps two threads from queueing for the GIL between the steps (each hand-off costs a thread
    wake-up, tens of microseconds on a VM)."""
    wino_pack_any(x, nhwc, n0, n1, r0, ph, pw, xs)
    wino_tiles_in(xs, m, tw, T, BT, V, wt)
    wino_products(V, U, M, T)
    wino_output(M, m, tw, AT, oh0, oh1, Wo, out, c0, wo)
    if has_bias or has_res or relu:
        K = M.shape[2]
        for r in range(out.shape[0]):
            row = out[r, c0:c0 + K]
            if has_bias:
                for k in range(K):
                    row[k] += bias[k]
            if has_res:
                rr = res[r, c0:c0 + K]
                for k in range(K):
                    row[k] += rr[k]
            if relu:
                for k in range(K):
                    row[k] = 0 if row[k] < 0 else row[k]


def _wino_products(V, U, M, T):
    """The (m + 2)^2 GEMMs of a forward unit, M[xi, :T] = V[xi, :T] @ U[xi, :C] (U's planes may have
    more rows than the C channels of V), by ``gemm``."""
    C = V.shape[2]
    for xi in range(V.shape[0]):
        gemm_into(V[xi, :T], U[xi, :C], M[xi, :T], False)


def _wino_split_unit(w, flip, o0, o1, G, gt, ht, transform, x, nhwc, n0, n1, r0, ph, pw, m, tw, T, BT, U, AT,
                     oh0, oh1, Wo, bias, has_bias, res, has_res, relu, xs, wt, V, M, wo, out, c0, mailbox, tag, polls,
                     flags, post, job):
    """One block of a Winograd forward split by output channel, as ``parallel.run_kernels`` calls it:
    posts the job (``spin.post``: the other threads start while this one holds no GIL), transforms
    the filter of output channels [o0, o1) into U (``wino_filter``; unless ``transform`` is False: U
    is given), then ``_wino_unit`` with those channels' bias, residual and output columns (c0 = o0).

    Called with ``post = spin.serving(h)`` (``parallel.Serve``), on pool thread h, it then serves:
    says the block of job ``job`` is done (flags[1 + h] = job) and polls for the next job; while
    that job's row of ``mailbox`` has this ``tag`` (the same fixed arguments: ``stage_split``) and its
    arrays x, w, bias, U, res and out have the shapes and strides of these, it runs that job's block
    over them too, with no return to Python in between. Returns then the last job done when
    ``polls`` polls pass with no new job, or minus the next job when that one is not for it (else 0)."""
    helper = served_by(post)
    post_job(flags, post, job)
    row = mailbox[max(helper, 0)]
    while True:
        if transform:
            wino_filter(w, flip, o0, o1, G, U, gt, ht)
        wino_unit(x, nhwc, n0, n1, r0, ph, pw, m, tw, T, BT, U, AT, oh0, oh1, Wo, bias, has_bias, res, has_res, relu,
                  xs, wt, V, M, wo, out, c0)
        if helper < 0:
            return 0
        post_job(flags, 1 + helper, job)
        if not spin_until(flags, 0, job + 1, polls):
            return job
        job += 1
        if row[0] != tag:
            return -job
        x2, ok_x = staged(row, 1, x)
        w2, ok_w = staged(row, 1 + STAGED_SLOTS, w)
        bias2, ok_bias = staged(row, 1 + 2 * STAGED_SLOTS, bias)
        U2, ok_U = staged(row, 1 + 3 * STAGED_SLOTS, U)
        res2, ok_res = staged(row, 1 + 4 * STAGED_SLOTS, res)
        out2, ok_out = staged(row, 1 + 5 * STAGED_SLOTS, out)
        if not (ok_x and ok_w and ok_bias and ok_U and ok_res and ok_out):
            return -job
        x, w, bias, U, res, out = x2, w2, bias2, U2, res2, out2


def _stage_split(mailbox, helper, tag, x, w, bias, U, res, out):
    """Row ``helper`` of ``mailbox``: ``tag``, then the arrays of that thread's block of a split
    forward (``_wino_split_unit``), before the job is posted."""
    row = mailbox[helper]
    row[0] = tag
    stage(row, 1, x)
    stage(row, 1 + STAGED_SLOTS, w)
    stage(row, 1 + 2 * STAGED_SLOTS, bias)
    stage(row, 1 + 3 * STAGED_SLOTS, U)
    stage(row, 1 + 4 * STAGED_SLOTS, res)
    stage(row, 1 + 5 * STAGED_SLOTS, out)


def _wino_grad_unit(x, x_nhwc, gy, gy_nhwc, n0, n1, r0, ph, pw, m, tw, T, BT, A, first,
                    xs, wt, V, gs, wg, G, acc, bias_acc):
    """One unit of the Winograd weight gradient without the GIL: the input tiles V = B^T d B and the
    gradient tiles G = A gy A^T of images [n0, n1) from tile row r0 / m, then for each plane
    acc[xi] = G[xi]^T V[xi] (``first``) or acc[xi] += G[xi]^T V[xi] (each sum's chain carried on).

    With a non-empty ``bias_acc`` (K,), float64, it also adds gy's sum over the unit's pixels (the
    bias gradient): row 1 of A is all ones (the point 1), so plane (1, 1) of each G tile is the sum
    of its m x m outputs (tiles past the edge hold zeros), tile after tile in order."""
    wino_pack_any(x, x_nhwc, n0, n1, r0, ph, pw, xs)
    wino_tiles_in(xs, m, tw, T, BT, V, wt)
    wino_pack_any(gy, gy_nhwc, n0, n1, r0, 0, 0, gs)
    wino_tiles_gy(gs, m, tw, T, A, G, wg)
    if bias_acc.shape[0]:
        plane = G[A.shape[0] + 1]
        for t in range(T):
            for k in range(bias_acc.shape[0]):
                bias_acc[k] += np.float64(plane[t, k])
    for xi in range(V.shape[0]):
        gemm_into(G[xi, :T].T, V[xi, :T], acc[xi], not first)


def _wino_grad_split_unit(x, x_nhwc, gy, gy_nhwc, n0, n1, r0, ph, pw, m, tw, T, BT, A, G, k0, k1, xs, wt, V, gs,
                          wg, Gy, Gk, S, gt, ht, gw, bias_acc, flags, post, job):
    """One block of a Winograd weight gradient split by output channel (``parallel.run_kernels``):
    posts the job, transforms the unit's input tiles V and gradient tiles Gy (all channels), then
    S[xi] = Gy[xi][:, k0:k1]^T V[xi] (through the contiguous copy ``Gk``) and gw[k0:k1] = G^T S G
    (``wino_filter_grad``). With a non-empty ``bias_acc`` (float64, k1 - k0), also the bias gradient
    of those channels, as ``_wino_grad_unit`` sums it."""
    post_job(flags, post, job)
    wino_pack_any(x, x_nhwc, n0, n1, r0, ph, pw, xs)
    wino_tiles_in(xs, m, tw, T, BT, V, wt)
    wino_pack_any(gy, gy_nhwc, n0, n1, r0, 0, 0, gs)
    wino_tiles_gy(gs, m, tw, T, A, Gy, wg)
    kk = k1 - k0
    for xi in range(V.shape[0]):
        for t in range(T):
            src = Gy[xi, t, k0:k1]
            dst = Gk[xi, t]
            for k in range(kk):
                dst[k] = src[k]
    if bias_acc.shape[0]:
        plane = Gk[A.shape[0] + 1]
        for t in range(T):
            for k in range(kk):
                bias_acc[k] += np.float64(plane[t, k])
    for xi in range(V.shape[0]):
        gemm_into(Gk[xi, :T].T, V[xi, :T], S[xi, :kk], False)
    wino_filter_grad(S, G, k0, k1, gw, gt, ht)


# The kernels run the transforms unrolled per tile size: ``winograd_transforms.py``, written by
# ``winograd_gen.py`` from the matrices and from ``_wino_unit`` and ``_wino_grad_unit`` above (one
# copy per tile size, calling that size's transforms; compiling all sizes into one kernel took 38 s
# instead of 4). The unrolled transforms give the bits of ``_wino_tiles`` and ``_wino_output``, which
# stay as their readable definition and the tests' reference, in about half the time (go9-b256
# forward unit 689 -> 577 us in all). The names the unit kernels call, generic here:
wino_tiles_in = wino_tiles_gy = _wino_tiles
wino_output = _wino_output
wino_unit = _wino_unit
wino_grad_split_unit = _wino_grad_split_unit
stage_split = njit(cache=True, nogil=True)(_stage_split)
wino_pack = njit(cache=True, nogil=True)(_wino_pack)
wino_products = njit(cache=True, nogil=True)(_wino_products)
wino_pack_nhwc = njit(cache=True, nogil=True)(_wino_pack_nhwc)
wino_pack_any = njit(cache=True, nogil=True)(_wino_pack_any)
taps_by_tap = njit(cache=True, nogil=True)(_taps_by_tap)
taps_flipped = njit(cache=True, nogil=True)(_taps_flipped)
wino_filter = njit(cache=True, nogil=True)(_wino_filter)
wino_filter_grad = njit(cache=True, nogil=True)(_wino_filter_grad)
