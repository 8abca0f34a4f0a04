"""freenet's numeric settings, each a named variable backed by the environment, read on first use.

``FREENET_MATMUL``: which code multiplies matrices.
  ``freenet`` (the default): freenet's own GEMM (``gemm.py``). Every element of a product is summed
    in order of k by fused multiply-adds, whatever the CPU, the vector width or the thread count,
    so trained weights are the same bits on every x86-64 CPU with FMA.
  ``blas``: OpenBLAS, as NumPy ships it. Sometimes faster; its kernels (chosen per CPU) sum in their
    own orders, so the weights are reproducible on the same CPU model only.
"""

import os

from freenet.errors import FreenetError

MATMUL_PATHS = ("freenet", "blas")

_matmul = None


def matmul_path():
    """The matrix-product path in force: ``FREENET_MATMUL`` unless ``set_matmul_path`` said otherwise."""
    global _matmul
    if _matmul is None:
        _matmul = _checked(os.environ.get("FREENET_MATMUL", "freenet"), "FREENET_MATMUL")
    return _matmul


def set_matmul_path(name):
    """Use ``name`` ("freenet" or "blas") for every matrix product from now on (``None``: back to
    ``FREENET_MATMUL``'s); returns the old setting, for a later ``set_matmul_path(old)``."""
    global _matmul
    old = _matmul
    _matmul = None if name is None else _checked(name, "matmul path")
    return old


def _checked(name, what):
    if name not in MATMUL_PATHS:
        raise FreenetError(f"{what} {name!r}: expected one of {', '.join(MATMUL_PATHS)}")
    return name


_vector = None


def vector_bytes():
    """``FREENET_VECTOR_BYTES``: the width of the vectors in freenet's GEMM tiles, 32 or 64 bytes.
    Default: 64 where the CPU Numba compiles for has AVX-512, else 32. Speed only: results never
    depend on it (read when a kernel compiles; Numba's cache keeps one build per CPU, not per width)."""
    global _vector
    if _vector is None:
        value = os.environ.get("FREENET_VECTOR_BYTES")
        if value is None:
            from numba.core.registry import cpu_target
            features = cpu_target.target_context.codegen()._get_host_cpu_features()
            _vector = 64 if "+avx512f" in features else 32
        elif value in ("32", "64"):
            _vector = int(value)
        else:
            raise FreenetError(f"FREENET_VECTOR_BYTES {value!r}: expected 32 or 64")
    return _vector
