"""Matrix products whose bits depend on freenet's code alone: not on the CPU, the BLAS or the threads.

The rule: every element of C = A @ B is one chain of fused multiply-adds over k in order,

    c = 0  (or C's value, to accumulate);   for k = 0 .. K-1:   c = fma(A[i, k], B[k, j], c)

with a single rounding per step (``llvm.fma``). Blocking, vector width, register tile and thread
split only decide which chains run where and when, never the order inside one, so the result is the
same on AVX2 and AVX-512 and with any number of threads. OpenBLAS, in contrast, picks a kernel per
CPU and splits its sums by that kernel's blocking.

The pipeline of one product, GotoBLAS-style (``_gemm``):

    for each block of KC steps of k:    the chains carry on in C between blocks (one load, one store)
      copy B's rows of the block into KC x NR panels, zero-padded (unless B is row-major and read
                                        in place: few rows of A, or B's rows close together)
      for each block of MC rows of A:   A's block stays in L2
        for each panel of NR columns:   the panel stays in L1
          for each tile of MR rows:     ``tile``: MR x NR accumulators in registers, KC FMAs each

``tile`` is written in LLVM IR vectors, since Numba's loops say no fused multiply-add without
fastmath flags, and fastmath would also let LLVM reorder the sums. Its width follows the CPU
(``settings.vector_bytes()``: 256-bit vectors on AVX2, 512-bit on AVX-512; MR rows x 2 vectors of
accumulators): that changes speed, never bits. Tiles cut by C's right edge run on a scratch tile.

``settings.matmul_path() == "blas"`` sends ``matmul`` (the products of Python code: linear layers,
the column path of conv) to OpenBLAS instead, on fixed row blocks: faster on some shapes, bitwise
reproducible on the same CPU model only.
"""

import math

import llvmlite.ir as ir
import numba
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from freenet.kernels import settings
from freenet.kernels.parallel import block_ranges, run_blocks
from freenet.kernels.simd import transpose_square

MR = 6  # rows of a register tile (x 2 vectors of columns: 12 accumulators, 16 registers on AVX2)
KC = 256  # steps of k per block: a float32 panel of B (KC x NR) fits in L1
MC = 96  # rows of A per block: MC x KC stays in L2
PACK_ROWS = 4 * MR  # B row-major is read in place for this few rows of A, or with rows this close;
PACK_STRIDE = 1024  # else its panels are copied once per KC steps (rows far apart miss L1 and the TLB)
MIN_PARALLEL_FLOPS = 1 << 22  # below this, thread hand-off costs more than it saves
ROW_BLOCK = 192  # rows per block of a product split over threads (BLAS path: rows per call)


def tile_columns(dtype):
    """NR: the columns of a register tile, two vectors of ``settings.vector_bytes()``."""
    return 2 * settings.vector_bytes() // np.dtype(dtype).itemsize


@intrinsic
def _tile_columns(typingctx, C):
    """``tile_columns(C.dtype)`` in compiled code: a constant of the build."""
    if not isinstance(C, types.Array):
        return None

    def codegen(context, builder, signature, args):
        return ir.Constant(ir.IntType(64), tile_columns(np.dtype(str(C.dtype))))

    return types.int64(C), codegen


