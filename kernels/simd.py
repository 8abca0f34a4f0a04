"""Kernels said in LLVM IR vectors, where Numba's own loops leave speed behind: a register
transpose and the Winograd filter transform (the GEMM's register tiles are in ``gemm.py``).

``transpose_block``: a copy LLVM does not vectorize by itself, a filter's taps copied into
tap-major order (``winograd.wino_filter``).

Numba exposes no vector shuffles, and a copy that turns rows of 9 taps into rows of one tap reads or
writes with a stride of 9 in its inner loop: LLVM leaves it scalar (about one element per cycle;
gathers were slower still). ``transpose_block`` says the shuffles in LLVM IR instead: it loads L rows
of L values (one 64-byte vector each: L = 16 float32 or 8 float64), transposes them in log2(L)
rounds of two-input shuffles (round j swaps bit j of the row and the column index) and stores the
first ``n_out`` transposed rows where ``out_offsets`` says.

Plain IR vectors: on a CPU without 512-bit vectors LLVM splits them into halves or quarters, with
the same results. Under ``NUMBA_DISABLE_JIT=1`` both are Python loops.
"""

import llvmlite.ir as ir
import numba
import numpy as np
from numba import types
from numba.core import cgutils
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


@intrinsic
def _transpose_square(typingctx, src, k, j, dst, row, col):
    """dst[row + c, col + r] = src[k + c, j + r] for r, c < L (one 64-byte vector: L = 16 float32 or
    8 float64): 2-d arrays of one float dtype, src with a unit row stride (column-major: src's
    columns are loaded as vectors), dst with a unit column stride."""
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array) and src.ndim == dst.ndim == 2
            and src.dtype == dst.dtype and src.dtype in (types.float32, types.float64)):
        return None
    sig = types.void(src, k, j, dst, row, col)

    def codegen(context, builder, signature, args):
        vector, lanes = _vector(context, signature.args[0].dtype)
        i64, i8p = ir.IntType(64), ir.IntType(8).as_pointer()
        source = context.make_array(signature.args[0])(context, builder, args[0])
        target = context.make_array(signature.args[3])(context, builder, args[3])
        k_, j_, row_, col_ = (context.cast(builder, args[n], signature.args[n], types.int64) for n in (1, 2, 4, 5))
        column_stride = cgutils.unpack_tuple(builder, source.strides, 2)[1]
        row_stride = cgutils.unpack_tuple(builder, target.strides, 2)[0]
        element = vector.element.as_pointer()

        def at(array, stride, index, offset):  # &array[...] of row ``index`` (by ``stride``) plus ``offset`` elements
            base = builder.gep(builder.bitcast(array.data, i8p), [builder.mul(index, stride)])
            return builder.bitcast(builder.gep(builder.bitcast(base, element), [offset]), vector.as_pointer())

        rows = [builder.load(at(source, column_stride, builder.add(j_, ir.Constant(i64, r)), k_), align=1)
                for r in range(lanes)]
        mask_type = ir.VectorType(ir.IntType(32), lanes)
        for b in range(lanes.bit_length() - 1):
            low, high = _round_masks(b, lanes)
            swapped = list(rows)
            for r in range(lanes):
                if not r & (1 << b):
                    pair = rows[r], rows[r | 1 << b]
                    swapped[r] = builder.shuffle_vector(*pair, ir.Constant(mask_type, low))
                    swapped[r | 1 << b] = builder.shuffle_vector(*pair, ir.Constant(mask_type, high))
            rows = swapped
        for c in range(lanes):
            builder.store(rows[c], at(target, row_stride, builder.add(row_, ir.Constant(i64, c)), col_), align=1)
        return context.get_dummy_value()

    return sig, codegen


def _transpose_square_python(src, k, j, dst, row, col):
    lanes = 64 // src.itemsize
    dst[row:row + lanes, col:col + lanes] = src[k:k + lanes, j:j + lanes]


# Called from compiled kernels (the GEMM's packing of column-major B); a Python loop as Python.
transpose_square = _transpose_square_python if numba.config.DISABLE_JIT else _transpose_square


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


