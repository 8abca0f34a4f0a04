"""Matrix products whose bits do not depend on the thread count.

Rows of ``a`` (or items of a batch) are cut into fixed blocks; each block is one single-threaded
BLAS call on the thread pool. A block's result depends only on its shape and contents.
"""

import math

import numpy as np

from freenet.kernels.parallel import block_ranges, run_blocks

ROW_BLOCK = 256  # rows per BLAS call: large enough for full SGEMM speed, small enough to split work
MIN_PARALLEL_FLOPS = 1 << 22  # below this, thread hand-off costs more than it saves
SPLIT_FLOPS = 1 << 25  # fewer than 2 * ROW_BLOCK rows but this much work: two blocks, not one
MIN_ROW_BLOCK = 32  # (e.g. a Linear layer's 128-row batch: its forward and input gradient)


def _row_block(m, flops):
    """Rows per block, fixed by the shape: ROW_BLOCK, or half the rows (rounded up to 16) when that
    is the only way to give a second thread work."""
    if m >= 2 * ROW_BLOCK or flops < SPLIT_FLOPS:
        return ROW_BLOCK
    return max(MIN_ROW_BLOCK, -(-m // 32) * 16)


def matmul(a, b):
    """``np.matmul(a, b)`` for arrays of at least 2 dims (leading dims broadcast), deterministic."""
    m, k = a.shape[-2], a.shape[-1]
    n = b.shape[-1]
    if a.ndim == 2 and b.ndim == 2:
        batch, count = (), 1
    else:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        count = math.prod(batch)
    flops = 2 * count * m * n * k
    if flops < MIN_PARALLEL_FLOPS:  # one BLAS call: deterministic, and cheapest when small
        return np.matmul(a, b)
    out = np.empty(batch + (m, n), dtype=np.result_type(a, b))
    if count == 1:
        a2, b2, o2 = a.reshape(m, k), b.reshape(k, n), out.reshape(m, n)
        ranges = block_ranges(m, _row_block(m, flops))

        def rows(i):
            lo, hi = ranges[i]
            np.matmul(a2[lo:hi], b2, out=o2[lo:hi])

        run_blocks(rows, len(ranges))
        return out
    a3 = np.broadcast_to(a, batch + (m, k)).reshape(count, m, k)
    b3 = np.broadcast_to(b, batch + (k, n)).reshape(count, k, n)
    o3 = out.reshape(count, m, n)
    per_block = max(1, MIN_PARALLEL_FLOPS // (2 * m * n * k))  # items per block: fixed by the shape
    ranges = block_ranges(count, per_block)

    def items(i):
        lo, hi = ranges[i]
        np.matmul(a3[lo:hi], b3[lo:hi], out=o3[lo:hi])

    run_blocks(items, len(ranges))
    return out
