"""The fuzz suite's settings: short in the normal run (CI), long with ``pytest -m fuzz``.

A fuzz test is marked ``@pytest.mark.fuzz`` and takes its size from here: ``examples()`` for
hypothesis (``@settings(max_examples=fuzz.examples())`` is read at import, so use ``fuzz_settings``),
``cases(n)`` for loops over a corpus of mutations the test makes itself. ``run_cli`` runs a command
in a child process with a time and memory limit and classifies the outcome, so that a hang or a blow-up
is a failure with a name rather than a stuck suite.
"""

import os
import resource
import subprocess
import sys

from hypothesis import HealthCheck, settings

LONG = False  # or FREENET_FUZZ=long in the environment (conftest.py sets it for `pytest -m fuzz`)
SHORT_EXAMPLES, LONG_EXAMPLES = 40, 2000
MEMORY_LIMIT = 2 << 30  # bytes of address space a child may map (numba and numpy need about 1 GB)
TIME_LIMIT = 30.0  # seconds; the bar is no hang over 10 s of work, plus start-up


def examples():
    return LONG_EXAMPLES if LONG or os.environ.get("FREENET_FUZZ") == "long" else SHORT_EXAMPLES


def cases(n_short, n_long=None):
    """How many corpus cases to try: ``n_short`` normally, ``n_long`` (default 50x) in the long mode."""
    return (n_long or 50 * n_short) if LONG or os.environ.get("FREENET_FUZZ") == "long" else n_short


def fuzz_settings(**kw):
    """hypothesis settings for a fuzz test (used at decoration time, after conftest.py has read -m)."""
    return settings(max_examples=examples(), deadline=None, suppress_health_check=list(HealthCheck), **kw)


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cli(args, stdin=b"", timeout=TIME_LIMIT, cwd=None):
    """``python -m freenet ARGS`` in a child with limits: (outcome, returncode, stdout, stderr) where outcome is
    "ok", "clean" (exit status != 0 with ``freenet: error:`` and no traceback), "traceback", "hang" or
    "memory" (killed by the memory limit, or MemoryError)."""
    try:
        done = subprocess.run([sys.executable, "-m", "freenet", *args], input=stdin, capture_output=True,
                              timeout=timeout, preexec_fn=_limits, cwd=cwd)
    except subprocess.TimeoutExpired:
        return "hang", None, b"", b""
    err = done.stderr.decode("utf-8", "replace")
    if "MemoryError" in err or done.returncode in (-9, -6):
        outcome = "memory"
    elif "Traceback" in err:
        outcome = "traceback"
    elif done.returncode == 0:
        outcome = "ok"
    else:
        outcome = "clean" if "freenet: error:" in err else "traceback"
    return outcome, done.returncode, done.stdout, err
