"""python -m benchmarks: time freenet and its peers on the reference workloads, in the same run.

    python -m benchmarks [--quick] [--only PATTERN] [--peers torch,jax,tinygrad] [--threads T]
                         [--json FILE] [--markdown FILE] [--plot FILE]
    python -m benchmarks gap [--results FILE] [--scaling FILE] [--quick] [--markdown FILE] [--json FILE] [--plot FILE]
    python -m benchmarks scaling [--processes 1,2] [--quick] [--json FILE]

The first form is ``freenet bench``, the second ``freenet gap``. Workloads: every conv shape of the
reference list (forward, forward + backward), the mnist-cnn, char-gpt, go9-6x64 and go19-6x128 training
steps, go9-6x64 and go19-6x128 inference at batch 1, 8 and 64, two engine-overhead graphs; then, in fresh
processes, time to the first training step (cold and warm Numba cache) and peak RSS.
"""

import argparse
import fnmatch
import json
import os
import shlex
import sys

from benchmarks import gap as gapmod
from benchmarks import report, suite
from benchmarks.peers import expand
from benchmarks.workloads import all_workloads


def _bench_parser(prog="python -m benchmarks"):
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a subset with fewer samples: about two minutes on 2 cores")
    p.add_argument("--only", default=None, metavar="PATTERN",
                   help="glob (or comma-separated globs) over workload names, e.g. 'conv/*' or 'net/go9*'")
    p.add_argument("--peers", default="torch", help="comma-separated peers: torch, jax, tinygrad; torch runs "
                   "NCHW, channels_last and, where PyTorch sees a CUDA device, the GPU (default: torch)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every framework (default: all cores)")
    p.add_argument("--repeats", type=int, default=None, help="timed samples per framework (default 7, quick 5)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON (input of `gap --results`)")
    p.add_argument("--markdown", metavar="FILE", help="write the results as a Markdown report")
    p.add_argument("--plot", metavar="FILE", help="write a PNG chart of the ratios (needs matplotlib)")
    p.add_argument("--quiet-wait", type=float, default=None, metavar="S", dest="quiet_wait_s",
                   help="before each workload, wait up to S seconds for other processes to leave the CPU "
                        "(default 15; 0 with --quick)")
    p.add_argument("--retry-contended", type=int, default=None, metavar="N",
                   help="time again, up to N times, each workload during which other processes used more than "
                        "25%% of the CPU, keeping the quietest run (default 1; 0 with --quick)")
    p.add_argument("--no-probes", action="store_true", help="skip the first-step and peak-memory probes")
    p.add_argument("--no-machine", action="store_true", help="skip measuring SGEMM and memory bandwidth")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    p.add_argument("--size", default="full", choices=["full", "tiny"], help=argparse.SUPPRESS)  # tests
    p.add_argument("--sample-s", type=float, default=None, help=argparse.SUPPRESS)  # tests: seconds per sample
    p.add_argument("--warmup", type=int, default=None, help=argparse.SUPPRESS)
    return p


def _gap_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks gap", description=gapmod.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", metavar="FILE", help="JSON of an earlier `python -m benchmarks --json FILE` run; "
                   "without it the network and kernel workloads are measured now (with --quick, a subset)")
    p.add_argument("--quick", action="store_true", help="when measuring now: the quick subset")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="when measuring now: threads")
    p.add_argument("--peers", default="torch", help="when measuring now: peers (default: torch)")
    p.add_argument("--precision", default="tf32", choices=list(gapmod.PRECISIONS),
                   help="GPU precision of the headline figures (default: tf32, PyTorch's default for convs)")
    p.add_argument("--gpu", default="H100 SXM", help="the GPU of the headline sentences (default: H100 SXM)")
    p.add_argument("--gpus", metavar="FILE", default=str(gapmod.GPUS_JSON), help="published GPU figures (JSON)")
    p.add_argument("--markdown", metavar="FILE", help="write the gap report as Markdown")
    p.add_argument("--json", metavar="FILE", help="write the gap as JSON")
    p.add_argument("--plot", metavar="FILE", help="write a PNG chart of the gap (needs matplotlib)")
    p.add_argument("--scaling", metavar="FILE", help="JSON of `python -m benchmarks scaling --json FILE`: adds the "
                   "measured MPI scaling and how many of these machines match one GPU")
    return p


