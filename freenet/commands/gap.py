"""``freenet gap``: the CPU-vs-GPU gap report (measured where PyTorch has a CUDA device, else estimated).

Runs ``python -m benchmarks gap ARGS`` from the source checkout (see ``freenet bench``).
"""

import argparse


def register(commands):
    gap = commands.add_parser(
        "gap", help="how many CPU-days one GPU-day is, per workload (run from a source checkout)", add_help=False,
        prefix_chars="\0",
        description="The CPU-vs-GPU gap report: python -m benchmarks gap ARGS. `freenet gap --help` lists its flags.")
    gap.add_argument("args", nargs=argparse.REMAINDER)
    gap.set_defaults(run=_run)


def _run(args):
    from freenet.commands.bench import run_suite
    return run_suite(["gap"], args.args)
