"""Bits do not depend on the thread count: the blocked GEMM and the engine's matmul."""

import numba
import numpy as np
import pytest

import freenet as fn
from freenet import kernels

# The pool's own mechanics need a second thread. A process allowed one CPU (taskset -c 0, a 1-CPU
# container) gets one Numba thread, and freenet then never starts the pool: nothing to test there.
needs_two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                       reason="the thread pool needs 2 CPUs; this process may use only 1")


@pytest.fixture
def restore_threads():
    before = fn.get_num_threads()
    yield
    fn.set_num_threads(before)


SHAPES = [((128, 3136), (3136, 128)), ((130, 466), (466, 639)), ((700, 600), (600, 300)), ((64, 64, 64), (64, 64)),
          ((30, 20, 50), (30, 50, 40)), ((1, 3000, 500), (500, 200)), ((3, 1, 600, 70), (2, 70, 90))]


@pytest.mark.parametrize("shape_a,shape_b", SHAPES)
def test_blocked_matmul_is_bitwise_the_same_with_1_and_2_threads(shape_a, shape_b, restore_threads):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape_a, dtype=np.float32)
    b = rng.standard_normal(shape_b, dtype=np.float32)
    fn.set_num_threads(1)
    one = kernels.matmul(a, b)
    fn.set_num_threads(2)
    two = kernels.matmul(a, b)
    assert np.array_equal(one, two)
    np.testing.assert_allclose(one, np.matmul(a, b), rtol=1e-4, atol=1e-3)


def test_engine_matmul_gradients_are_bitwise_the_same_with_1_and_2_threads(restore_threads):
    rng = np.random.default_rng(1)
    a0, b0 = rng.standard_normal((600, 500), dtype=np.float32), rng.standard_normal((500, 400), dtype=np.float32)
    results = []
    for threads in (1, 2):
        fn.set_num_threads(threads)
        a, b = fn.tensor(a0, requires_grad=True), fn.tensor(b0, requires_grad=True)
        out = (a @ b).relu()
        out.sum().backward()
        results.append((out._data, a.grad._data, b.grad._data))
    for one, two in zip(*results):
        assert np.array_equal(one, two)


def test_set_num_threads_rejects_nonsense():
    with pytest.raises(ValueError):
        fn.set_num_threads(0)


def test_run_blocks_order_errors_and_nesting(restore_threads):
    """run_blocks gives results in block order whoever ran them, re-raises a block's error after every
    started block has finished, and a block may itself call run_blocks without a deadlock."""
    import threading
    import time

    from freenet.kernels.parallel import run_blocks
    fn.set_num_threads(2)
    run_blocks(lambda i: time.sleep(0.05), 8)  # (a new process: the pool's thread loads its kernels)
    threads = set()

    def slow_square(i):
        threads.add(threading.get_ident())
        time.sleep(0.002 * (i % 3))
        return i * i

    assert run_blocks(slow_square, 40) == [i * i for i in range(40)]
    assert len(threads) <= 2  # (which thread ran which block is the scheduler's business, never asserted)

    done = []

    def failing(i):
        if i == 3:
            raise KeyError("block 3")
        time.sleep(0.001)
        done.append(i)

    with pytest.raises(KeyError, match="block 3"):
        run_blocks(failing, 50)
    count = len(done)
    time.sleep(0.05)
    assert len(done) == count  # nothing runs on after the error is raised

    assert run_blocks(lambda i: sum(run_blocks(lambda j: i * j, 4)), 6) == [6 * i for i in range(6)]


def _square_kernel():
    """A GIL-free block kernel as run_kernels takes them: out[i] = i * i, recording the thread."""
    from numba import njit

    from freenet.kernels.spin import post as post_job

    def square(out, who, i, thread, flags, post, job):
        post_job(flags, post, job)
        if i < 0:
            raise ValueError("negative block")
        out[i] = i * i
        who[i] = thread
    return njit(nogil=True)(square)


