"""Deterministic parallelism: the same inputs give the same bits with any number of threads.

The rule every kernel follows: work is cut into blocks whose boundaries depend only on the problem's
shape, never on the thread count; each block is computed by one thread; partial results are combined
in block order. Threads only decide which block runs where, which cannot change any bit.

BLAS is therefore pinned to one thread (OpenBLAS SGEMM gives different bits with 1 and 2 threads for
many shapes), and freenet runs BLAS calls on fixed blocks from its own thread pool. NumPy releases
the GIL inside BLAS and ufuncs, so the pool's threads run truly in parallel.

The pool's threads poll for work for about 100 us after each job before they sleep (``spin.py``):
consecutive kernels of a training step or a net evaluation then start on both threads at once,
without a thread wake-up each (in one process, against the sleeping pool before it: MNIST training
step 0.94-0.99x the time, go9 0.98-0.99x, go9 inference at batch 8 0.93-0.96x). A pool thread
whose kernel can serve (``Serve``: the Winograd split forward) polls from inside that kernel instead,
and runs the next job's block there when it is the same kernel with the same fixed arguments.
"""

import os
import threading

# Numba's OpenMP layer spins while it waits for work; on a busy machine (or beside other threads of
# ours) the spinning threads steal the cores that do the work, making kernels tens of times slower.
# Sleeping waits cost microseconds per launch instead. Must be set before libgomp loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import itertools

import numba
import numpy as np
import threadpoolctl

# Numba-compiled kernels call BLAS through SciPy's own OpenBLAS (``np.dot`` inside ``njit``), a second
# library beside NumPy's: load it first, so that the limit covers it too.
import scipy.linalg.cython_blas  # noqa: E402,F401

from freenet.kernels.spin import STAGED_SLOTS, serving  # noqa: E402

MAILBOX_SLOTS = 1 + 6 * STAGED_SLOTS  # a row of MAILBOX: a tag, then up to 6 staged arrays

_blas_limit = threadpoolctl.threadpool_limits(limits=1, user_api="blas")
_num_threads = min(os.cpu_count() or 1, numba.config.NUMBA_NUM_THREADS)
_pool = None
_pool_lock = threading.Lock()
_local = threading.local()  # .busy: this thread is running a block (a nested run_blocks runs inline)
# row h: what pool thread h is to serve next from compiled code (``Serve``)
MAILBOX = np.zeros((max(1, numba.config.NUMBA_NUM_THREADS - 1), MAILBOX_SLOTS), np.int64)

# A pool thread polls for the next job this many times (about 100 us here) after finishing one,
# before it sleeps: a job handed to a polling thread starts within a microsecond, one handed to a
# sleeping thread after a wake-up (35-60 us on this VM, more than many kernels take).
SPIN_POLLS = 40_000


class _Job:
    """The blocks of one ``run_blocks`` call, taken in order by whichever thread is free."""

    posts = False  # the caller posts the job (from Python)

    def __init__(self, fn, n_blocks):
        self.fn, self.n_blocks = fn, n_blocks
        self.results = [None] * n_blocks
        self.next = itertools.count()  # next() is atomic under the GIL
        self.failed = []

    def work(self, helper=-1, post=-1, job_number=0):
        """Take blocks until none is left (``helper``, ``post`` and ``job_number``: see _KernelJob)."""
        _local.busy = True
        try:
            while not self.failed:
                i = next(self.next)
                if i >= self.n_blocks:
                    return
                try:
                    self.results[i] = self.fn(i)
                except BaseException as e:  # stop everyone; re-raised in the caller
                    self.failed.append(e)
                    return
        finally:
            _local.busy = False


class _KernelJob:
    """Blocks that are each one call of a GIL-free Numba kernel, assigned to threads by number:
    the caller runs blocks 0, n, 2n, ..., pool thread h blocks h + 1, h + 1 + n, ... (n threads).

    The kernel's last three parameters are (flags, post, job) and it starts with
    ``spin.post(flags, post, job)``: the caller's first call posts the job from compiled code, so a
    polling pool thread that sees it takes the GIL while the caller does not hold it. (A job posted
    from Python finds the caller still holding the GIL: the pool thread then sleeps on it and waits
    for a wake-up, 35-60 us on this VM, as long as a small convolution.)

    With ``serve`` (see ``run_kernels``), pool thread h asks its kernel to serve (``spin.serving``):
    it runs its one block, then the jobs that follow while they are staged for it.
    """

    posts = True

    def __init__(self, kernels, calls, flags, threads, serve=None):
        self.kernels, self.calls, self.flags = kernels, calls, flags
        self.stride = min(threads, len(calls))
        self.failed = []
        self.serve = serve if serve is not None and len(calls) == threads else None

    def stage(self, mailbox):
        """Writes each pool thread's row of ``mailbox``."""
        for h, arrays in enumerate(self.serve.staged):
            self.serve.stage(mailbox, h, *arrays)

    def work(self, helper=-1, post=-1, job_number=0):
        """Runs this thread's blocks; a pool thread that serves returns what its kernel does."""
        _local.busy = True
        try:
            if helper >= 0 and self.serve is not None:
                try:
                    return self.kernels[helper + 1](*self.calls[helper + 1], self.flags, serving(helper), job_number)
                except BaseException as e:  # re-raised in the caller
                    self.failed.append(e)
                    return
            for i in range(helper + 1, len(self.calls), self.stride):
                if self.failed:
                    return
                try:
                    self.kernels[i](*self.calls[i], self.flags, post, job_number)
                except BaseException as e:  # re-raised in the caller
                    self.failed.append(e)
                    return
                post = -1
        finally:
            _local.busy = False