def _make_tile(mr):
    """An intrinsic ``tile(A, B, C, i0, rows, j0, k0, k1, bk, bj, load)``: for r < rows (1..mr) and
    the NR = 2 L columns j = j0 + jj (L lanes per vector), c = C[i0 + r, j] if ``load`` else 0,
    then c = fma(A[i0 + r, k], B[k - bk, bj + jj], c) for k = k0 .. k1 - 1, and C[i0 + r, j] = c.
    A: any strides; B and C: unit column strides, float32 or float64 alike."""

    @intrinsic
    def tile(typingctx, A, B, C, i0, rows, j0, k0, k1, bk, bj, load):
        if not all(isinstance(t, types.Array) and t.ndim == 2 and t.dtype == A.dtype for t in (A, B, C)) \
                or A.dtype not in (types.float32, types.float64):
            return None
        sig = types.void(A, B, C, i0, rows, j0, k0, k1, bk, bj, load)

        def codegen(context, builder, signature, args):
            i64, i8p = ir.IntType(64), ir.IntType(8).as_pointer()
            element = context.get_value_type(signature.args[0].dtype)
            item_bytes = 4 if signature.args[0].dtype == types.float32 else 8
            vector_bytes = settings.vector_bytes()
            lanes = vector_bytes // item_bytes
            vector = ir.VectorType(element, lanes)
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                                 f"llvm.fma.v{lanes}f{vector_bytes * 8 // lanes}")
            a, b, c = (context.make_array(t)(context, builder, v) for t, v in zip(signature.args[:3], args[:3]))
            a_row, a_col = cgutils.unpack_tuple(builder, a.strides, 2)
            b_row = cgutils.unpack_tuple(builder, b.strides, 2)[0]
            c_row = cgutils.unpack_tuple(builder, c.strides, 2)[0]
            i0_, rows_, j0_, k0_, k1_, bk_, bj_ = (context.cast(builder, args[n], signature.args[n], types.int64)
                                                   for n in range(3, 10))
            load_ = context.cast(builder, args[10], signature.args[10], types.boolean)

            def byte_at(array, offset):
                return builder.gep(builder.bitcast(array.data, i8p), [offset])

            def vector_at(pointer, v):  # vector v of the row starting at byte pointer ``pointer``
                start = builder.gep(builder.bitcast(pointer, element.as_pointer()), [ir.Constant(i64, v * lanes)])
                return builder.bitcast(start, vector.as_pointer())

            splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
            column = builder.mul(j0_, ir.Constant(i64, item_bytes))
            b_column = builder.mul(bj_, ir.Constant(i64, item_bytes))
            end = builder.append_basic_block("tile.end")
            switch = builder.switch(rows_, end)
            for rows in range(1, mr + 1):
                block = builder.append_basic_block(f"tile.rows{rows}")
                switch.add_case(ir.Constant(i64, rows), block)
                builder.position_at_end(block)
                c_rows = [builder.gep(byte_at(c, builder.mul(builder.add(i0_, ir.Constant(i64, r)), c_row)),
                                      [column]) for r in range(rows)]
                acc = [[cgutils.alloca_once(builder, vector) for _ in range(2)] for _ in range(rows)]
                with builder.if_else(load_) as (then, otherwise):
                    with then:
                        for r in range(rows):
                            for v in range(2):
                                builder.store(builder.load(vector_at(c_rows[r], v), align=1), acc[r][v])
                    with otherwise:
                        for cell in (cell for row in acc for cell in row):
                            builder.store(ir.Constant(vector, None), cell)
                a_rows = [byte_at(a, builder.mul(builder.add(i0_, ir.Constant(i64, r)), a_row)) for r in range(rows)]
                with cgutils.for_range(builder, builder.sub(k1_, k0_)) as loop:
                    k = builder.add(k0_, loop.index)
                    b_at = builder.gep(byte_at(b, builder.mul(builder.sub(k, bk_), b_row)), [b_column])
                    bv = [builder.load(vector_at(b_at, v), align=1) for v in range(2)]
                    for r in range(rows):  # A[i0 + r, k] in every lane
                        scalar = builder.load(builder.bitcast(builder.gep(a_rows[r], [builder.mul(k, a_col)]),
                                                              element.as_pointer()))
                        av = builder.insert_element(ir.Constant(vector, ir.Undefined), scalar,
                                                    ir.Constant(ir.IntType(32), 0))
                        av = builder.shuffle_vector(av, ir.Constant(vector, ir.Undefined), splat)
                        for v in range(2):
                            builder.store(builder.call(fma, [av, bv[v], builder.load(acc[r][v])]), acc[r][v])
                for r in range(rows):
                    for v in range(2):
                        builder.store(builder.load(acc[r][v]), vector_at(c_rows[r], v), align=1)
                builder.branch(end)
            builder.position_at_end(end)
            return context.get_dummy_value()

        return sig, codegen

    return tile


def _tile_python(A, B, C, i0, rows, j0, k0, k1, bk, bj, load):
    """``tile`` as Python loops (``NUMBA_DISABLE_JIT=1``, a debugging aid): the same chains, but a
    step is a * b + c in float64 rounded to C's dtype, not one fused rounding."""
    for r in range(rows):
        for jj in range(tile_columns(C.dtype)):
            c = float(C[i0 + r, j0 + jj]) if load else 0.0
            for k in range(k0, k1):
                c = float(C.dtype.type(float(A[i0 + r, k]) * float(B[k - bk, bj + jj]) + c))
            C[i0 + r, j0 + jj] = c


