"""freenet's GEMM (``kernels/gemm.py``): against its float64 twin, and the rule that makes it the same
on every CPU: each element is one chain of fused multiply-adds in order of k, so that layouts,
blocking, thread split and tile width change no bit."""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st

from freenet.kernels import gemm, parallel, settings

dtypes = st.sampled_from([np.float32, np.float64])


def _operands(data, dtype, max_side=70):
    """A (M, K), B (K, N) of random values, each in a random memory layout (transposed copies and
    views into wider arrays: the packed and in-place paths)."""
    M, K, N = (data.draw(st.integers(1, max_side)) for _ in range(3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))

    def laid_out(shape):
        v = rng.standard_normal(shape).astype(dtype)
        how = data.draw(st.sampled_from(["contiguous", "transposed", "view"]))
        if how == "transposed":
            return np.ascontiguousarray(v.T).T
        if how == "view":
            wide = np.zeros((shape[0], shape[1] + 3), dtype)
            wide[:, 2:2 + shape[1]] = v
            return wide[:, 2:2 + shape[1]]
        return v

    return laid_out((M, K)), laid_out((K, N))


@given(dtype=dtypes, data=st.data())
def test_matmul_matches_reference(dtype, data):
    """Within the rounding of one fused multiply-add per term of the float64 product."""
    A, B = _operands(data, dtype)
    got = gemm.matmul(A, B)
    want = gemm.gemm_reference(A, B)
    bound = A.shape[1] * np.finfo(dtype).eps * (np.abs(A).astype(np.float64) @ np.abs(B).astype(np.float64))
    assert got.dtype == dtype and got.shape == want.shape
    assert (np.abs(got - want) <= bound).all()


@given(dtype=dtypes, data=st.data())
def test_layouts_and_blocks_change_no_bit(dtype, data):
    """The same chains whatever the operands' layouts, and whichever block of C is computed alone."""
    A, B = _operands(data, dtype)
    M, N = A.shape[0], B.shape[1]
    whole = gemm.matmul(np.ascontiguousarray(A), np.ascontiguousarray(B))
    assert gemm.matmul(A, B).tobytes() == whole.tobytes()
    i_lo, j_lo = data.draw(st.integers(0, M - 1)), data.draw(st.integers(0, N - 1))
    i_hi, j_hi = data.draw(st.integers(i_lo + 1, M)), data.draw(st.integers(j_lo + 1, N))
    C = np.full((M, N), np.nan, dtype)
    gemm.gemm_block(A, B, C, i_lo, i_hi, j_lo, j_hi)
    assert C[i_lo:i_hi, j_lo:j_hi].tobytes() == whole[i_lo:i_hi, j_lo:j_hi].tobytes()
    outside = np.ones((M, N), bool)
    outside[i_lo:i_hi, j_lo:j_hi] = False
    assert np.isnan(C[outside]).all()


@given(dtype=dtypes, data=st.data())
def test_accumulating_carries_the_chains_on(dtype, data):
    """C = A[:, :k] @ B[:k], then C += A[:, k:] @ B[k:] gives the bits of C = A @ B: each element's
    chain goes on from where it stopped (the Winograd weight gradient sums its units so)."""
    A, B = _operands(data, dtype, max_side=300)  # K past one block of KC
    k = data.draw(st.integers(0, A.shape[1]))
    whole = gemm.matmul(A, B)
    C = np.empty_like(whole)
    gemm.gemm_into(A[:, :k], B[:k], C, False)
    gemm.gemm_into(A[:, k:], B[k:], C, True)
    assert C.tobytes() == whole.tobytes()


def test_each_step_is_one_fused_multiply_add_in_order_of_k():
    """a = 1 + 2^-12 (exact in float32): a * a = 1 + 2^-11 + 2^-24, which float32 rounds to 1 + 2^-11.
    After c = -(1 + 2^-11), fma(a, a, c) is 2^-24; a multiply then an add gives 0, and so does the
    other order of k (c = 1 + 2^-11 rounded, then - (1 + 2^-11))."""
    for dtype, bits in ((np.float32, 12), (np.float64, 27)):
        a = 1 + 2.0 ** -bits
        A = np.array([[1, a]] * 9, dtype)
        B = np.array([[-(1 + 2.0 ** -(bits - 1))] * 40, [a] * 40], dtype)
        C = gemm.matmul(A, B)
        assert (C == 2.0 ** -(2 * bits)).all(), (dtype, C[0, 0])


