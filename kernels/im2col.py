"""Numba data-movement kernels for the convolutions in ``conv.py`` (arithmetic only in ``cols_forward``).

The convolution is turned into a matrix product whose rows are output pixels ``(n, oh, ow)`` and
whose columns are kernel taps ``(i, j, c)`` with the channel fastest, so that every tap of a pixel
is a contiguous run of channels in a channels-last copy of the input:

* ``pack_rows``: NCHW rows ``[h0, h1)`` of images ``[n0, n1)`` to a channels-last block ``(n, h, w, c)``;
* ``im2col_rows``: that block to the ``(pixels, kh * kw * cg)`` matrix of one group (zeros for padding);
* ``col2im_rows``: the transpose of ``im2col_rows``, adding the columns back into a channels-last block;
* ``store_rows``: a ``(pixels, channels)`` matrix back to NCHW, optionally adding a bias;
* ``weight_taps`` / ``weight_untaps`` / ``weight_rows``: the filter to and from tap-major matrices;
* ``pad_image``, ``im2col_cols`` / ``col2im_cols``: for few taps (C * kh * kw small), the column
  matrix of one zero-padded image in NCHW order, ``(C * kh * kw, Ho * Wo)``: the gradients' GEMMs
  then read the filter as it is and add into NCHW directly, and ``cols_forward`` sums the taps of
  the forward itself, straight into NCHW (a GEMM that small runs far below BLAS's speed).

Each kernel runs on one thread, in a fixed order, on the block it is given.
"""

import numpy as np
from numba import njit


def _pack_rows(x, n0, n1, h0, h1, out):
    """out[b, h, w, c] = x[n0 + b, c, h0 + h, w] for b < n1 - n0, h < h1 - h0 (x is NCHW)."""
    C = x.shape[1]
    W = x.shape[3]
    for b in range(n1 - n0):
        for h in range(h1 - h0):
            dst = out[b, h]
            for c in range(C):
                src = x[n0 + b, c, h0 + h]
                for w in range(W):
                    dst[w, c] = src[w]


# Note on style: copies go through 1-D views indexed by the loop variable (``dst[t] = src[t]``).
# Indexing with computed offsets (``cols[r, q + t]``) is 4-5x slower: Numba's negative-index
# wraparound on a computed index stops LLVM from vectorizing the loop.


def _im2col_rows(xs, h0, H, W, c0, cg, kh, kw, sh, sw, ph, pw, dh, dw, oh0, oh1, Wo, cols):
    """Rows ``(b, oh, ow)``, ``oh`` in ``[oh0, oh1)``, of the column matrix of channels ``[c0, c0 + cg)``.

    ``xs`` holds input rows ``[h0, h0 + xs.shape[1])`` channels-last; the column of tap ``(i, j)``,
    channel ``c`` is ``(i * kw + j) * cg + c``. Taps outside the ``H x W`` image read zero.
    """
    C = xs.shape[3]
    run = dw == 1 and cg == C  # then the taps (i, 0..kw-1) of a pixel are one contiguous run of xs
    seg = kw * cg
    for b in range(xs.shape[0]):
        for oh in range(oh0, oh1):
            r0 = (b * (oh1 - oh0) + oh - oh0) * Wo
            for i in range(kh):
                ih = oh * sh - ph + i * dh
                q = i * seg
                if ih < 0 or ih >= H:
                    for ow in range(Wo):
                        dst = cols[r0 + ow, q:q + seg]
                        for t in range(seg):
                            dst[t] = 0
                    continue
                xrow = xs[b, ih - h0].reshape(W * C)
                for ow in range(Wo):
                    dst = cols[r0 + ow, q:q + seg]
                    iw0 = ow * sw - pw
                    if run and iw0 >= 0 and iw0 + kw <= W:
                        src = xrow[iw0 * C:iw0 * C + seg]
                        for t in range(seg):
                            dst[t] = src[t]
                        continue
                    for j in range(kw):
                        iw = iw0 + j * dw
                        d = dst[j * cg:(j + 1) * cg]
                        if iw < 0 or iw >= W:
                            for t in range(cg):
                                d[t] = 0
                        else:
                            src = xrow[iw * C + c0:iw * C + c0 + cg]
                            for t in range(cg):
                                d[t] = src[t]


