"""Costs a user feels, each measured in a fresh process: time to the first training step and peak memory.

For each training workload and framework the parent starts ``python -m benchmarks.probe`` twice:

1. with ``NUMBA_CACHE_DIR`` set to a new, empty folder: a cold Numba cache, as on the first run
   after installing freenet (every kernel is compiled);
2. again with the same folder: a warm cache, as on every later run.

The child imports the framework, builds the workload, runs ``--steps`` steps and prints one JSON line:
wall-clock timestamps (``time.time()``, the same clock as the parent's) and ``ru_maxrss``. Time to
first step = the child's timestamp after the first step - the parent's timestamp just before it
started the process (so Python's own start-up and the imports are included). Peak RSS is read after
the steps, from ``VmHWM`` in /proc/self/status (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` where
there is no /proc: on Linux it keeps the parent's peak across ``exec``, so the suite's own big
process would show through); the report takes it from the warm run (the cold run also holds the
compiler's memory, reported separately).

PyTorch has no Numba cache; it is run the same two ways so that both columns compare like with like.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb():
    """Peak RSS of this process so far, in MB.

    ``VmHWM`` of /proc/self/status where there is one: ``ru_maxrss`` survives ``exec`` on Linux, so in a
    child started by a big parent it reports the parent's peak, not the child's.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def child(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe")
    parser.add_argument("workload")
    parser.add_argument("framework")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", default="full")
    args = parser.parse_args(argv)
    t_start = time.time()
    from benchmarks.peers import by_name
    from benchmarks.workloads import all_workloads

    fw = by_name(args.framework)
    if fw.lib in ("freenet", "torch"):
        __import__(fw.lib)
    t_import = time.time()
    rss_import = _rss_mb()
    fw.set_threads(args.threads)
    step = fw.build(all_workloads(args.size)[args.workload])
    step()
    t_first = time.time()
    for _ in range(args.steps - 1):
        step()
    t_end = time.time()
    print(json.dumps(dict(t_start=t_start, t_import=t_import, t_first=t_first, t_end=t_end,
                          rss_import_mb=rss_import, rss_peak_mb=_rss_mb(), steps=args.steps)))
    return 0


def run_child(workload, framework, threads, cache_dir, steps=3, size="full", timeout=900):
    """One probe in a fresh process. Returns a dict of seconds and megabytes, or {"error": ...}."""
    from benchmarks import ORIGINAL_ENV
    env = dict(ORIGINAL_ENV, NUMBA_CACHE_DIR=str(cache_dir))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    cmd = [sys.executable, "-m", "benchmarks.probe", workload, framework.name, "--threads", str(threads),
           "--steps", str(steps), "--size", size]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["exit code %d" % proc.returncode])[-1]}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"first_step_s": r["t_first"] - t0, "import_s": r["t_import"] - t0,
            "later_step_s": (r["t_end"] - r["t_first"]) / max(1, r["steps"] - 1) if r["steps"] > 1 else None,
            "rss_import_mb": r["rss_import_mb"], "rss_peak_mb": r["rss_peak_mb"]}


def probe(workload, framework, threads, steps=3, size="full"):
    """Cold then warm Numba cache, in two fresh processes: {"cold": {...}, "warm": {...}}."""
    cache = Path(tempfile.mkdtemp(prefix="freenet-bench-numba-"))
    try:
        cold = run_child(workload, framework, threads, cache, steps, size)
        warm = run_child(workload, framework, threads, cache, steps, size)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"cold": cold, "warm": warm}


if __name__ == "__main__":
    sys.exit(child())