@needs_two_threads
def test_run_kernels_assigns_blocks_by_number_and_re_raises(restore_threads):
    """run_kernels runs every block once: the caller blocks 0, 2, 4, ..., the pool's thread 1, 3, ...
    with 2 threads, all on the caller with 1 thread (or from inside a block); a kernel's error, on
    either thread, is raised in the caller after both have finished; a job posted from compiled code
    wakes a helper that had gone to sleep."""
    import threading
    import time

    from freenet.kernels.parallel import run_blocks, run_kernels
    kernel = _square_kernel()
    caller = threading.get_ident()

    def run(n):
        out, who = np.full(n, -1), np.zeros(n, np.int64)
        calls = [(out, who, i, 0) for i in range(n)]
        ids = {}

        def tagged(out, who, i, thread, flags, post, job):  # (Python: records the thread's id)
            ids[i] = threading.get_ident()
            kernel(out, who, i, thread, flags, post, job)
        run_kernels(tagged, calls)
        assert out.tolist() == [i * i for i in range(n)]
        return [ids[i] == caller for i in range(n)]

    fn.set_num_threads(2)
    for n in (2, 5):
        assert run(n) == [i % 2 == 0 for i in range(n)]
    time.sleep(0.05)  # past the polling: the helper sleeps
    assert run(4) == [True, False, True, False]
    fn.set_num_threads(1)
    assert run(3) == [True, True, True]
    fn.set_num_threads(2)
    assert run_blocks(lambda b: run(2), 2) == [[True, True]] * 2  # inside a block: inline
    for bad in (0, 1):  # the caller's block fails, or the helper's
        out, who = np.zeros(2, np.int64), np.zeros(2, np.int64)
        calls = [(out, who, i, 0) for i in range(2)]
        calls[bad] = (out, who, -1, 0)
        with pytest.raises(ValueError, match="negative block"):
            run_kernels(kernel, calls)
    # a call that fails before its kernel runs (a typing error) does not leave the helper waiting
    with pytest.raises(Exception):
        run_kernels(kernel, [("not an array", None, 0, 0), (np.zeros(2), np.zeros(2, np.int64), 1, 0)])
    assert run(2) == [True, False]


@needs_two_threads
def test_a_pool_thread_serves_split_forwards_from_compiled_code(restore_threads, monkeypatch):
    """Batch-1 convolutions run as two kernel calls (go9's): after the first, the pool's thread runs
    its half of each next one from compiled code (``parallel.Serve``), over that call's own arrays
    (new inputs, weights, biases and outputs every call give one thread's bits). Another shape or
    other switches (no bias, channels-last input, a residual and ReLU), or a job of another kind,
    send it back to Python once; then it serves again."""
    from freenet.kernels import conv, parallel

    rng = np.random.default_rng(0)

    def case(C, nhwc, bias):
        x = rng.standard_normal((1, C, 9, 9)).astype(np.float32)
        if nhwc:
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        w = rng.standard_normal((64, C, 3, 3)).astype(np.float32)
        return x, w, rng.standard_normal(64).astype(np.float32) if bias else None

    plain = [case(64, False, True) for _ in range(4)]
    others = [case(64, True, True), case(64, False, False), case(96, False, True)]
    fn.set_num_threads(1)
    expected = {id(c): np.array(conv.conv2d_forward(*c, 1, 1)) for c in plain + others}
    prepared = conv.Conv2dPrepared(plain[0][1], plain[0][2], padding=1)
    residual = rng.standard_normal((1, 64, 9, 9)).astype(np.float32)
    expected_prepared = [np.array(prepared(x, residual=residual, relu=True)) for x, _, _ in plain[1:3]]
    fn.set_num_threads(2)
    assert conv._plan(conv._geometry((1, 64, 9, 9), (64, 64, 3, 3), 1, 1, 1, 1), 4,
                      wino=conv._wino_cap(conv._geometry((1, 64, 9, 9), (64, 64, 3, 3), 1, 1, 1, 1)),
                      tile=3).kernel_split
    monkeypatch.setattr(parallel, "SPIN_POLLS", 10_000_000)  # (tens of ms: no time-outs between calls)
    entered = []  # the pool thread's entries from Python into a job of run_kernels
    work = parallel._KernelJob.work

    def counted(job, helper=-1, post=-1, job_number=0):
        if helper >= 0:
            entered.append(job_number)
        return work(job, helper, post, job_number)
    monkeypatch.setattr(parallel._KernelJob, "work", counted)

    def run(c):
        y = conv.conv2d_forward(*c, 1, 1)
        assert np.array_equal(y, expected[id(c)])

    for c in plain * 3:
        run(c)
    assert len(entered) == 1  # the first call; the other eleven served
    for c in others:
        run(c)
        run(c)
        run(plain[0])
    assert len(entered) == 1 + 2 * len(others)  # each switch of tag: one entry
    parallel.run_blocks(lambda i: i, 4)  # a job of another kind
    run(plain[2])
    run(plain[3])
    assert len(entered) == 2 + 2 * len(others)
    # prepared weights (U given per call), a residual and ReLU: served from the second call on
    for _ in range(2):
        for (x, _, _), expected_y in zip(plain[1:3], expected_prepared):
            assert np.array_equal(prepared(x, residual=residual, relu=True), expected_y)
    assert len(entered) == 3 + 2 * len(others)