class Serve:
    """How pool threads serve a ``run_kernels`` job from compiled code (see there): its kernel, called
    with ``post = spin.serving(h)``, runs pool thread h's call, then serves the jobs that follow
    while ``MAILBOX`` row h has the call's tag (as ``winograd._wino_split_unit``);
    ``stage(MAILBOX, h, tag, *arrays)`` writes that row; ``staged[h]`` is (tag, *arrays) for pool
    thread h's call."""

    def __init__(self, stage, staged):
        self.stage, self.staged = stage, staged


class _Pool:
    """``helpers`` daemon threads that work on each posted job beside the caller.

    flags[0] is the number of the latest job; flags[1 + h] the last job helper h has finished. Both
    sides poll these without the GIL (``spin_until``) before falling back to sleeping on ``cond``;
    every write happens under ``cond``, so a sleeper is never missed.
    """

    def __init__(self, helpers):
        from freenet.kernels.spin import post_then_spin, spin_until

        self.spin_until, self.post_then_spin = spin_until, post_then_spin
        self.flags = np.zeros(1 + helpers, np.int64)
        MAILBOX[:, 0] = 0  # (a pool before this one, or a forked parent's, may have left tags)
        self.staged = False  # some row of MAILBOX has a tag
        self.cond = threading.Condition()
        self.sleeping = 0  # helpers asleep, waiting for a job
        self.waiting = False  # the caller asleep, waiting for the helpers
        self.stopped = False
        self.job = None
        self.running = threading.Lock()  # one job at a time; another caller meanwhile runs inline
        self.threads = [threading.Thread(target=self._helper, args=(h,), name=f"freenet-{h + 1}", daemon=True)
                        for h in range(helpers)]
        for t in self.threads:
            t.start()

    def _helper(self, h):
        done = 0  # the last job this thread has finished
        posted = pending = False  # done is said in flags (by a kernel that served); the next job is posted
        while True:
            # says the last job is done and polls for the next in one GIL-free call, so that the
            # caller never finds the GIL held when it sees either (a kernel that served has done both)
            if not pending and (posted or not self.post_then_spin(self.flags, 1 + h, done, 0, done + 1, SPIN_POLLS)):
                with self.cond:
                    self.sleeping += 1
                    while self.flags[0] != done + 1 and not self.stopped:
                        self.cond.wait()
                    self.sleeping -= 1
            if self.stopped:
                return
            served = self.job.work(h, -1, done + 1)
            if served is None:  # the job's blocks ran
                done, posted, pending = done + 1, False, False
            else:  # a kernel served jobs up to its last (> 0), or up to the one it leaves to Python (< 0)
                done, posted, pending = (served, True, False) if served > 0 else (-served - 1, True, True)
            if self.waiting:  # the caller sleeps: wake it (else the next poll says it)
                with self.cond:
                    self.flags[1 + h] = done
                    self.cond.notify_all()

    def run(self, job):
        serve = getattr(job, "serve", None)  # the mailbox is written before the job is posted
        if serve is not None:
            job.stage(MAILBOX)
        elif self.staged:
            MAILBOX[:, 0] = 0  # no thread serves this job
        self.staged = serve is not None
        with self.cond:
            self.job = job
            job_number = int(self.flags[0]) + 1
            post = 0 if job.posts and not self.sleeping else -1  # the kernel posts (see _KernelJob)
            if post < 0:
                self.flags[0] = job_number
                if self.sleeping:
                    self.cond.notify_all()
        try:
            job.work(-1, post, job_number)
        finally:  # the helpers finish this job before anything else runs (even after an error here)
            if self.flags[0] != job_number:  # the kernel failed before it posted
                with self.cond:
                    self.flags[0] = job_number
                    self.cond.notify_all()
            for h in range(len(self.threads)):
                if not self.spin_until(self.flags, 1 + h, job_number, SPIN_POLLS):
                    with self.cond:
                        self.waiting = True
                        self.cond.notify_all()  # a helper that went to sleep as a kernel posted
                        while self.flags[1 + h] != job_number:
                            # a timeout: a helper that saw ``waiting`` unset says it is done by a poll
                            self.cond.wait(0.001)
                        self.waiting = False

    def stop(self):
        with self.running:  # a job under way (another thread's) finishes first
            with self.cond:
                self.stopped = True
                self.cond.notify_all()
        for t in self.threads:
            t.join()


