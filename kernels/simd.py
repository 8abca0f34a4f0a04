"""Kernels said in LLVM IR vectors, where Numba's own loops leave speed behind: a register
transpose, the products of small matrices and the Winograd filter transform.

``transpose_block``: a copy LLVM does not vectorize by itself, a filter's taps copied into
tap-major order (``winograd.wino_filter``).

Numba exposes no vector shuffles, and a copy that turns rows of 9 taps into rows of one tap reads or
writes with a stride of 9 in its inner loop: LLVM leaves it scalar (about one element per cycle;
gathers were slower still). ``transpose_block`` says the shuffles in LLVM IR instead: it loads L rows
of L values (one 64-byte vector each: L = 16 float32 or 8 float64), transposes them in log2(L)
rounds of two-input shuffles (round j swaps bit j of the row and the column index) and stores the
first ``n_out`` transposed rows where ``out_offsets`` says.

``matmul_small``: C = A @ B for the small products of a Winograd unit at batch 1 (go9: 25 products
of 9 x 64 by 64 x 32), where OpenBLAS's call overhead and blocking cost more than the arithmetic.
C is cut into register tiles of up to MATMUL_ROWS rows by two vectors of columns; each tile
sums its products over k in order, one fused multiply-add (``llvm.fma``: one rounding) at a time,
starting from zero, and is stored once. Numba's loops cannot say a fused multiply-add without
fastmath flags, and leave a vectorized loop at 256 bits where the IR vectors here are 512.

Plain IR vectors: on a CPU without 512-bit vectors LLVM splits them into halves or quarters, with
the same results. Under ``NUMBA_DISABLE_JIT=1`` both are Python loops.
"""

import llvmlite.ir as ir
import numba
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

MATMUL_ROWS = 5  # rows of a matmul_small register tile (x 2 vectors: 10 accumulators)


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


def _matmul_tile(nvec):
    """An intrinsic ``tile(A, B, C, r0, rows, n0)``: C[r0 + r, n0 + j] = sum over k of A[r0 + r, k]
    B[k, n0 + j] for r < rows (1..MATMUL_ROWS) and j < nvec vectors, summed in order of k by fused
    multiply-adds from zero. A, B, C: 2-d arrays of one float dtype, unit column stride."""

    @intrinsic
    def tile(typingctx, A, B, C, r0, rows, n0):
        if not all(isinstance(t, types.Array) and t.ndim == 2 and t.dtype == A.dtype for t in (A, B, C)) \
                or A.dtype not in (types.float32, types.float64):
            return None
        sig = types.void(A, B, C, r0, rows, n0)

        def codegen(context, builder, signature, args):
            i64 = ir.IntType(64)
            vector, lanes = _vector(context, signature.args[0].dtype)
            scalar_ptr = vector.element.as_pointer()
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                                 f"llvm.fma.v{lanes}f{512 // lanes}")
            arrays = [context.make_array(t)(context, builder, a) for t, a in zip(signature.args[:3], args[:3])]
            row_strides = [cgutils.unpack_tuple(builder, a.strides, 2)[0] for a in arrays]
            depth = cgutils.unpack_tuple(builder, arrays[0].shape, 2)[1]
            r0_, rows_, n0_ = (context.cast(builder, args[k], signature.args[k], types.int64) for k in (3, 4, 5))

            def at(which, row, col):  # &array[row, col]
                base = builder.bitcast(arrays[which].data, ir.IntType(8).as_pointer())
                start = builder.gep(base, [builder.mul(row, row_strides[which])])
                return builder.gep(builder.bitcast(start, scalar_ptr), [col])

            def const(v):
                return ir.Constant(i64, v)

            splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
            end = builder.append_basic_block("tile.end")
            switch = builder.switch(rows_, end)
            for rows in range(1, MATMUL_ROWS + 1):
                block = builder.append_basic_block(f"tile.rows{rows}")
                switch.add_case(const(rows), block)
                builder.position_at_end(block)
                acc = [[cgutils.alloca_once(builder, vector) for _ in range(nvec)] for _ in range(rows)]
                for cell in (c for row in acc for c in row):
                    builder.store(ir.Constant(vector, None), cell)
                a_rows = [at(0, builder.add(r0_, const(r)), const(0)) for r in range(rows)]
                with cgutils.for_range(builder, depth) as loop:
                    k = loop.index
                    b_row = at(1, k, n0_)
                    b = [builder.load(builder.bitcast(builder.gep(b_row, [const(v * lanes)]), vector.as_pointer()),
                                      align=1) for v in range(nvec)]
                    for r in range(rows):  # A[r0 + r, k] in every lane
                        a = builder.load(builder.gep(a_rows[r], [k]))
                        a = builder.insert_element(ir.Constant(vector, ir.Undefined), a, ir.Constant(ir.IntType(32), 0))
                        a = builder.shuffle_vector(a, ir.Constant(vector, ir.Undefined), splat)
                        for v in range(nvec):
                            builder.store(builder.call(fma, [a, b[v], builder.load(acc[r][v])]), acc[r][v])
                for r in range(rows):
                    c_row = at(2, builder.add(r0_, const(r)), n0_)
                    for v in range(nvec):
                        pointer = builder.bitcast(builder.gep(c_row, [const(v * lanes)]), vector.as_pointer())
                        builder.store(builder.load(acc[r][v]), pointer, align=1)
                builder.branch(end)
            builder.position_at_end(end)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_tile2 = _matmul_tile(2)  # (one vector wide: as many loop bodies again to compile, for K of 16, 48, ...)


def _matmul_small(A, B, C):
    """C = A @ B: A (M, K), B (K, N), C (M, N), float32 or float64, unit column strides, N a multiple
    of two vectors (32 float32, 16 float64). The rows are cut into the fewest tiles of at most
    MATMUL_ROWS, as even as can be, and the columns into pairs of vectors."""
    M, N = C.shape
    lanes = 64 // C.itemsize
    tiles = (M + MATMUL_ROWS - 1) // MATMUL_ROWS
    r0 = 0
    for t in range(tiles):
        rows = (M - r0) // (tiles - t)
        for n0 in range(0, N, 2 * lanes):
            _tile2(A, B, C, r0, rows, n0)
        r0 += rows


def _matmul_small_python(A, B, C):
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            s = C.dtype.type(0)
            for k in range(A.shape[1]):
                s = C.dtype.type(s + A[i, k] * B[k, j])  # (not fused: a Python loop for debugging)
            C[i, j] = s


# Called from compiled kernels; a Python loop when they run as Python.
matmul_small = _matmul_small_python if numba.config.DISABLE_JIT else njit(cache=True, nogil=True)(_matmul_small)


def matmul_small_reference(A, B):
    """The NumPy twin of ``matmul_small``: A @ B in float64 (the kernel's single roundings per
    multiply-add stay within K units in the last place of the sums of |A| |B|)."""
    return A.astype(np.float64) @ B.astype(np.float64)