def _sum_terms(terms, mul, add, sub, neg):
    """sum of f x over ``terms`` in order, as winograd_gen's expressions say it: x for f = 1, -x (or a
    subtraction) for f = -1, else f * x; so the same roundings, the same bits."""
    total = None
    for f, x in terms:
        if total is None:
            total = x if f == 1 else neg(x) if f == -1 else mul(f, x)
        else:
            total = add(total, x) if f == 1 else sub(total, x) if f == -1 else add(total, mul(f, x))
    return total


def _filter_values(G, taps, ops):
    """U[a u + v] = sum_s G[v, s] h[u, s], h[u, s] = sum_r G[u, r] taps[3 r + s], for the a x 3 matrix G
    and the nine ``taps`` (IR vectors or numbers, as ``ops`` computes them; zero terms left out)."""
    a = G.shape[0]
    out = []
    for u in range(a):
        h = [_sum_terms([(G[u, r], taps[3 * r + s]) for r in range(3) if G[u, r] != 0], **ops) for s in range(3)]
        out += [_sum_terms([(G[v, s], h[s]) for s in range(3) if G[v, s] != 0], **ops) for v in range(a)]
    return out


def _vector(context, dtype):
    """The 64-byte IR vector of ``dtype`` (16 float32 or 8 float64) and its lane count."""
    lanes = 16 if dtype == types.float32 else 8
    return ir.VectorType(context.get_value_type(dtype), lanes), lanes


def filter_block(G):
    """An intrinsic ``block(gt, e, U2, col)``: the filter transform U = G g G^T (G: a x 3, float64, its
    entries constants of the arrays' dtype) of the L channel pairs e .. e + L - 1 (one 64-byte vector)
    of the tap-major taps ``gt`` (9, n): U2[a u + v, col + j] = sum_s G[v, s] h[u, s] with
    h[u, s] = sum_r G[u, r] gt[3 r + s, e + j], all in registers (winograd_gen's loops store and
    reload h and each plane's row, 256 bits at a time). The terms as ``_sum_terms`` says. gt and U2:
    2-d arrays of one float dtype with unit column strides."""
    G = np.asarray(G, np.float64)

    @intrinsic
    def block(typingctx, gt, e, U2, col):
        if not (isinstance(gt, types.Array) and isinstance(U2, types.Array) and gt.ndim == U2.ndim == 2
                and gt.dtype == U2.dtype and gt.dtype in (types.float32, types.float64)):
            return None
        sig = types.void(gt, e, U2, col)

        def codegen(context, builder, signature, args):
            dtype = signature.args[0].dtype
            vector, lanes = _vector(context, dtype)
            i64 = ir.IntType(64)
            taps_array = context.make_array(signature.args[0])(context, builder, args[0])
            out_array = context.make_array(signature.args[2])(context, builder, args[2])
            e_, col_ = (context.cast(builder, args[k], signature.args[k], types.int64) for k in (1, 3))

            def row(array, index, start):  # &array[index, start] as a vector pointer
                stride = cgutils.unpack_tuple(builder, array.strides, 2)[0]
                base = builder.bitcast(array.data, ir.IntType(8).as_pointer())
                at = builder.gep(base, [builder.mul(ir.Constant(i64, index), stride)])
                at = builder.gep(builder.bitcast(at, vector.element.as_pointer()), [start])
                return builder.bitcast(at, vector.as_pointer())

            cast = np.float32 if dtype == types.float32 else np.float64
            ops = dict(mul=lambda f, x: builder.fmul(ir.Constant(vector, [float(cast(f))] * lanes), x),
                       add=builder.fadd, sub=builder.fsub, neg=builder.fneg)
            taps = [builder.load(row(taps_array, t, e_), align=1) for t in range(9)]
            for xi, value in enumerate(_filter_values(G, taps, ops)):
                builder.store(value, row(out_array, xi, col_), align=1)
            return context.get_dummy_value()

        return sig, codegen

    def block_python(gt, e, U2, col):
        one = gt.dtype.type
        ops = dict(mul=lambda f, x: one(f) * x, add=lambda x, y: x + y, sub=lambda x, y: x - y, neg=lambda x: -x)
        for j in range(64 // gt.itemsize):
            for xi, value in enumerate(_filter_values(G, [gt[t, e + j] for t in range(9)], ops)):
                U2[xi, col + j] = value

    return block_python if numba.config.DISABLE_JIT else block
