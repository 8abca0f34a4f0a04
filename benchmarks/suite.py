"""Runs the suite: every selected workload on freenet and each peer, alternating; then the probes.

Returns one JSON-ready dict (schema ``SCHEMA``; ``report.py`` turns it into text and Markdown):

- ``machine``: ``machine.describe()``; ``frameworks``: name -> version, device, layout;
  ``not_measured``: peer -> reason (a missing peer is reported, never dropped);
- ``workloads``: one entry per workload with ``results`` (framework -> median_s, min_s, max_s,
  samples, and GFLOP/s and items/s at the median, min and max), ``not_measured`` (framework ->
  reason), ``ratios`` ("freenet/PEER" -> freenet median / peer median; below 1 freenet is faster) and
  ``ratios["freenet/torch-best"]`` against the faster of PyTorch's CPU layouts;
- ``probes``: per training workload and framework, time to the first step with a cold and a warm
  Numba cache, and peak RSS.
"""

import gc
import os
import platform
import sys
import time

from benchmarks import ORIGINAL_ENV
from benchmarks import probe as probes
from benchmarks.peers import Unavailable
from benchmarks.timing import time_alternating

SCHEMA = "freenet-bench/1"
ENV_KEYS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
            "NUMBA_THREADING_LAYER", "NUMBA_CACHE_DIR")

FULL = dict(repeats=7, warmup=2, sample_s=0.1, probe_steps=3, quiet_wait_s=15.0, retry_contended=1)
QUICK = dict(repeats=5, warmup=1, sample_s=0.05, probe_steps=3, quiet_wait_s=0.0, retry_contended=0)
CONTENDED = 0.25  # a workload timed while other processes used more than this share of the CPU is contended


def source_state():
    """The commit measured, and whether the work tree differed from it (a benchmark of uncommitted code)."""
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "freenet", "kernels"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        return {"commit": commit or None, "modified_files": dirty.splitlines() if dirty else []}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "modified_files": []}


def _cpu_counters():
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its children, wall seconds)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        busy = None
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system, time.perf_counter()


def others_share(before, after):
    """Share of the machine's CPU time (0 to 1) that other processes used between two ``_cpu_counters()``:
    how much the measurement was competing with the rest of the (shared) machine."""
    if before[0] is None or after[0] is None:
        return None
    capacity = (after[2] - before[2]) * (os.cpu_count() or 1)
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, min(1.0, others / capacity)) if capacity > 0 else None


def wait_for_quiet(max_s, threshold=0.10, interval=0.5):
    """Waits (up to ``max_s`` seconds) until other processes use less than ``threshold`` of the machine.

    On a shared machine a co-running process slows every framework, and some far more than others
    (PyTorch's OpenMP threads wait for each other at every op). Returns the seconds waited."""
    waited = 0.0
    while waited < max_s:
        before = _cpu_counters()
        time.sleep(interval)
        share = others_share(before, _cpu_counters())
        if share is None or share < threshold:
            break
        waited += interval
    return waited


def _framework_info(fw):
    return {"lib": fw.lib, "version": fw.version(), "device": fw.device,
            "layout": "channels_last" if fw.channels_last else "NCHW"}


def _result(workload, stats):
    r = stats.as_dict()
    r["items_per_s"] = workload.items / stats.median
    if workload.cost is not None and workload.cost.flops:
        r["gflops"] = {"median": workload.gflops(stats.median), "min": workload.gflops(stats.max),
                       "max": workload.gflops(stats.min)}
    return r


def ratios(results):
    """"freenet/PEER": freenet's (NCHW inputs) median time / the peer's, and against the faster torch
    CPU layout; where freenet also ran with channels-last inputs, "freenet-best/torch-best": the
    faster freenet layout against the faster torch layout."""
    if "freenet" not in results:
        return {}, {}
    mine = results["freenet"]["median_s"]
    out = {f"freenet/{name}": mine / r["median_s"] for name, r in results.items() if not name.startswith("freenet")}
    best = {}
    cpu_torch = {n: r for n, r in results.items() if n in ("torch", "torch-cl")}
    if cpu_torch:
        name = min(cpu_torch, key=lambda n: cpu_torch[n]["median_s"])
        best["torch"] = name
        out["freenet/torch-best"] = mine / cpu_torch[name]["median_s"]
        if "freenet-cl" in results:
            fastest = min(("freenet", "freenet-cl"), key=lambda n: results[n]["median_s"])
            best["freenet"] = fastest
            out["freenet-best/torch-best"] = results[fastest]["median_s"] / cpu_torch[name]["median_s"]
    return out, best


