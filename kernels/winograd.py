"""Winograd F(2x2, 3x3) transforms for 3x3, stride-1, undilated convolutions (Lavin & Gray, 2015).

A 2x2 output tile of ``y = x * g`` (cross-correlation) is ``A^T [(G g G^T) . (B^T d B)] A`` for the
4x4 input tile ``d`` under it: 16 products per tile and channel pair instead of 36. Over channels the
16 element-wise products become 16 matrix products, one per tile position xi = 4 u + v:

    M[xi] (tiles, K) = V[xi] (tiles, C) @ U[xi] (C, K),   V = B^T d B,   U = G g G^T,

and each output tile is ``A^T M A``. The weight gradient uses the same identity the other way round:
``gw = G^T [sum over tiles of (A gy A^T) . (B^T d B)] G``, i.e. 16 products summed over the tiles.

    B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
          [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
          [0 -1  1  0]         [1/2 -1/2  1/2]
          [0  1  0 -1]         [ 0    0    1 ]

Every kernel loops over channels innermost (channels-last data), so the loops vectorize; each runs
on one thread, in a fixed order. The filter transform and the weight gradient's inverse transform
are small GEMMs with the 16 x 9 matrix kron(G, G) (see ``conv.py``).
"""

import numpy as np
from numba import njit


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


# The transforms run in two passes (rows, then columns) of loops that each read two or three arrays
# and write one: a single loop writing all 16 planes needs more runtime alias checks than LLVM
# allows, and stays scalar. Views are made per tile row, never per tile: each view costs a
# reference-count round trip, and per tile that is most of the time for 64 channels.


def _wino_input(xs, tw, T, V2):
    """V[xi, t, c] = (B^T d B)[xi] for the tiles t = (b, a, j) of ``xs`` (rows 2a..2a+3, cols 2j..2j+3).

    ``V2`` is (16, stride): plane xi holds V[xi] in its first T * C entries.
    """
    C = xs.shape[3]
    Wt = xs.shape[2]
    n = Wt * C
    m = T * C
    tmp = np.empty((4, Wt, C), xs.dtype)
    d0 = tmp[0].reshape(n)
    d1 = tmp[1].reshape(n)
    d2 = tmp[2].reshape(n)
    d3 = tmp[3].reshape(n)
    na = (xs.shape[1] - 2) // 2
    t0 = 0
    for b in range(xs.shape[0]):
        for a in range(na):
            r0 = xs[b, 2 * a].reshape(n)
            r1 = xs[b, 2 * a + 1].reshape(n)
            r2 = xs[b, 2 * a + 2].reshape(n)
            r3 = xs[b, 2 * a + 3].reshape(n)
            # rows: B^T d, over whole input rows
            for i in range(n):
                d0[i] = r0[i] - r2[i]
            for i in range(n):
                d1[i] = r1[i] + r2[i]
            for i in range(n):
                d2[i] = r2[i] - r1[i]
            for i in range(n):
                d3[i] = r1[i] - r3[i]
            # columns: (B^T d) B, row u of the tile to planes 4u .. 4u + 3
            for u in range(4):
                row = tmp[u]
                o0 = V2[4 * u, :m].reshape(T, C)
                o1 = V2[4 * u + 1, :m].reshape(T, C)
                o2 = V2[4 * u + 2, :m].reshape(T, C)
                o3 = V2[4 * u + 3, :m].reshape(T, C)
                for j in range(tw):
                    t = t0 + j
                    s = 2 * j
                    for c in range(C):
                        o0[t, c] = row[s, c] - row[s + 2, c]
                    for c in range(C):
                        o1[t, c] = row[s + 1, c] + row[s + 2, c]
                    for c in range(C):
                        o2[t, c] = row[s + 2, c] - row[s + 1, c]
                    for c in range(C):
                        o3[t, c] = row[s + 1, c] - row[s + 3, c]
            t0 += tw