def _col2im_rows(cols, h0, H, W, c0, cg, kh, kw, sh, sw, ph, pw, dh, dw, oh0, oh1, Wo, xs):
    """The transpose of ``im2col_rows``: adds the column entries into ``xs``, in a fixed order."""
    C = xs.shape[3]
    seg = kw * cg
    for b in range(xs.shape[0]):
        for oh in range(oh0, oh1):
            r0 = (b * (oh1 - oh0) + oh - oh0) * Wo
            for i in range(kh):
                ih = oh * sh - ph + i * dh
                if ih < 0 or ih >= H:
                    continue
                xrow = xs[b, ih - h0].reshape(W * C)
                q = i * seg
                for ow in range(Wo):
                    crow = cols[r0 + ow, q:q + seg]
                    for j in range(kw):
                        iw = ow * sw - pw + j * dw
                        if iw >= 0 and iw < W:
                            src = crow[j * cg:(j + 1) * cg]
                            dst = xrow[iw * C + c0:iw * C + c0 + cg]
                            for t in range(cg):
                                dst[t] += src[t]


def _store_rows(rows, out, start, k0, bias, add_bias):
    """out[n, k0 + k, l] = rows[p - start, k] (+ bias[k0 + k]) for the flat pixels p = n * L + l.

    ``out`` is ``(N, K, L)``; the pixels are [start, start + len(rows)). They are done in runs of
    16 to 64 within one image (a run of rows is 16 KB at most), so the reads of a run stay in L1
    while its channels are written.
    """
    R = rows.shape[0]
    K = rows.shape[1]
    L = out.shape[2]
    run = min(64, max(16, 4096 // max(K, 1)))
    n = start // L
    l = start - n * L
    r = 0
    while r < R:
        m = min(run, R - r, L - l)
        src = rows[r:r + m]
        for k in range(K):
            dst = out[n, k0 + k, l:l + m]
            if add_bias:
                bk = bias[k0 + k]
                for t in range(m):
                    dst[t] = src[t, k] + bk
            else:
                for t in range(m):
                    dst[t] = src[t, k]
        r += m
        l += m
        if l == L:
            l = 0
            n += 1


def _pad_image(x, n, ph, pw, out):
    """out[c] = image n of x with ph rows and pw columns of zeros around it."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for c in range(C):
        dst = out[c]
        for r in range(ph):
            for t in range(dst.shape[1]):
                dst[r, t] = 0
        for r in range(ph + H, dst.shape[0]):
            for t in range(dst.shape[1]):
                dst[r, t] = 0
        for h in range(H):
            row = dst[ph + h]
            src = x[n, c, h]
            for t in range(pw):
                row[t] = 0
            for t in range(pw + W, row.shape[0]):
                row[t] = 0
            inner = row[pw:pw + W]
            for t in range(W):
                inner[t] = src[t]


def _im2col_cols(x, n0, ph, pw, kh, kw, sh, sw, dh, dw, xp, cols):
    """Column matrices of images n0, n0 + 1, ... in the filter's (c, i, j) order, through the padded
    scratch image xp (C, H + 2 ph, W + 2 pw):  cols[b, (c, i, j), (oh, ow)] = x[n0 + b, c, ih, iw]
    (0 outside), with ih = oh * sh - ph + i * dh, iw = ow * sw - pw + j * dw.

    So ``w.reshape(K, -1) @ cols[b]`` is the convolution of image n0 + b, already in NCHW. Rows of
    cols past C * kh * kw are left alone.
    """
    Ho, Wo = out_size(xp.shape[1], kh, sh, dh), out_size(xp.shape[2], kw, sw, dw)
    for b in range(cols.shape[0]):
        pad_image(x, n0 + b, ph, pw, xp)
        q = 0
        for c in range(xp.shape[0]):
            for i in range(kh):
                for j in range(kw):
                    src = xp[c, i * dh:i * dh + (Ho - 1) * sh + 1:sh, j * dw:j * dw + (Wo - 1) * sw + 1:sw]
                    dst = cols[b, q].reshape(Ho, Wo)
                    for oh in range(Ho):
                        for t in range(Wo):
                            dst[oh, t] = src[oh, t]
                    q += 1


def _col2im_cols(cols, n0, ph, pw, kh, kw, sh, sw, dh, dw, gxp, gx):
    """The transpose of ``im2col_cols``: gx[n0 + b] = the entries of cols[b] added up, row after row,
    in the padded scratch image gxp, then cropped."""
    C, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    Ho, Wo = out_size(gxp.shape[1], kh, sh, dh), out_size(gxp.shape[2], kw, sw, dw)
    for b in range(cols.shape[0]):
        for c in range(C):
            plane = gxp[c]
            for r in range(plane.shape[0]):
                for t in range(plane.shape[1]):
                    plane[r, t] = 0
        q = 0
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    dst = gxp[c, i * dh:i * dh + (Ho - 1) * sh + 1:sh, j * dw:j * dw + (Wo - 1) * sw + 1:sw]
                    src = cols[b, q].reshape(Ho, Wo)
                    for oh in range(Ho):
                        for t in range(Wo):
                            dst[oh, t] += src[oh, t]
                    q += 1
        for c in range(C):
            for h in range(H):
                src = gxp[c, ph + h, pw:pw + W]
                dst = gx[n0 + b, c, h]
                for t in range(W):
                    dst[t] = src[t]


def _shifted_copies(x, n, ph, pw, kw, dw, Wo, xs):
    """Stride 1: xs[c kw + j, r Wo + ow] = x[n, c, r - ph, ow + j dw - pw], 0 outside the image, for
    the (H + 2 ph) rows r of each copy. Tap (c, i, j) of output pixel q = oh Wo + ow is then
    xs[c kw + j, q + i dh Wo]: kw copies per channel stand for all kh kw column rows."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    rows = xs.shape[1] // Wo
    for c in range(C):
        for j in range(kw):
            dst = xs[c * kw + j]
            shift = j * dw - pw
            lo = min(max(0, -shift), Wo)  # output columns [lo, hi) lie over the image
            hi = max(min(Wo, W - shift), lo)
            for r in range(rows):
                ih = r - ph
                base = r * Wo
                if ih < 0 or ih >= H:
                    for t in range(Wo):
                        dst[base + t] = 0
                    continue
                src = x[n, c, ih]
                for t in range(lo):
                    dst[base + t] = 0
                for t in range(lo, hi):
                    dst[base + t] = src[t + shift]
                for t in range(hi, Wo):
                    dst[base + t] = 0


def _cols_forward(x, w2, bias, n0, n1, ph, pw, kh, kw, sh, sw, dh, dw, xp, buf, out):
    """The forward of images [n0, n1) from their column matrices, without a GEMM:
    out[n, k] = bias[k] + sum over taps t of w2[k, t] * cols(n)[t], into ``out`` (N, K, Ho, Wo),
    C-contiguous NCHW.

    ``w2`` is the filter as (K, T), T = C kh kw taps in (c, i, j) order, ``bias`` (K,) (zeros for
    none); ``xp`` is scratch for ``im2col_cols`` and ``buf`` (1-D) for the columns: T Ho Wo entries,
    or at stride 1 the C kw (H + 2 ph) Wo of ``shifted_copies``, cheaper to make than columns (0.61
    against 0.78 ms for MNIST's first layer at 2 threads). With so few taps a GEMM's inner size is
    tiny and BLAS runs far below its speed (that layer, 10 with the bias: 0.92-1.13 ms). Each pass
    over an output plane adds nine taps, or three, or one (as many as are left; another pass reading
    and writing the plane costs about as much as three taps), the first pass to the bias: the taps
    are added in their order whatever the passes. Indices are unsigned: with signed ones Numba's negative-index wrap keeps the loops
    scalar."""
    K, T = w2.shape
    Ho, Wo = out.shape[2], out.shape[3]
    L = np.uint64(Ho * Wo)
    shifted = sh == 1 and sw == 1
    C = x.shape[1]
    plane = (x.shape[2] + 2 * ph) * Wo
    cf = buf[:C * kw * plane] if shifted else buf[:T * Ho * Wo]
    starts = np.empty(T, np.uint64)  # where tap t = (c, i, j) reads, in cf
    for t in range(T):
        if shifted:
            starts[t] = np.uint64(((t // (kh * kw)) * kw + t % kw) * plane + ((t // kw) % kh) * dh * Wo)
        else:
            starts[t] = np.uint64(t * Ho * Wo)
    of = out.reshape(-1)
    z = np.uint64(0)
    for n in range(n0, n1):
        if shifted:
            shifted_copies(x, n, ph, pw, kw, dw, Wo, cf.reshape(C * kw, plane))
        else:
            im2col_cols(x, n, ph, pw, kh, kw, sh, sw, dh, dw, xp, cf.reshape(1, T, Ho * Wo))
        for k in range(K):
            ob = np.uint64(n * K + k) * L
            t = 0
            while t < T:
                s0 = starts[t]
                f0 = w2[k, t]
                if T - t >= 9:
                    s1, s2, s3, s4 = starts[t + 1], starts[t + 2], starts[t + 3], starts[t + 4]
                    s5, s6, s7, s8 = starts[t + 5], starts[t + 6], starts[t + 7], starts[t + 8]
                    f1, f2, f3, f4 = w2[k, t + 1], w2[k, t + 2], w2[k, t + 3], w2[k, t + 4]
                    f5, f6, f7, f8 = w2[k, t + 5], w2[k, t + 6], w2[k, t + 7], w2[k, t + 8]
                    if t == 0:
                        b = bias[k]
                        for q in range(z, L):
                            of[ob + q] = (b + f0 * cf[s0 + q] + f1 * cf[s1 + q] + f2 * cf[s2 + q] + f3 * cf[s3 + q]
                                          + f4 * cf[s4 + q] + f5 * cf[s5 + q] + f6 * cf[s6 + q]
                                          + f7 * cf[s7 + q] + f8 * cf[s8 + q])
                    else:
                        for q in range(z, L):
                            of[ob + q] = (of[ob + q] + f0 * cf[s0 + q] + f1 * cf[s1 + q] + f2 * cf[s2 + q]
                                          + f3 * cf[s3 + q] + f4 * cf[s4 + q] + f5 * cf[s5 + q]
                                          + f6 * cf[s6 + q] + f7 * cf[s7 + q] + f8 * cf[s8 + q])
                    t += 9
                elif T - t >= 3:
                    s1, s2 = starts[t + 1], starts[t + 2]
                    f1, f2 = w2[k, t + 1], w2[k, t + 2]
                    if t == 0:
                        b = bias[k]
                        for q in range(z, L):
                            of[ob + q] = b + f0 * cf[s0 + q] + f1 * cf[s1 + q] + f2 * cf[s2 + q]
                    else:
                        for q in range(z, L):
                            of[ob + q] = of[ob + q] + f0 * cf[s0 + q] + f1 * cf[s1 + q] + f2 * cf[s2 + q]
                    t += 3
                else:
                    if t == 0:
                        b = bias[k]
                        for q in range(z, L):
                            of[ob + q] = b + f0 * cf[s0 + q]
                    else:
                        for q in range(z, L):
                            of[ob + q] = of[ob + q] + f0 * cf[s0 + q]
                    t += 1


def _out_size(padded, k, s, d):
    """Output length along an axis of ``padded`` input positions."""
    return (padded - d * (k - 1) - 1) // s + 1


def _weight_taps(w, G, flip, k0, k1, out):
    """Filter (K, Cg, kh, kw) as per-group tap-major GEMM matrices, output channels [k0, k1) only.

    ``flip`` False: out[g, t * Cg + c, k - k0] = w[g * Kg + k, c, t]          (G, T * Cg, k1 - k0)
    ``flip`` True:  out[g, t * Kg + k, c - k0] = w[g * Kg + k, c, T - 1 - t]  (G, T * Kg, k1 - k0)
    with t = i * kw + j the flat tap: reversing t flips both kernel axes, and with ``flip`` the
    output channels are the filter's input channels c. (NumPy's transposing copy of a 256x256x3x3
    filter takes about 1 ms here; this a third of it.)
    """
    K, Cg = w.shape[0], w.shape[1]
    T = w.shape[2] * w.shape[3]
    Kg = K // G
    m = k1 - k0
    for g in range(G):
        if flip:
            for k in range(Kg):
                src = w[g * Kg + k].reshape(Cg * T)
                for t in range(T):
                    dst = out[g, t * Kg + k]
                    a = T - 1 - t + k0 * T
                    for c in range(m):
                        dst[c] = src[a + c * T]
        else:
            for ka in range(k0, k1, 16):  # 16 output channels at a time: whole cache lines of out
                mk = min(16, k1 - ka)
                src = w[g * Kg + ka:g * Kg + ka + mk].reshape(mk, Cg * T)
                for c in range(Cg):
                    for t in range(T):
                        dst = out[g, t * Cg + c, ka - k0:ka - k0 + mk]
                        a = c * T + t
                        for k in range(mk):
                            dst[k] = src[k, a]


def _weight_untaps(m, out):
    """out[k, c, t] = m[k, t * Cg + c]: a (K, T * Cg) tap-major matrix back to (K, Cg, kh, kw).

    ``out`` is (K, Cg, T); when ``m`` is (K, Cg, T)-shaped instead, the inverse (see ``weight_rows``).
    """
    K, Cg, T = out.shape
    for k in range(K):
        src = m[k]
        dst = out[k]
        for t in range(T):
            for c in range(Cg):
                dst[c, t] = src[t * Cg + c]


def _weight_rows(w, out):
    """out[k, t * Cg + c] = w[k, c, t]: the filter (K, Cg, T) as a (K, T * Cg) tap-major matrix."""
    K, Cg, T = w.shape
    for k in range(K):
        src = w[k]
        dst = out[k]
        for c in range(Cg):
            for t in range(T):
                dst[t * Cg + c] = src[c, t]


pack_rows = njit(cache=True, nogil=True)(_pack_rows)
im2col_rows = njit(cache=True, nogil=True)(_im2col_rows)
col2im_rows = njit(cache=True, nogil=True)(_col2im_rows)
store_rows = njit(cache=True, nogil=True)(_store_rows)
pad_image = njit(cache=True, nogil=True)(_pad_image)
out_size = njit(cache=True, nogil=True)(_out_size)  # helper of the two below
im2col_cols = njit(cache=True, nogil=True)(_im2col_cols)
col2im_cols = njit(cache=True, nogil=True)(_col2im_cols)
shifted_copies = njit(cache=True, nogil=True)(_shifted_copies)
cols_forward = njit(cache=True, nogil=True)(_cols_forward)
weight_taps = njit(cache=True, nogil=True)(_weight_taps)
weight_untaps = njit(cache=True, nogil=True)(_weight_untaps)
weight_rows = njit(cache=True, nogil=True)(_weight_rows)
