"""The frameworks the suite compares: freenet and its peers, which of them can run here, and why not.

A peer named on the command line expands to the variants worth timing:

- ``torch``: ``torch`` (CPU, NCHW), ``torch-cl`` (CPU, ``channels_last``, often faster for its oneDNN
  convs) and, where PyTorch sees a CUDA device, ``torch-cuda`` (the GPU, for the measured gap);
- ``jax``, ``tinygrad``: reported as not installed, or as installed without an implementation in
  the suite yet. A peer that cannot run is always reported with the reason, never dropped.
"""

import importlib.util
from dataclasses import dataclass


class Unavailable(Exception):
    """A framework or a workload cannot run here; the report says why instead of dropping it."""


@dataclass(frozen=True)
class Framework:
    name: str
    lib: str                    # freenet | torch | jax | tinygrad | (tests: fake)
    device: str = "cpu"
    channels_last: bool = False

    @property
    def is_gpu(self):
        return self.device != "cpu"

    def build(self, workload):
        """One step of ``workload`` on this framework, or ``Unavailable``."""
        return workload.make(self)

    def set_threads(self, threads):
        if self.lib == "freenet":
            import freenet
            freenet.set_num_threads(threads)
        elif self.lib == "torch":
            import torch
            torch.set_num_threads(threads)

    def version(self):
        if self.lib in ("freenet", "torch", "jax", "tinygrad"):
            try:
                return getattr(__import__(self.lib), "__version__", None)
            except ImportError:
                return None
        return None


FREENET = Framework("freenet", "freenet")
# freenet given channels-last inputs (and gradients), as a layer inside a conv net gets them from
# the layer before (its convolutions write channels-last): timed on the conv kernels only.
FREENET_CL = Framework("freenet-cl", "freenet", channels_last=True)
VARIANTS = {"torch": Framework("torch", "torch"), "torch-cl": Framework("torch-cl", "torch", channels_last=True),
            "torch-cuda": Framework("torch-cuda", "torch", device="cuda")}
KNOWN = {"torch", "jax", "tinygrad"}
IMPLEMENTED = {"freenet", "torch"}


def _cuda_available():
    try:
        import torch  # noqa: F401  (imported here, before freenet: see import_peers_first)
        return torch.cuda.is_available()
    except Exception:  # a broken CUDA install is "no GPU", not a crash
        return False


def import_peer_first(lib):
    """Imports a peer before freenet is imported: freenet sets OMP_WAIT_POLICY=PASSIVE (if unset) for its
    own OpenMP threads, and an OpenMP runtime loaded after that would read it too (PyTorch's small ops
    get several times slower). The peer must run with its own defaults."""
    import os
    import sys
    if lib in sys.modules or lib not in IMPLEMENTED or lib == "freenet":
        return
    saved = {k: os.environ.pop(k) for k in ("OMP_WAIT_POLICY", "KMP_DUPLICATE_LIB_OK")
             if "freenet" in sys.modules and k in os.environ and k not in _original_env()}
    try:
        __import__(lib)
    finally:
        os.environ.update(saved)


def _original_env():
    from benchmarks import ORIGINAL_ENV
    return ORIGINAL_ENV


def expand(peers):
    """Peer names from the command line -> (frameworks to run, {name: reason it is not measured})."""
    run, missing = [FREENET, FREENET_CL], {}
    for name in [p.strip() for p in peers if p.strip()]:
        base = name.split("-")[0]
        if base not in KNOWN:
            missing[name] = f"unknown peer {name!r} (known: {', '.join(sorted(KNOWN))})"
            continue
        if importlib.util.find_spec(base) is None:
            hint = ' (pip install -e ".[peers]")' if base == "torch" else f" (pip install {base})"
            missing[name] = f"{base} is not installed{hint}"
            continue
        if base not in IMPLEMENTED:
            missing[name] = f"{base} is installed, but the suite has no {base} implementation of the workloads yet"
            continue
        wanted = ["torch", "torch-cl", "torch-cuda"] if name == "torch" else [name]
        import_peer_first(base)
        for v in wanted:
            if v not in VARIANTS:
                missing[v] = f"unknown variant {v!r}"
            elif v == "torch-cuda" and not _cuda_available():
                missing[v] = "PyTorch sees no CUDA device here: the GPU side of the gap is estimated, not measured"
            elif VARIANTS[v] not in run:
                run.append(VARIANTS[v])
    return run, missing


def by_name(name):
    """The framework called ``name`` (freenet or a torch variant), for the probe's child process."""
    if name == "freenet":
        return FREENET
    if name == "freenet-cl":
        return FREENET_CL
    if name in VARIANTS:
        return VARIANTS[name]
    raise Unavailable(f"no framework called {name!r}")