def set_num_threads(n):
    """Use ``n`` threads for freenet's kernels (and Numba's parallel loops). Results do not change."""
    global _num_threads, _pool
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: need at least 1 thread, got {n}")
    n = min(n, numba.config.NUMBA_NUM_THREADS)
    if getattr(_local, "busy", False):
        raise RuntimeError("set_num_threads: not from inside a block of run_blocks")
    with _pool_lock:
        if _pool is not None and n != _num_threads:
            _pool.stop()
            _pool = None
        _num_threads = n
    numba.set_num_threads(n)


def get_num_threads():
    return _num_threads


def _get_pool():
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = _Pool(_num_threads - 1)
        return _pool


def _forget_pool():  # in a forked child the pool's threads do not exist
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def run_blocks(fn, n_blocks):
    """``[fn(0), ..., fn(n_blocks - 1)]``, run on the thread pool; results in block order.

    The calling thread works too: it and the pool's threads take the next block until none is left.
    Which thread runs a block cannot change its bits. A call from inside a block (or while another
    thread's call holds the pool) runs its blocks in order on the calling thread.

    ``fn`` must only write to memory that belongs to its own block. Do not call Numba ``parallel=True``
    kernels from ``fn``: Numba's default threading layer does not allow nested parallel launches.
    """
    if n_blocks == 1 or _num_threads == 1 or getattr(_local, "busy", False):
        return [fn(i) for i in range(n_blocks)]
    pool = _get_pool()
    if not pool.running.acquire(blocking=False):
        return [fn(i) for i in range(n_blocks)]
    try:
        job = _Job(fn, n_blocks)
        pool.run(job)
    finally:
        pool.running.release()
    if job.failed:
        raise job.failed[0]
    return job.results


_NO_FLAGS = np.zeros(1, np.int64)


def run_kernels(kernel, calls, serve=None):
    """``kernel(*args, flags, post, job)`` for each ``args`` in ``calls``, on the thread pool;
    ``kernel`` may be a list, one kernel per call.

    For blocks that are each a single GIL-free Numba kernel call (``nogil=True``) whose first
    statement is ``spin.post(flags, post, job)``: the job is handed over from compiled code and
    blocks are assigned to threads by number (``_KernelJob``: with two threads, the caller runs
    calls 0, 2, 4, ..., the pool's thread 1, 3, ...), so no thread waits for the GIL. A kernel writes
    only its own block's memory; which thread runs a block cannot change its bits.

    ``serve`` (a ``Serve``, for as many calls as threads): pool thread h runs call h + 1 with
    ``post = spin.serving(h)``: its kernel then polls for the next job without returning to Python,
    and runs it too when its ``MAILBOX`` row (staged before the job is posted) has the same tag: the
    same kernel and fixed arguments, with arrays at other addresses. The pool thread then starts
    its block as the caller posts the job, with no GIL to take and no Python to run, and says it is
    done as it finishes: a go9 convolution at batch 1 (two blocks of about 23 us) took 0.80-0.87x
    the time of the hand-over through Python (one process, alternating; the same bits).
    """
    kernels = kernel if isinstance(kernel, list) else [kernel] * len(calls)
    if len(calls) == 1 or _num_threads == 1 or getattr(_local, "busy", False):
        _run_inline(kernels, calls)
        return
    pool = _get_pool()
    if not pool.running.acquire(blocking=False):
        _run_inline(kernels, calls)
        return
    try:
        job = _KernelJob(kernels, calls, pool.flags, _num_threads, serve)
        pool.run(job)
    finally:
        pool.running.release()
    if job.failed:
        raise job.failed[0]


def _run_inline(kernels, calls):
    for kernel, args in zip(kernels, calls):
        kernel(*args, _NO_FLAGS, -1, 0)


def block_ranges(n, block):
    """``[(0, block), (block, 2 * block), ...]`` covering ``range(n)``: fixed by n and block alone."""
    return [(start, min(start + block, n)) for start in range(0, n, block)]
