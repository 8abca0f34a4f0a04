"""Makes every BLAS routine of the loaded OpenBLAS libraries crash the process when called.

For tests that must show that nothing on a path calls BLAS: each routine's first instruction is
overwritten with ``ud2``, so a call raises SIGILL, and ``faulthandler`` prints the Python stack that
made it. Linux x86-64 only; load NumPy and SciPy's BLAS first (importing freenet does).
"""

import ctypes
import faulthandler
import mmap
import platform

import threadpoolctl

ROUTINES = ("gemm", "gemv", "dot", "axpy", "syrk", "syr2k", "symm", "symv", "trmm", "trsm", "ger")
UD2 = b"\x0f\x0b"


def _names(routine):
    """Every spelling an OpenBLAS build exports a routine under: Fortran or CBLAS, with or without
    SciPy's ``scipy_`` prefix and its 64-bit-integer ``64_`` suffix."""
    for kind in "sd":
        for prefix in ("", "scipy_"):
            for stem in (f"{kind}{routine}", f"cblas_{kind}{routine}"):
                for suffix in ("", "_", "64_", "_64_"):
                    yield prefix + stem + suffix


def _make_writable(address):
    libc = ctypes.CDLL(None, use_errno=True)
    page = address & ~(mmap.PAGESIZE - 1)
    size = mmap.PAGESIZE * 2  # the two bytes may straddle a page boundary
    if libc.mprotect(ctypes.c_void_p(page), ctypes.c_size_t(size), 7) != 0:  # read, write, execute
        raise OSError(ctypes.get_errno(), "mprotect failed")


def install():
    """Traps the routines; returns the trapped symbol names (none found is an error)."""
    if platform.machine() != "x86_64":
        raise RuntimeError("the BLAS trap writes x86-64 instructions")
    faulthandler.enable()
    trapped = []
    for info in threadpoolctl.threadpool_info():
        if info.get("user_api") != "blas":
            continue
        library = ctypes.CDLL(info["filepath"])
        for routine in ROUTINES:
            for name in _names(routine):
                try:
                    function = getattr(library, name)
                except AttributeError:
                    continue
                address = ctypes.cast(function, ctypes.c_void_p).value
                _make_writable(address)
                ctypes.memmove(address, UD2, len(UD2))
                trapped.append(name)
    if not trapped:
        raise RuntimeError("no BLAS library found to trap")
    return trapped