def _wino_output(M, tw, oh0, oh1, Wo, out):
    """out[pixel, k] = (A^T M A) of the tiles t = (b, a, j), for output rows [oh0, oh1) of each image.

    The tiles start at output row ``oh0`` (even); ``out`` rows are the pixels (b, oh, ow), oh in
    [oh0, oh1). Parts of tiles beyond oh1 or Wo are dropped. (One pass: four output streams are few
    enough for LLVM to vectorize, and beat two passes here.)
    """
    K = M.shape[2]
    nrow = oh1 - oh0
    na = (nrow + 1) // 2
    nb = out.shape[0] // (nrow * Wo)
    t = 0
    for b in range(nb):
        for a in range(na):
            two_rows = 2 * a + 1 < nrow
            for j in range(tw):
                ow = 2 * j
                p = (b * nrow + 2 * a) * Wo + ow  # the pixel of tile position (0, 0)
                two_cols = ow + 1 < Wo
                for k in range(K):
                    m0, m1, m2, m3 = M[0, t, k], M[1, t, k], M[2, t, k], M[3, t, k]
                    m4, m5, m6, m7 = M[4, t, k], M[5, t, k], M[6, t, k], M[7, t, k]
                    m8, m9, m10, m11 = M[8, t, k], M[9, t, k], M[10, t, k], M[11, t, k]
                    m12, m13, m14, m15 = M[12, t, k], M[13, t, k], M[14, t, k], M[15, t, k]
                    # rows: A^T M
                    a0 = m0 + m4 + m8
                    a1 = m1 + m5 + m9
                    a2 = m2 + m6 + m10
                    a3 = m3 + m7 + m11
                    b0 = m4 - m8 - m12
                    b1 = m5 - m9 - m13
                    b2 = m6 - m10 - m14
                    b3 = m7 - m11 - m15
                    # columns: (A^T M) A
                    out[p, k] = a0 + a1 + a2
                    if two_cols:
                        out[p + 1, k] = a1 - a2 - a3
                    if two_rows:
                        out[p + Wo, k] = b0 + b1 + b2
                        if two_cols:
                            out[p + Wo + 1, k] = b1 - b2 - b3
                t += 1


def _wino_gy(gs, tw, T, G2):
    """Gy[xi, t, k] = (A g A^T)[xi] for the 2x2 tiles t = (b, a, j) of ``gs`` (rows 2a, 2a+1).

    ``G2`` is (16, stride), plane xi holding Gy[xi] in its first T * K entries (as in wino_input).
    A = [1 0; 1 1; 1 -1; 0 -1].
    """
    K = gs.shape[3]
    Wt = gs.shape[2]
    n = Wt * K
    m = T * K
    tmp = np.empty((4, Wt, K), gs.dtype)
    d0 = tmp[0].reshape(n)
    d1 = tmp[1].reshape(n)
    d2 = tmp[2].reshape(n)
    d3 = tmp[3].reshape(n)
    na = gs.shape[1] // 2
    t0 = 0
    for b in range(gs.shape[0]):
        for a in range(na):
            r0 = gs[b, 2 * a].reshape(n)
            r1 = gs[b, 2 * a + 1].reshape(n)
            # rows: A g
            for i in range(n):
                d0[i] = r0[i]
            for i in range(n):
                d1[i] = r0[i] + r1[i]
            for i in range(n):
                d2[i] = r0[i] - r1[i]
            for i in range(n):
                d3[i] = -r1[i]
            # columns: (A g) A^T
            for u in range(4):
                row = tmp[u]
                o0 = G2[4 * u, :m].reshape(T, K)
                o1 = G2[4 * u + 1, :m].reshape(T, K)
                o2 = G2[4 * u + 2, :m].reshape(T, K)
                o3 = G2[4 * u + 3, :m].reshape(T, K)
                for j in range(tw):
                    t = t0 + j
                    s = 2 * j
                    for k in range(K):
                        o0[t, k] = row[s, k]
                    for k in range(K):
                        o1[t, k] = row[s, k] + row[s + 1, k]
                    for k in range(K):
                        o2[t, k] = row[s, k] - row[s + 1, k]
                    for k in range(K):
                        o3[t, k] = -row[s + 1, k]
            t0 += tw


wino_pack = njit(cache=True, nogil=True)(_wino_pack)
wino_input = njit(cache=True, nogil=True)(_wino_input)
wino_output = njit(cache=True, nogil=True)(_wino_output)
wino_gy = njit(cache=True, nogil=True)(_wino_gy)
