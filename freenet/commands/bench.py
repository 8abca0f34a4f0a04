"""``freenet bench``: the benchmark suite (freenet against its CPU peers and this machine's limits).

The suite lives in the source checkout's ``benchmarks/`` folder, which freenet itself never imports:
this command runs ``python -m benchmarks ARGS`` in a subprocess from the checkout's root.
"""

import argparse


def register(commands):
    bench = commands.add_parser(
        "bench", help="time freenet against its peers (run from a source checkout)", add_help=False,
        prefix_chars="\0",  # every flag, --help included, goes to `python -m benchmarks`
        description="Run the benchmark suite: python -m benchmarks ARGS. `freenet bench --help` lists its flags.")
    bench.add_argument("args", nargs=argparse.REMAINDER)
    bench.set_defaults(run=lambda args: run_suite([], args.args))


def suite_root():
    """The source checkout holding ``benchmarks/``, or a FreenetError saying how to get one."""
    from pathlib import Path

    import freenet
    from freenet.errors import FreenetError

    root = Path(freenet.__file__).resolve().parents[1]
    if not (root / "benchmarks" / "__main__.py").is_file():
        raise FreenetError(f"the benchmark suite is not installed with freenet (no benchmarks/ next to {root / 'freenet'}): "
                           "run it from a source checkout of freenet, installed with `pip install -e .` "
                           "(then `freenet bench` or `python -m benchmarks` in the checkout)")
    return root


def run_suite(prefix, argv):
    """``python -m benchmarks *prefix *argv`` in the checkout; returns its exit code."""
    import os
    import subprocess
    import sys

    root = suite_root()
    env = _initial_environment()
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.call([sys.executable, "-m", "benchmarks", *prefix, *argv], cwd=os.getcwd(), env=env)


def _initial_environment():
    """This process's environment as it started, before importing freenet changed it (freenet sets
    OMP_WAIT_POLICY=PASSIVE for its own threads, which would slow the OpenMP of the peers measured)."""
    import os
    try:
        with open("/proc/self/environ", "rb") as f:
            pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
        return {os.fsdecode(k): os.fsdecode(v) for k, v in pairs}
    except OSError:
        env = dict(os.environ)
        for key in ("OMP_WAIT_POLICY", "KMP_DUPLICATE_LIB_OK"):
            env.pop(key, None)
        return env