def select(workloads, only, quick):
    patterns = [p for p in (only or "").split(",") if p]
    out = {}
    for name, w in workloads.items():
        if patterns and not any(fnmatch.fnmatch(name, p) for p in patterns):
            continue
        if quick and not patterns and not w.quick:
            continue
        out[name] = w
    return out


def run_bench(args, command, rows_to=None):
    """Runs the suite as ``args`` say; each workload's line goes to ``rows_to`` (default stdout)."""
    workloads = select(all_workloads(args.size), args.only, args.quick)
    if args.list:
        for w in workloads.values():
            print(f"{w.name:32s} {w.title}")
        return None
    if not workloads:
        raise SystemExit(f"no workload matches {args.only!r} (see --list)")
    frameworks, missing = expand(args.peers.split(","))
    for name, why in missing.items():
        print(f"peer {name}: not measured: {why}", file=sys.stderr)
    settings = dict(suite.QUICK if args.quick else suite.FULL)
    for key in ("repeats", "sample_s", "warmup", "quiet_wait_s", "retry_contended"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    probe_names = None
    if args.quick:  # the quick run probes one training workload (cold compiles cost ~10 s each)
        probe_names = [n for n in workloads if n.startswith("net/mnist-cnn/train")][:1]
    data = suite.run(workloads, frameworks, missing, threads=args.threads, probe=not args.no_probes,
                     probe_workloads=probe_names, machine=not args.no_machine, size=args.size, quick=args.quick,
                     command=command, on_row=lambda row, bar: bar.write(report.console_row(row, missing),
                                                                       file=rows_to or sys.stdout),
                     **settings)
    return data


def bench(argv):
    args = _bench_parser().parse_args(argv)
    command = "python -m benchmarks " + shlex.join(argv) if argv else "python -m benchmarks"
    data = run_bench(args, command)
    if data is None:
        return 0
    _write_bench(data, args)
    print(f"done in {data['seconds'] / 60:.1f} minutes")
    return 0


def _write_bench(data, args):
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
        print(f"results: {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report.markdown(data) + "\n")
        print(f"report: {args.markdown}")
    if args.plot:
        from benchmarks.plot import bench_chart
        bench_chart(data, args.plot)
        print(f"chart: {args.plot}")


def gap(argv):
    args = _gap_parser().parse_args(argv)
    gpus = gapmod.load_gpus(args.gpus)
    if args.gpu not in gpus["gpus"]:
        raise SystemExit(f"unknown GPU {args.gpu!r}; known: {', '.join(gpus['gpus'])}")
    if args.results:
        with open(args.results) as f:
            data = json.load(f)
        suite.validate(data)
    else:
        only = "conv/*,net/*"
        bench_args = _bench_parser().parse_args(["--only", only if not args.quick else
                                                 "conv/go9-b256/*,conv/go19-b64/*,net/go9-6x64/*,net/go19-6x128/train*,"
                                                 "net/go19-6x128/infer-b8,net/mnist-cnn/*",
                                                 "--threads", str(args.threads), "--peers", args.peers, "--no-probes"]
                                                + (["--quick"] if args.quick else []))
        data = run_bench(bench_args, "python -m benchmarks gap " + shlex.join(argv), rows_to=sys.stderr)
    result = gapmod.compute(data, gpus, precision=args.precision, headline=args.gpu)
    if args.scaling:
        with open(args.scaling) as f:
            result["scaling"] = json.load(f)
    text = gapmod.markdown(result)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.plot:
        from benchmarks.plot import gap_chart
        gap_chart(result, args.plot)
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["gap"]:
        return gap(argv[1:])
    if argv[:1] == ["scaling"]:
        from benchmarks import scaling
        return scaling.main(argv[1:])
    if argv[:1] == ["bench"]:
        argv = argv[1:]
    return bench(argv)


if __name__ == "__main__":
    sys.exit(main())
