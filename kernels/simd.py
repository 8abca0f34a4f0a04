"""A register transpose, for a copy LLVM does not vectorize by itself: a filter's taps copied into
tap-major order (``winograd.wino_filter``).

Numba exposes no vector shuffles, and a copy that turns rows of 9 taps into rows of one tap reads or
writes with a stride of 9 in its inner loop: LLVM leaves it scalar (about one element per cycle;
gathers were slower still). ``transpose_block`` says the shuffles in LLVM IR instead: it loads L rows
of L values (one 64-byte vector each: L = 16 float32 or 8 float64), transposes them in log2(L)
rounds of two-input shuffles (round j swaps bit j of the row and the column index) and stores the
first ``n_out`` transposed rows where ``out_offsets`` says. Plain IR vectors: on a CPU without
512-bit vectors LLVM splits them into halves or quarters, with the same results. Under
``NUMBA_DISABLE_JIT=1`` it is a Python loop.
"""

import llvmlite.ir as ir
import numba
import numpy as np
from numba import types
from numba.extending import intrinsic


def _round_masks(j, lanes):
    """The two shuffle masks of round j: rows r (bit j clear) and r | 2^j become, lane by lane, the
    elements whose column has bit j swapped with the row's (lanes >= ``lanes`` pick the second row)."""
    b = 1 << j
    low = [c if not c & b else lanes + (c ^ b) for c in range(lanes)]
    high = [lanes + c if c & b else c ^ b for c in range(lanes)]
    return low, high


@intrinsic
def _transpose_block(typingctx, src, start, stride, dst, out_offsets, n_out):
    """dst[out_offsets[c] + r] = src[start + r * stride + c] for r < L, c < n_out (<= L); 1-d arrays of
    one float dtype, out_offsets an int64 array."""
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array) and src.dtype == dst.dtype
            and src.dtype in (types.float32, types.float64)):
        return None
    sig = types.void(src, start, stride, dst, out_offsets, n_out)
    lanes = 16 if src.dtype == types.float32 else 8

    def codegen(context, builder, signature, args):
        src_ty, _, _, dst_ty, offsets_ty, _ = signature.args
        source = context.make_array(src_ty)(context, builder, args[0])
        target = context.make_array(dst_ty)(context, builder, args[3])
        offsets = context.make_array(offsets_ty)(context, builder, args[4])
        start_, stride_, n_out_ = (context.cast(builder, args[k], signature.args[k], types.int64) for k in (1, 2, 5))
        i64 = ir.IntType(64)
        vector = ir.VectorType(context.get_value_type(src_ty.dtype), lanes)
        rows = []
        for r in range(lanes):
            at = builder.add(start_, builder.mul(stride_, ir.Constant(i64, r)))
            pointer = builder.bitcast(builder.gep(source.data, [at]), vector.as_pointer())
            rows.append(builder.load(pointer, align=1))
        mask_type = ir.VectorType(ir.IntType(32), lanes)
        for j in range(lanes.bit_length() - 1):
            b = 1 << j
            low, high = _round_masks(j, lanes)
            swapped = list(rows)
            for r in range(lanes):
                if not r & b:
                    swapped[r] = builder.shuffle_vector(rows[r], rows[r | b], ir.Constant(mask_type, low))
                    swapped[r | b] = builder.shuffle_vector(rows[r], rows[r | b], ir.Constant(mask_type, high))
            rows = swapped
        for c in range(lanes):
            with builder.if_then(builder.icmp_signed("<", ir.Constant(i64, c), n_out_)):
                at = builder.load(builder.gep(offsets.data, [ir.Constant(i64, c)]))
                pointer = builder.bitcast(builder.gep(target.data, [at]), vector.as_pointer())
                builder.store(rows[c], pointer, align=1)
        return context.get_dummy_value()

    return sig, codegen


def _transpose_block_python(src, start, stride, dst, out_offsets, n_out):
    for c in range(n_out):
        for r in range(64 // src.itemsize):
            dst[out_offsets[c] + r] = src[start + r * stride + c]


# Called from compiled kernels (the IR is inlined there); a Python loop when they run as Python.
transpose_block = _transpose_block_python if numba.config.DISABLE_JIT else _transpose_block


def transpose_block_reference(src, start, stride, dst, out_offsets, n_out):
    """The NumPy twin of ``transpose_block``."""
    lanes = 64 // src.itemsize
    block = np.lib.stride_tricks.as_strided(src[start:], (lanes, lanes), (stride * src.itemsize, src.itemsize))
    for c in range(n_out):
        dst[out_offsets[c]:out_offsets[c] + lanes] = block[:, c]
