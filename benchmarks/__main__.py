"""python -m benchmarks: time freenet and its peers on the same workloads, in the same run."""

import argparse
import fnmatch
import json
import os
import platform
import sys

from benchmarks import engine, networks
from benchmarks.peers import Unavailable, available, set_threads
from benchmarks.timing import time_alternating

WORKLOADS = {**engine.WORKLOADS, **networks.WORKLOADS}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", default="*", help="glob over workload names (default: all)")
    parser.add_argument("--peers", default="torch", help="comma-separated peers to compare (default: torch)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every framework")
    parser.add_argument("--repeats", type=int, default=7, help="timed samples per framework (median reported)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)

    frameworks = ["freenet"] + [p for p in args.peers.split(",") if p]
    missing = {name: available(name) for name in frameworks if available(name)}
    for name, reason in missing.items():
        print(f"peer {name}: not measured: {reason}", file=sys.stderr)
    runnable = [name for name in frameworks if name not in missing]
    for name in runnable:
        set_threads(name, args.threads)

    results = []
    for workload, make in WORKLOADS.items():
        if not fnmatch.fnmatch(workload, args.only):
            continue
        steps, skipped = {}, dict(missing)
        for name in runnable:
            try:
                steps[name] = make(name)
            except Unavailable as e:
                skipped[name] = str(e)
        stats = time_alternating(steps, repeats=args.repeats)
        row = {"workload": workload, "threads": args.threads,
               "results": {name: s.as_dict() for name, s in stats.items()}, "not_measured": skipped}
        if "freenet" in stats:
            row["ratios"] = {f"freenet/{name}": stats["freenet"].median / s.median
                             for name, s in stats.items() if name != "freenet"}
        results.append(row)
        _print_row(row)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": {"python": platform.python_version(), "cpu": platform.processor() or
                                   platform.machine(), "cores": os.cpu_count()}, "results": results}, f, indent=2)
    return 0


def _print_row(row):
    parts = [f"{name} {_fmt(r['median_s'])} (min {_fmt(r['min_s'])}, max {_fmt(r['max_s'])})"
             for name, r in row["results"].items()]
    ratios = "  ".join(f"{k} = {v:.2f}" for k, v in row.get("ratios", {}).items())
    print(f"{row['workload']:28s} " + " | ".join(parts) + (f"  ->  {ratios}" if ratios else ""))


def _fmt(seconds):
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


if __name__ == "__main__":
    sys.exit(main())
