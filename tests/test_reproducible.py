"""Issue 22's check: the same weights, bit for bit, on every "machine" this host can emulate.

A short MNIST run and two generations of Go self-play training run in fresh processes on:
the host as it is (2 threads); 1 thread with every BLAS routine trapped (a call crashes the run:
nothing on the training path may use OpenBLAS, whose kernels differ per CPU); NumPy without its
AVX2 loops (``NPY_DISABLE_CPU_FEATURES=X86_V3``: its own exp, log, tanh differ); and Numba
compiling for the generic ``x86-64-v3`` CPU instead of the host's, with the GEMM tiles of an
AVX-512 CPU (64-byte vectors, which LLVM splits here), from an empty cache. All must print one
pair of SHA-256. ``OPENBLAS_CORETYPE`` is left as the machine sets it.
"""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

_RUN = """
import sys, tempfile
if sys.argv[1] == "trap":
    import freenet  # loads NumPy's and SciPy's BLAS
    sys.path.insert(0, sys.argv[2])
    import blas_trap
    blas_trap.install()
import freenet as fn
from freenet.go.train import TrainConfig, selfplay_loop
from freenet.recipes import mnist
from freenet.serialize import weights_sha256

fn.set_num_threads(int(sys.argv[3]))
result = mnist.train(mnist.Recipe(epochs=1, max_steps=6, batch_size=32), progress=False, log=lambda *a: None)
print("mnist", result.sha256)
with tempfile.TemporaryDirectory() as run:
    config = TrainConfig(size=5, blocks=1, filters=8, seed=3, games_per_generation=2, window=4,
                         steps_per_generation=2, batch_size=16, selfplay=dict(playouts=8, parallel=2, batch=4))
    selfplay_loop(run, config, 2, progress=False, log=lambda *a: None)
    print("go", weights_sha256(fn.load(run + "/net.safetensors")))
"""

MACHINES = {
    "host, 2 threads": ({}, "plain", 2),
    "1 thread, BLAS trapped": ({}, "trap", 1),
    "NumPy without AVX2": ({"NPY_DISABLE_CPU_FEATURES": "X86_V3"}, "plain", 2),
    "Numba for x86-64-v3, AVX-512 tiles": ({"NUMBA_CPU_NAME": "x86-64-v3", "FREENET_VECTOR_BYTES": "64",
                                            "NUMBA_CACHE_DIR": "{tmp}/numba"}, "plain", 2),
}


def _run(env_changes, mode, threads, tmp_path, script=_RUN):
    env = dict(os.environ, **{k: v.format(tmp=tmp_path) for k, v in env_changes.items()})
    done = subprocess.run([sys.executable, "-c", script, mode, HERE, str(threads)], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64", reason="emulates x86-64 CPUs")
def test_one_hash_on_every_emulated_machine(tmp_path):
    outputs = {name: _run(*how, tmp_path) for name, how in MACHINES.items()}
    hashes = {name: sorted(line for line in out.splitlines() if line.startswith(("mnist ", "go "))) for name, out
              in outputs.items()}
    reference = hashes["host, 2 threads"]
    assert len(reference) == 2, outputs
    different = {name: h for name, h in hashes.items() if h != reference}
    assert not different, f"reference {reference}; different: {different}"


_CALLS_BLAS = """
import sys
import numpy as np
from numba import njit
import freenet
sys.path.insert(0, sys.argv[2])
import blas_trap
print("trapped", len(blas_trap.install()), flush=True)
a = np.ones((64, 64), np.float32)
if sys.argv[1] == "numpy":
    a @ a
else:
    njit(lambda x: np.dot(x, x))(a)  # Numba's np.dot: SciPy's BLAS
print("survived")
"""


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64", reason="writes x86-64 code")
@pytest.mark.parametrize("caller", ["numpy", "numba"])
def test_the_blas_trap_springs(caller):
    """The trap's control: a BLAS call from NumPy or from compiled code ends the process."""
    done = subprocess.run([sys.executable, "-c", _CALLS_BLAS, caller, HERE, "1"], capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.startswith("trapped") and "survived" not in done.stdout, done.stdout
    assert done.returncode != 0 and "Fatal Python error" in done.stderr, done.stderr[-2000:]