def time_workload(workload, frameworks, not_measured, threads, repeats, warmup, sample_s):
    steps, skipped = {}, dict(not_measured)
    for fw in frameworks:
        if fw.lib == "freenet" and fw.channels_last and not workload.freenet_layouts:
            skipped[fw.name] = ("timed on the conv kernels only: elsewhere freenet's own layers set the "
                                "layout of its activations, so this is the step of freenet")
            continue
        if fw.channels_last and not workload.layout_matters:
            continue  # channels_last is about conv layouts only; nothing to report
        try:
            fw.set_threads(threads)
            steps[fw.name] = fw.build(workload)
        except Unavailable as e:
            skipped[fw.name] = str(e)
        except Exception as e:  # a peer that fails is reported with its error, and the run goes on
            skipped[fw.name] = f"failed: {type(e).__name__}: {e}"
    try:
        stats = time_alternating(steps, repeats=repeats, warmup=warmup, sample_s=sample_s)
    finally:
        del steps
        gc.collect()
    results = {name: _result(workload, s) for name, s in stats.items()}
    row = {"name": workload.name, "group": workload.group, "title": workload.title, "items": workload.items,
           "cost": workload.cost.as_dict() if workload.cost else None, "meta": workload.meta,
           "results": results, "not_measured": skipped}
    row["ratios"], row["best"] = ratios(results)
    return row


