"""Deterministic parallelism: the same inputs give the same bits with any number of threads.

The rule every kernel follows: work is cut into blocks whose boundaries depend only on the problem's
shape, never on the thread count; each block is computed by one thread; partial results are combined
in block order. Threads only decide which block runs where, which cannot change any bit.

BLAS is therefore pinned to one thread (OpenBLAS SGEMM gives different bits with 1 and 2 threads for
many shapes), and freenet runs BLAS calls on fixed blocks from its own thread pool. NumPy releases
the GIL inside BLAS and ufuncs, so the pool's threads run truly in parallel.
"""

import os
import threading

# Numba's OpenMP layer spins while it waits for work; on a busy machine (or beside other threads of
# ours) the spinning threads steal the cores that do the work, making kernels tens of times slower.
# Sleeping waits cost microseconds per launch instead. Must be set before libgomp loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from concurrent.futures import ThreadPoolExecutor

import numba
import threadpoolctl

# Numba-compiled kernels call BLAS through SciPy's own OpenBLAS (``np.dot`` inside ``njit``), a second
# library beside NumPy's: load it first, so that the limit covers it too.
import scipy.linalg.cython_blas  # noqa: E402,F401

_blas_limit = threadpoolctl.threadpool_limits(limits=1, user_api="blas")
_num_threads = min(os.cpu_count() or 1, numba.config.NUMBA_NUM_THREADS)
_pool = None
_pool_lock = threading.Lock()


def set_num_threads(n):
    """Use ``n`` threads for freenet's kernels (and Numba's parallel loops). Results do not change."""
    global _num_threads, _pool
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: need at least 1 thread, got {n}")
    n = min(n, numba.config.NUMBA_NUM_THREADS)
    with _pool_lock:
        if _pool is not None and n != _num_threads:
            _pool.shutdown(wait=True)
            _pool = None
        _num_threads = n
    numba.set_num_threads(n)


def get_num_threads():
    return _num_threads


def _executor():
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_num_threads, thread_name_prefix="freenet")
        return _pool


def run_blocks(fn, n_blocks):
    """``[fn(0), ..., fn(n_blocks - 1)]``, run on the thread pool; results in block order.

    The calling thread works too: it and up to ``threads - 1`` pool threads take the next block until
    none is left, so work starts at once and a helper that has not woken up by the end is cancelled
    (waking one costs tens of microseconds). Which thread runs a block cannot change its bits.

    ``fn`` must only write to memory that belongs to its own block. Do not call Numba ``parallel=True``
    kernels from ``fn``: Numba's default threading layer does not allow nested parallel launches.
    """
    if n_blocks == 1 or _num_threads == 1:
        return [fn(i) for i in range(n_blocks)]
    results = [None] * n_blocks
    blocks = iter(range(n_blocks))
    lock = threading.Lock()
    failed = []

    def work():
        while not failed:
            with lock:
                i = next(blocks, None)
            if i is None:
                return
            try:
                results[i] = fn(i)
            except BaseException as e:  # stop everyone; re-raised in the caller
                failed.append(e)
                return

    helpers = []
    try:
        helpers.extend(_executor().submit(work) for _ in range(min(_num_threads, n_blocks) - 1))
        work()
    finally:
        for h in helpers:
            if not h.cancel():
                h.result()
    if failed:
        raise failed[0]
    return results


def block_ranges(n, block):
    """``[(0, block), (block, 2 * block), ...]`` covering ``range(n)``: fixed by n and block alone."""
    return [(start, min(start + block, n)) for start in range(0, n, block)]
