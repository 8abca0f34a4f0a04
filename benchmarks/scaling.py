"""Scaling over MPI, measured as users meet it: the same freenet command run alone and under
``mpiexec -n K`` (one thread per process) on this host, throughput compared.

    python -m benchmarks scaling [--processes 1,2] [--quick] [--json FILE]

Rows: ``mnist-train`` (``freenet train mnist``, images per second over whole epochs, the per-epoch
test included) and ``go9-selfplay`` (``freenet go train`` with a 6x64 net at the from-zero run's search
settings, self-play games per hour), both with ``--shards`` the largest K measured. Efficiency with K processes is
throughput(K) / (K x throughput(1)). ``gap`` turns it into "how many machines match one GPU",
projected: it assumes every added machine keeps the efficiency measured here between processes of
one host, which a network between machines can only lower.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def _mnist(quick, shards):
    epochs = 1 if quick else 3

    def command(folder):
        return ["train", "mnist", "--epochs", str(epochs), "--shards", str(shards), "--threads", "1", "--quiet",
                "--out", os.path.join(folder, "w.safetensors"), "--json", os.path.join(folder, "s.json")]

    def throughput(folder):
        with open(os.path.join(folder, "s.json")) as f:
            return epochs * 4000 / json.load(f)["seconds"]  # the bundled sample: 4,000 training images

    return command, throughput, "images/s"


def _selfplay(quick, shards):
    games = 16 if quick else 64  # the run's settings, at half its games per generation

    def command(folder):
        return ["go", "train", "--dir", os.path.join(folder, "run"), "--size", "9", "--blocks", "6", "--filters", "64",
                "--ownership", "--score", "--pooling", "--games", str(games), "--parallel", str(games // shards),
                "--batch", str(2 * games // shards), "--playouts", "200", "--cheap-playouts", "40",
                "--full-fraction", "0.25", "--forced-playouts", "--steps", "1", "--batch-size", "32",
                "--generations", "1", "--quiet", "--shards", str(shards), "--threads", "1"]

    def throughput(folder):
        with open(os.path.join(folder, "run", "state.json")) as f:
            return games * 3600 / json.load(f)["selfplay_seconds"]

    return command, throughput, "games/hour"


WORKLOADS = {"mnist-train": _mnist, "go9-selfplay": _selfplay}


def measure(processes=(1, 2), quick=False, repeats=3, log=print):
    """{workload: {"unit", "throughput": {K: best of ``repeats``}, "efficiency": {K: ...}, "command"}}; the
    K values alternate within each repeat, so that drift of the machine hits all of them alike."""
    mpiexec = shutil.which("mpiexec") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    if mpiexec is None:
        raise SystemExit("scaling: needs mpiexec (pip install '.[mpi]')")
    rows = {}
    for name, make in WORKLOADS.items():
        command, throughput, unit = make(quick, max(processes))
        best = {}
        for _ in range(repeats):
            for k in processes:
                with tempfile.TemporaryDirectory() as folder:
                    argv = [sys.executable, "-m", "freenet", *command(folder)]
                    if k > 1:
                        argv = [mpiexec, "-n", str(k), *argv]
                    start = time.perf_counter()
                    done = subprocess.run(argv, capture_output=True, text=True)
                    if done.returncode:
                        raise SystemExit(f"scaling: {' '.join(argv)} failed:\n{done.stderr}")
                    best[k] = max(best.get(k, 0.0), throughput(folder))
                    log(f"{name} K={k}: {throughput(folder):.1f} {unit} ({time.perf_counter() - start:.0f} s)")
        rows[name] = {"unit": unit, "throughput": {str(k): best[k] for k in processes},
                      "efficiency": {str(k): best[k] / (k * best[processes[0]]) * processes[0] for k in processes},
                      "command": "[mpiexec -n K] freenet " + " ".join(command("DIR"))}
    return rows


def run(processes=(1, 2), quick=False):
    from benchmarks.machine import cpuinfo

    return {"schema": "freenet-scaling/1", "created": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpuinfo()[0],
            "host_cpus": os.cpu_count(), "threads_per_process": 1, "quick": quick,
            "note": f"measured with K processes of one host ({os.cpu_count()} CPUs); beyond it, projected",
            "workloads": measure(processes, quick)}


def markdown(scaling):
    out = ["## Scaling over MPI (measured on one host, projected beyond)", "",
           f"Measured {scaling['created']} on {scaling['cpu']} ({scaling['host_cpus']} CPUs), one thread per "
           "process, best of three runs each: the same command alone and under `mpiexec -n K`.", "",
           "| workload | unit | " + " | ".join(f"K = {k}" for k in next(iter(scaling["workloads"].values()))
                                             ["throughput"]) + " | efficiency |",
           "|---|---|" + "---|" * (len(next(iter(scaling["workloads"].values()))["throughput"]) + 1)]
    for name, row in scaling["workloads"].items():
        ks = list(row["throughput"])
        out.append(f"| `{name}` | {row['unit']} | " + " | ".join(f"{row['throughput'][k]:,.1f}" for k in ks)
                   + " | " + ", ".join(f"{100 * row['efficiency'][k]:.0f}% at K = {k}" for k in ks[1:]) + " |")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", default="1,2", help="comma-separated K values, the first the baseline")
    p.add_argument("--quick", action="store_true", help="smaller runs: about two minutes on 2 cores")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON (input of `gap --scaling`)")
    args = p.parse_args(argv)
    data = run(tuple(int(k) for k in args.processes.split(",")), args.quick)
    print("\n".join(markdown(data)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    return 0