def run(workloads, frameworks, not_measured=None, threads=None, repeats=7, warmup=2, sample_s=0.1, probe_steps=3,
        probe=True, probe_workloads=None, machine=True, size="full", progress=True, quick=False, command=None,
        on_row=None, quiet_wait_s=0.0, retry_contended=0):
    """Times ``workloads`` (name -> Workload) on ``frameworks`` (freenet first) and returns the result dict."""
    from tqdm import tqdm

    threads = threads or os.cpu_count()
    not_measured = dict(not_measured or {})
    probe_list = []
    if probe:
        names = probe_workloads if probe_workloads is not None else [n for n, w in workloads.items() if w.train]
        probe_list = [(n, fw) for n in names for fw in frameworks
                      if not fw.is_gpu and not (fw.lib == "freenet" and fw.channels_last)]
    out = {"schema": SCHEMA, "command": command, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": quick,
           "size": size, "threads": threads, "source": source_state(), "settings": dict(repeats=repeats, warmup=warmup, sample_s=sample_s, quiet_wait_s=quiet_wait_s,
                                    retry_contended=retry_contended,
                                    gomp_spincount=os.environ.get("GOMP_SPINCOUNT")),
           "frameworks": {fw.name: _framework_info(fw) for fw in frameworks},
           "environment": {k: ORIGINAL_ENV.get(k) for k in ENV_KEYS if ORIGINAL_ENV.get(k) is not None}, "not_measured": not_measured,
           "workloads": [], "probes": []}
    total = (1 if machine else 0) + len(workloads) + len(probe_list)
    start, counters = time.perf_counter(), _cpu_counters()
    out["loadavg_start"] = list(os.getloadavg())
    with tqdm(total=total, disable=not progress, unit="task", file=sys.stderr, dynamic_ncols=True) as bar:
        if machine:
            bar.set_description("machine: SGEMM 2048^3")
            from benchmarks.machine import describe
            out["machine"] = describe(threads)
            bar.update()
        else:
            out["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                              "threads": threads, "not_measured": "run without machine measurements"}
        for name, workload in workloads.items():
            waited = 0.0
            if quiet_wait_s > 0:
                bar.set_description(f"{name}: waiting for a quiet machine")
                waited = wait_for_quiet(quiet_wait_s)
            bar.set_description(name)
            before = _cpu_counters()
            row = time_workload(workload, frameworks, not_measured, threads, repeats, warmup, sample_s)
            row["others_cpu_share"] = others_share(before, _cpu_counters())
            row["waited_for_quiet_s"] = waited
            out["workloads"].append(row)
            if on_row:
                on_row(row, bar)
            bar.update()
        for attempt in range(retry_contended):  # time the contended workloads again; keep the quieter run
            again = [i for i, row in enumerate(out["workloads"])
                     if (row.get("others_cpu_share") or 0) > CONTENDED]
            if not again:
                break
            bar.total += len(again)
            for i in again:
                name = out["workloads"][i]["name"]
                if quiet_wait_s > 0:
                    bar.set_description(f"{name} (again): waiting for a quiet machine")
                    wait_for_quiet(quiet_wait_s)
                bar.set_description(f"{name} (again, others used {100 * out['workloads'][i]['others_cpu_share']:.0f}%)")
                before = _cpu_counters()
                row = time_workload(workloads[name], frameworks, not_measured, threads, repeats, warmup, sample_s)
                row["others_cpu_share"] = others_share(before, _cpu_counters())
                old = out["workloads"][i]
                row["attempts"] = old.get("attempts", 1) + 1
                if row["others_cpu_share"] is not None and row["others_cpu_share"] < old["others_cpu_share"]:
                    out["workloads"][i] = row
                    if on_row:
                        on_row(row, bar)
                else:
                    old["attempts"] = row["attempts"]
                bar.update()
        for name, fw in probe_list:
            if quiet_wait_s > 0:
                bar.set_description(f"first step + memory: {name} {fw.name}: waiting for a quiet machine")
                wait_for_quiet(quiet_wait_s)
            bar.set_description(f"first step + memory: {name} {fw.name}")
            before = _cpu_counters()
            result = probes.probe(name, fw, threads, steps=probe_steps, size=size)
            out["probes"].append({"workload": name, "framework": fw.name, **result,
                                  "others_cpu_share": others_share(before, _cpu_counters())})
            bar.update()
    out["seconds"] = time.perf_counter() - start
    out["loadavg_end"] = list(os.getloadavg())
    out["others_cpu_share"] = others_share(counters, _cpu_counters())
    return out


def validate(data):
    """Raises ValueError where ``data`` does not follow the schema (the tests and ``gap`` rely on it)."""
    def need(cond, what):
        if not cond:
            raise ValueError(f"benchmark results: {what}")

    need(data.get("schema") == SCHEMA, f"schema is {data.get('schema')!r}, not {SCHEMA!r}")
    for key, kind in (("threads", int), ("frameworks", dict), ("not_measured", dict), ("workloads", list),
                      ("probes", list), ("machine", dict), ("settings", dict)):
        need(isinstance(data.get(key), kind), f"{key} must be a {kind.__name__}")
    need("freenet" in data["frameworks"], "freenet must be among the frameworks")
    for row in data["workloads"]:
        for key, kind in (("name", str), ("group", str), ("results", dict), ("not_measured", dict),
                          ("ratios", dict), ("items", int)):
            need(isinstance(row.get(key), kind), f"workload {row.get('name')}: {key} must be a {kind.__name__}")
        for fw, r in row["results"].items():
            need(fw in data["frameworks"], f"{row['name']}: unknown framework {fw}")
            need(r["min_s"] <= r["median_s"] <= r["max_s"], f"{row['name']} {fw}: min <= median <= max")
            need(r["samples"] >= 1, f"{row['name']} {fw}: no samples")
        for fw in data["frameworks"]:
            need(fw in row["results"] or fw in row["not_measured"] or fw == "torch-cl",
                 f"{row['name']}: {fw} neither measured nor reported as not measured")
        for key, value in row["ratios"].items():
            need(key.startswith(("freenet/", "freenet-best/")) and value > 0, f"{row['name']}: bad ratio {key}={value}")
    for p in data["probes"]:
        need({"workload", "framework", "cold", "warm"} <= set(p), "a probe needs workload, framework, cold, warm")
    return True