_tile = _tile_python if numba.config.DISABLE_JIT else _make_tile(MR)
_nr = (lambda C: tile_columns(C.dtype)) if numba.config.DISABLE_JIT else _tile_columns


def _gemm(A, B, C, accumulate, i_lo, i_hi, j_lo, j_hi, panels, edge):
    """C[i_lo:i_hi, j_lo:j_hi] = (C +) A @ B by the chains of the module docstring. C has a unit
    column stride; ``panels`` (P, KC, NR) is scratch for B's panels (copied unless B is read in
    place: a few rows of A, B row-major), ``edge`` (MR, NR) for C's tiles cut by j_hi."""
    K = A.shape[1]
    nr = _nr(C)
    if K == 0 and not accumulate:
        for i in range(i_lo, i_hi):
            for j in range(j_lo, j_hi):
                C[i, j] = 0
    in_place = B.strides[1] == B.itemsize and (i_hi - i_lo <= PACK_ROWS or B.strides[0] <= PACK_STRIDE)
    for k0 in range(0, K, KC):
        k1 = min(k0 + KC, K)
        load = accumulate or k0 > 0
        if not in_place:  # B[k0:k1, j_lo:j_hi] as panels of NR columns, zero-padded
            for p in range((j_hi - j_lo + nr - 1) // nr):
                j0 = j_lo + p * nr
                cols = min(nr, j_hi - j0)
                panel = panels[p]
                if B.strides[0] == B.itemsize:  # column-major B: square blocks by register transposes
                    lanes = 64 // B.itemsize
                    k_end, j_end = k0 + (k1 - k0) // lanes * lanes, cols // lanes * lanes
                    for kb in range(k0, k_end, lanes):
                        for jb in range(0, j_end, lanes):
                            transpose_square(B, kb, j0 + jb, panel, kb - k0, jb)
                    for j in range(cols):
                        for k in range(k_end if j < j_end else k0, k1):
                            panel[k - k0, j] = B[k, j0 + j]
                elif B.strides[0] <= B.strides[1]:  # read B down its columns, the shorter stride
                    for j in range(cols):
                        for k in range(k0, k1):
                            panel[k - k0, j] = B[k, j0 + j]
                else:
                    for k in range(k0, k1):
                        for j in range(cols):
                            panel[k - k0, j] = B[k, j0 + j]
                for k in range(k0, k1):
                    for j in range(cols, nr):
                        panel[k - k0, j] = 0
        for ic in range(i_lo, i_hi, MC):
            ic_end = min(ic + MC, i_hi)
            for p in range((j_hi - j_lo + nr - 1) // nr):
                j0 = j_lo + p * nr
                cols = min(nr, j_hi - j0)
                if in_place:
                    source, bk, bj = B, 0, j0
                else:
                    source, bk, bj = panels[p], k0, 0
                tiles = (ic_end - ic + MR - 1) // MR
                next_row = ic
                for t in range(tiles):  # the fewest tiles, as even as can be (9 rows: 5 + 4, not 6 + 3)
                    i0 = next_row
                    rows = (ic_end - i0) // (tiles - t)
                    next_row = i0 + rows
                    if cols == nr:
                        _tile(A, source, C, i0, rows, j0, k0, k1, bk, bj, load)
                        continue
                    for r in range(rows):
                        for j in range(cols):
                            edge[r, j] = C[i0 + r, j0 + j] if load else 0
                    _tile(A[i0:i0 + rows], source, edge, 0, rows, 0, k0, k1, bk, bj, load)
                    for r in range(rows):
                        for j in range(cols):
                            C[i0 + r, j0 + j] = edge[r, j]


def _scratch(C, cols, depth):
    """Scratch for ``_gemm`` over ``cols`` columns of C and ``depth`` steps of k: the panels of B
    and an edge tile."""
    nr = _nr(C)
    return np.empty(((cols + nr - 1) // nr, min(KC, depth), nr), C.dtype), np.empty((MR, nr), C.dtype)


def _gemm_into(A, B, C, accumulate):
    """C = A @ B (or C += A @ B with ``accumulate``) for 2-d arrays of one float dtype, C with a unit
    column stride: callable from other kernels."""
    panels, edge = _scratch(C, C.shape[1], A.shape[1])
    _gemm(A, B, C, accumulate, 0, C.shape[0], 0, C.shape[1], panels, edge)


def _gemm_block(A, B, C, i_lo, i_hi, j_lo, j_hi):
    """One thread's block of ``matmul``: C[i_lo:i_hi, j_lo:j_hi] = A @ B, its scratch its own."""
    panels, edge = _scratch(C, j_hi - j_lo, A.shape[1])
    _gemm(A, B, C, False, i_lo, i_hi, j_lo, j_hi, panels, edge)


def _gemm_items(A, B, C, lo, hi):
    """C[n] = A[n] @ B[n] for items n in [lo, hi) of 3-d arrays."""
    panels, edge = _scratch(C, C.shape[2], A.shape[2])
    for n in range(lo, hi):
        _gemm(A[n], B[n], C[n], False, 0, C.shape[1], 0, C.shape[2], panels, edge)


if not numba.config.DISABLE_JIT:
    _gemm = njit(cache=True, nogil=True)(_gemm)
    _scratch = njit(cache=True, nogil=True)(_scratch)
gemm_into = njit(cache=True, nogil=True)(_gemm_into)
gemm_block = njit(cache=True, nogil=True)(_gemm_block)
gemm_items = njit(cache=True, nogil=True)(_gemm_items)


def gemm_reference(A, B):
    """The NumPy twin: A @ B in float64 (each chain's single roundings stay within K units in the
    last place of the sums of |A| |B|)."""
    return A.astype(np.float64) @ B.astype(np.float64)


def matmul(a, b):
    """``np.matmul(a, b)`` for float arrays of at least 2 dims (leading dims broadcast): by
    ``gemm`` (or OpenBLAS, when ``settings.matmul_path()`` says so), cut into blocks fixed by the shape."""
    m, k = a.shape[-2], a.shape[-1]
    n = b.shape[-1]
    dtype = np.result_type(a, b)
    if dtype.kind != "f" or dtype.itemsize not in (4, 8):
        return np.matmul(a, b)  # integer products are exact; float16 is not on the training path
    a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    count = math.prod(batch)
    out = np.empty(batch + (m, n), dtype)
    if out.size == 0:
        return out
    if k == 0:
        out[...] = 0
        return out
    blas = settings.matmul_path() == "blas"
    flops = 2 * count * m * n * k
    if count == 1:
        a2, b2, o2 = a.reshape(m, k), b.reshape(k, n), out.reshape(m, n)
        if flops < MIN_PARALLEL_FLOPS:
            matmul_into(a2, b2, o2)
            return out
        if m >= 2 * ROW_BLOCK or blas:
            ranges = block_ranges(m, ROW_BLOCK)

            def block(i):
                lo, hi = ranges[i]
                matmul_into(a2[lo:hi], b2, o2[lo:hi])
        else:  # few rows: split the columns, in whole panels
            nr = tile_columns(dtype)
            ranges = block_ranges(n, max(nr, -(-n // (2 * nr)) * nr))

            def block(i):
                lo, hi = ranges[i]
                gemm_block(a2, b2, o2, 0, m, lo, hi)

        run_blocks(block, len(ranges))
        return out
    a3 = np.broadcast_to(a, batch + (m, k)).reshape(count, m, k)
    b3 = np.broadcast_to(b, batch + (k, n)).reshape(count, k, n)
    o3 = out.reshape(count, m, n)
    per_block = max(1, MIN_PARALLEL_FLOPS // (2 * m * n * k))  # items per block: fixed by the shape
    ranges = block_ranges(count, per_block)

    def items(i):
        lo, hi = ranges[i]
        matmul_into(a3[lo:hi], b3[lo:hi], o3[lo:hi])

    run_blocks(items, len(ranges))
    return out


def matmul_into(a, b, out):
    """``np.matmul(a, b, out=out)`` on the caller's thread (a block of a parallel kernel), by the path
    in force, for 2-d or 3-d operands (a 2-d one broadcast over the other's items); ``out`` has a
    unit column stride."""
    if settings.matmul_path() == "blas":
        return np.matmul(a, b, out=out)
    if out.ndim == 2:
        gemm_block(a, b, out, 0, out.shape[0], 0, out.shape[1])
        return out
    count = out.shape[0]
    a3 = a if a.ndim == 3 else np.broadcast_to(a, (count,) + a.shape)
    b3 = b if b.ndim == 3 else np.broadcast_to(b, (count,) + b.shape)
    gemm_items(a3, b3, out, 0, count)
    return out
