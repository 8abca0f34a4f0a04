"""freenet's benchmark suite: workloads timed for freenet and its peers in the same run.

Run ``python -m benchmarks --help``. Nothing in freenet imports this package.
"""

import os as _os

# The environment as it was before anything imported freenet, which sets OMP_WAIT_POLICY=PASSIVE for its
# own OpenMP threads (kernels/parallel.py). Child processes that run a peer get this environment, so that
# PyTorch runs with its own OpenMP defaults (with PASSIVE its small ops are several times slower).
def _initial_environment():
    try:  # the environment this process started with, whatever was imported since
        with open("/proc/self/environ", "rb") as f:
            pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
        return {_os.fsdecode(k): _os.fsdecode(v) for k, v in pairs}
    except OSError:
        return dict(_os.environ)


ORIGINAL_ENV = _initial_environment()

# In the suite's process PyTorch (imported first) and freenet's Numba kernels share PyTorch's libgomp.
# With libgomp's default spin (300,000 iterations) its idle workers keep spinning through the work of
# freenet's own thread pool: freenet's MNIST step took 36.9 ms instead of 29.6 ms alone (2 threads). A
# spin of 10,000 gives freenet its speed alone and left PyTorch's within its run-to-run noise (its
# MNIST step 21.6-23.4 ms over three runs). Set before any OpenMP runtime loads; a user's value wins.
# Child processes (the start-up probes) run one framework each, with ORIGINAL_ENV.
_os.environ.setdefault("GOMP_SPINCOUNT", "10000")
