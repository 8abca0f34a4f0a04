"""Numba's on-disk cache keys a compiled function by its module, qualified name, line and bytecode,
but not by its options (``parallel``, ``nogil``...). Two cached dispatchers of one Python function
would load each other's machine code: a serial twin would run the parallel loop or, worse, the
parallel entry point the serial code (as ``norm.rows_sums`` did: 2.5x slower at 2 threads)."""

import importlib
import pkgutil

from numba.core.registry import CPUDispatcher

import freenet.kernels


def _cached_dispatchers():
    for info in pkgutil.iter_modules(freenet.kernels.__path__):
        module = importlib.import_module(f"freenet.kernels.{info.name}")
        for name, value in vars(module).items():
            found = value.items() if isinstance(value, dict) else [(None, value)]  # (WINO_UNIT[m], ...)
            for key, item in found:
                if isinstance(item, CPUDispatcher) and item._cache.__class__.__name__ != "NullCache":
                    yield f"{info.name}.{name}" + ("" if key is None else f"[{key!r}]"), item


def test_every_cached_kernel_has_its_own_cache_entry():
    owners = {}
    for name, dispatcher in _cached_dispatchers():
        f = dispatcher.py_func
        key = (f.__module__, f.__qualname__, f.__code__.co_firstlineno)
        owners.setdefault(key, {})[id(dispatcher)] = name  # (a kernel imported elsewhere is one)
    assert len(owners) > 40  # the walk found the kernels
    shared = {key: sorted(names.values()) for key, names in owners.items() if len(names) > 1}
    assert not shared, f"kernels sharing one cache entry: {shared}"


def test_serial_twins_compute_what_the_parallel_kernels_do():
    import numpy as np
    from freenet.kernels import norm

    x = np.random.default_rng(0).standard_normal((1000, 7)).astype(np.float32)
    blocks = -(-x.shape[0] // norm.ROW_BLOCK)
    a, b = np.full((blocks, 7), np.nan), np.full((blocks, 7), np.nan)
    norm.rows_sums(x, a)
    norm.rows_sums_serial(x, b)
    assert np.array_equal(a, b)
    want = np.add.reduceat(x.astype(np.float64), np.arange(0, 1000, norm.ROW_BLOCK), axis=0)
    np.testing.assert_allclose(a, want, rtol=1e-12)
    g = x.reshape(10, 7, 100)
    c, d = np.empty(7), np.empty(7)
    norm.channel_sums(g, c)
    norm.channel_sums_serial(g, d)
    assert np.array_equal(c, d)
    np.testing.assert_allclose(c, g.astype(np.float64).sum(axis=(0, 2)), rtol=1e-10)
