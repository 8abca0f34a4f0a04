"""Facts about this machine that every result carries: CPU, ISA level, BLAS, threads, measured rates, peak.

The theoretical fp32 peak is cores x FMA units per core x fp32 lanes per FMA x 2 FLOPs x clock. Two
of those factors cannot be read reliably from inside a VM, so they are stated as assumptions:

- FMA units per core: not exposed by /proc/cpuinfo or CPUID. ``ASSUMED_FMA_UNITS`` (2: server cores
  with AVX-512 since Skylake-SP, Gold/Platinum class, and AVX2 cores since Haswell have two FMA ports;
  some Xeon Silver/Bronze parts have one for 512-bit vectors, which would halve the peak).
- Clock: the "cpu MHz" of /proc/cpuinfo (a hypervisor often reports the nominal clock), else the
  "@ x.xxGHz" of the model string. Turbo raises it, and heavy AVX-512 use can lower it.
"""

import os
import platform
import re
import time

import numpy as np

ASSUMED_FMA_UNITS = 2

# x86-64 micro-architecture levels (psABI): the flags /proc/cpuinfo must show for each.
ISA_LEVELS = [
    ("x86-64-v4", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
    ("x86-64-v3", {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}),
    ("x86-64-v2", {"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"}),
]


def cpuinfo(text=None):
    """(model name, MHz or None, set of flags) from /proc/cpuinfo (or from ``text``)."""
    if text is None:
        try:
            with open("/proc/cpuinfo") as f:
                text = f.read()
        except OSError:
            text = ""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    mhz = fields.get("cpu MHz")
    return (fields.get("model name") or platform.processor() or platform.machine(),
            float(mhz) if mhz else None, set(fields.get("flags", "").split()))


def isa_level(flags):
    for level, needed in ISA_LEVELS:
        if needed <= flags:
            return level
    return "x86-64" if "sse2" in flags else platform.machine()


def fp32_lanes(flags):
    """fp32 lanes of the widest FMA vector the CPU has, and its name."""
    if "avx512f" in flags:
        return 16, "AVX-512 (512-bit FMA)"
    if "fma" in flags and "avx2" in flags:
        return 8, "AVX2 (256-bit FMA)"
    if "sse2" in flags:
        return 4, "SSE2 (128-bit, no FMA: mul + add)"
    return 1, "scalar"


def theoretical_peak(cores, mhz, model, flags, fma_units=ASSUMED_FMA_UNITS):
    """fp32 peak in GFLOP/s and how it was derived (a dict with every factor and its source)."""
    clock_source = "cpu MHz in /proc/cpuinfo"
    if not mhz:
        m = re.search(r"@\s*([\d.]+)\s*GHz", model or "")
        mhz, clock_source = (float(m.group(1)) * 1000, "the model string") if m else (None, "unknown")
    lanes, vector = fp32_lanes(flags)
    peak = cores * fma_units * lanes * 2 * mhz / 1000 if mhz else None
    formula = (f"{cores} cores x {fma_units} FMA units x {lanes} fp32 lanes x 2 FLOPs x {mhz / 1000:.2f} GHz"
               if mhz else "clock unknown")
    return {"gflops": peak, "formula": formula, "cores": cores, "fma_units": fma_units, "lanes": lanes,
            "vector": vector, "ghz": mhz / 1000 if mhz else None, "clock_source": clock_source,
            "assumptions": f"{fma_units} FMA units per core is assumed: it is not visible from inside a VM "
                           "(CPUID does not report it); clock from " + clock_source +
                           " (turbo can raise it, AVX-512 licences can lower it)"}


def _best_rate(fn, flops, repeats):
    times = []
    fn()
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return {"median_gflops": flops / times[len(times) // 2] / 1e9, "max_gflops": flops / times[0] / 1e9,
            "min_gflops": flops / times[-1] / 1e9, "samples": repeats}


def measure_sgemm(threads, n=2048, repeats=5):
    """SGEMM n^3 through freenet's deterministic blocked GEMM and through plain NumPy (BLAS on ``threads``)."""
    import threadpoolctl
    import freenet
    from freenet import kernels

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n ** 3
    freenet.set_num_threads(threads)
    out = {"n": n, "freenet.kernels.matmul": _best_rate(lambda: kernels.matmul(a, b), flops, repeats)}
    # freenet pins BLAS to one thread at import; plain NumPy gets the suite's thread count here.
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        out["numpy"] = _best_rate(lambda: a @ b, flops, repeats)
    return out


def measure_bandwidth(mb=256, repeats=5):
    """Memory bandwidth of a NumPy copy of ``mb`` MB (reads + writes, GB/s): one thread, a floor, not STREAM."""
    src = np.ones(mb * 2 ** 20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    r = _best_rate(lambda: np.copyto(dst, src), 2.0 * src.nbytes, repeats)
    return {"bytes": 2 * src.nbytes, "median_gbs": r["median_gflops"], "max_gbs": r["max_gflops"],
            "note": "np.copyto on one thread, bytes read + written; a lower bound of the machine's bandwidth"}


def blas_info():
    try:
        import threadpoolctl
        return [{k: v for k, v in lib.items() if k in ("internal_api", "version", "architecture", "num_threads",
                                                        "threading_layer", "prefix")}
                for lib in threadpoolctl.threadpool_info() if lib.get("user_api") == "blas"]
    except Exception as e:  # never fail a run over a description
        return [{"error": str(e)}]


def describe(threads, measure=True, sgemm_n=2048):
    """Everything the report says about the machine."""
    model, mhz, flags = cpuinfo()
    cores = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    import numba

    facts = {"cpu": model, "cores": cores, "usable_cores": usable, "threads": threads,
             "isa_level": isa_level(flags),
             "isa_extras": sorted(f for f in flags if f in {"avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile",
                                                            "avx512_vnni", "avx_vnni"}),
             "hypervisor": "hypervisor" in flags, "blas": blas_info(),
             "peak_fp32": theoretical_peak(usable, mhz, model, flags),
             "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
             "platform": platform.platform()}
    if measure:
        facts["sgemm"] = measure_sgemm(threads, sgemm_n)
        facts["bandwidth"] = measure_bandwidth()
    return facts