@given(dtype=dtypes, M=st.integers(1, 40), K=st.integers(1, 40), N=st.integers(1, 40))
def test_exact_on_small_integers(dtype, M, K, N):
    """Products and sums of small integers are exact in any order: a wrong row, column or term shows."""
    rng = np.random.default_rng(M * 10_000 + K * 100 + N)
    A = rng.integers(-8, 9, (M, K)).astype(dtype)
    B = rng.integers(-8, 9, (K, N)).astype(dtype)
    assert np.array_equal(gemm.matmul(A, B), A.astype(np.int64) @ B.astype(np.int64))


def test_batches_broadcast_and_threads_change_no_bit():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((3, 1, 70, 90)).astype(np.float32)
    B = rng.standard_normal((4, 90, 50)).astype(np.float32)
    got = gemm.matmul(A, B)
    assert got.shape == (3, 4, 70, 50)
    for i in range(3):
        for j in range(4):
            assert gemm.matmul(A[i, 0], B[j]).tobytes() == got[i, j].tobytes()
    big_a = rng.standard_normal((500, 300)).astype(np.float32)
    big_b = rng.standard_normal((300, 200)).astype(np.float32)
    old = parallel.get_num_threads()
    try:
        parallel.set_num_threads(1)
        one = gemm.matmul(big_a, big_b)
        parallel.set_num_threads(2)
        assert gemm.matmul(big_a, big_b).tobytes() == one.tobytes()
    finally:
        parallel.set_num_threads(old)


def test_blas_path_is_numpys():
    rng = np.random.default_rng(2)
    A, B = rng.standard_normal((600, 64)).astype(np.float32), rng.standard_normal((64, 48)).astype(np.float32)
    old = settings.set_matmul_path("blas")
    try:
        np.testing.assert_allclose(gemm.matmul(A, B), A @ B, rtol=1e-5, atol=1e-5)
    finally:
        settings.set_matmul_path(old)
    with pytest.raises(ValueError, match="expected one of freenet, blas"):
        settings.set_matmul_path("mkl")


_OTHER_WIDTH = """
import sys
import numpy as np
from freenet.kernels import gemm, settings
assert settings.vector_bytes() == int(sys.argv[2]), settings.vector_bytes()
data = np.load(sys.argv[1])
np.save(sys.argv[1].replace(".npz", "-out.npy"), gemm.matmul(data["A"], data["B"]))
"""


@pytest.mark.parametrize("vector_bytes", [32, 64])
def test_tile_width_changes_no_bit(tmp_path, vector_bytes):
    """The tiles of an AVX2 CPU (32-byte vectors) and of an AVX-512 one (64: on a CPU without, LLVM
    splits them) give the same bits: compiled afresh in another process, in a cache of its own."""
    rng = np.random.default_rng(3)
    cases = [(rng.standard_normal((m, k)).astype(dt), rng.standard_normal((k, n)).astype(dt))
             for dt in (np.float32, np.float64) for m, k, n in ((37, 300, 45), (5, 17, 70))]
    for i, (A, B) in enumerate(cases):
        path = str(tmp_path / f"case{i}.npz")
        np.savez(path, A=A, B=np.asfortranarray(B) if i % 2 else B)
        env = dict(os.environ, FREENET_VECTOR_BYTES=str(vector_bytes), NUMBA_CACHE_DIR=str(tmp_path / "numba"))
        done = subprocess.run([sys.executable, "-c", _OTHER_WIDTH, path, str(vector_bytes)], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert np.load(path.replace(".npz", "-out.npy")).tobytes() == gemm.matmul(A, B).tobytes()