def test_staged_arrays_are_rebuilt_where_their_shape_and_strides_match():
    from numba import njit

    from freenet.kernels import spin

    @njit
    def total(row, like):
        array, same = spin.staged(row, 0, like)
        return array.sum(), same

    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    row = np.zeros(spin.STAGED_SLOTS, np.int64)
    spin.stage(row, 0, a)
    assert row[0] == a.__array_interface__["data"][0] and row[1:4].tolist() == [2, 3, 4]
    assert total(row, np.zeros_like(a)) == (276.0, True)
    assert total(row, np.zeros((2, 3, 5), np.float32)) == (0.0, False)  # another shape
    spin.stage(row, 0, a[:, :, ::2])
    assert total(row, np.zeros((2, 3, 2), np.float32)) == (0.0, False)  # other strides
    # the Python forms (NUMBA_DISABLE_JIT=1): like's shape and strides over a's first 12 values
    view = spin._rebase_python(np.zeros((2, 3, 2), np.float32), spin._address_python(a))
    assert view.tolist() == a.ravel()[:12].reshape(2, 3, 2).tolist()


def test_post_then_spin_posts_before_it_polls():
    from freenet.kernels.spin import post, post_then_spin
    flags = np.zeros(3, np.int64)
    post(flags, 2, 9)
    post(flags, -1, 5)  # a negative index posts nothing
    assert flags.tolist() == [0, 0, 9]
    assert not post_then_spin(flags, 1, 4, 0, 7, 100) and flags.tolist() == [0, 4, 9]
    assert post_then_spin(flags, 0, 7, 0, 7, 100)


@needs_two_threads
def test_run_blocks_from_two_threads_at_once_and_after_thread_changes(restore_threads):
    """Two callers at once both get their results (the second runs its blocks itself); the pool
    stops and restarts when the thread count changes; helpers asleep after idling are woken."""
    import threading
    import time

    from freenet.kernels.parallel import run_blocks
    fn.set_num_threads(2)
    out = {}

    def caller(name, k):
        out[name] = run_blocks(lambda i: (time.sleep(0.001), i * k)[1], 30)

    callers = [threading.Thread(target=caller, args=(name, k)) for name, k in (("a", 2), ("b", 3))]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert out == {"a": [2 * i for i in range(30)], "b": [3 * i for i in range(30)]}
    for threads in (1, 2, 1, 2):
        fn.set_num_threads(threads)
        assert run_blocks(lambda i: i + 1, 9) == list(range(1, 10))
    time.sleep(0.05)  # past the polling: the helper sleeps, and must be woken
    assert run_blocks(lambda i: i, 5) == list(range(5))
    # changing the thread count while another thread's job runs waits for that job
    slow = threading.Thread(target=caller, args=("c", 5))
    slow.start()
    time.sleep(0.005)
    fn.set_num_threads(1)
    slow.join()
    assert out["c"] == [5 * i for i in range(30)]
    fn.set_num_threads(2)
    with pytest.raises(RuntimeError, match="inside a block"):
        run_blocks(lambda i: fn.set_num_threads(1), 2)


def test_run_blocks_in_a_forked_child(restore_threads):
    """A forked child (multiprocessing's default on Linux) has none of the parent's pool threads: it
    makes its own instead of waiting on threads that do not exist."""
    import multiprocessing

    from freenet.kernels.parallel import run_blocks
    fn.set_num_threads(2)
    assert run_blocks(lambda i: i, 4) == [0, 1, 2, 3]  # the parent's pool exists
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_blocks_in_child) == [0, 2, 4, 6]


def _blocks_in_child():
    from freenet.kernels.parallel import run_blocks
    return run_blocks(lambda i: 2 * i, 4)


def test_spin_until_sees_a_change_and_gives_up():
    from freenet.kernels.spin import spin_until
    flags = np.zeros(3, np.int64)
    assert not spin_until(flags, 1, 7, 1000)
    flags[1] = 7
    assert spin_until(flags, 1, 7, 1000)
    assert not spin_until(flags, 2, 7, 0)


def test_every_blas_library_runs_on_one_thread():
    """freenet splits work itself; BLAS must not (its results differ with its thread count). Both
    NumPy's OpenBLAS and SciPy's (which Numba-compiled kernels call) are limited, after they ran."""
    import threadpoolctl

    from freenet.kernels import conv
    x = np.ones((2, 16, 9, 9), np.float32)
    conv.conv2d_backward_weight(conv.conv2d_forward(x, np.ones((16, 16, 3, 3), np.float32), None, 1, 1),
                                x, (16, 16, 3, 3), 1, 1)
    blas = threadpoolctl.threadpool_info()
    blas = [lib for lib in blas if lib["user_api"] == "blas"]
    assert blas  # (NumPy's and SciPy's: two libraries with the PyPI wheels, one where they share it)
    assert all(lib["num_threads"] == 1 for lib in blas), blas
