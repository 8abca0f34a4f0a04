"""Timing that is fair on a shared, noisy machine: peers alternate, and figures are medians."""

import statistics
import time
from dataclasses import dataclass


@dataclass
class Stats:
    """Seconds per call over the samples: median, min and max."""

    median: float
    min: float
    max: float
    samples: int

    def as_dict(self):
        return {"median_s": self.median, "min_s": self.min, "max_s": self.max, "samples": self.samples}


def _calibrate(step, target_s):
    """How many calls make one sample of at least ``target_s`` seconds."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            step()
        elapsed = time.perf_counter() - start
        if elapsed >= target_s or n >= 1 << 20:
            return n
        n = n * 2 if elapsed <= 0 else max(n + 1, int(n * 1.5 * target_s / elapsed))


def time_alternating(steps, repeats=7, warmup=2, sample_s=0.05):
    """Times each callable in ``steps`` (name -> step), interleaving them so drift hits all alike.

    Returns name -> Stats (seconds per call).
    """
    inner = {}
    for name, step in steps.items():
        for _ in range(warmup):
            step()
        inner[name] = _calibrate(step, sample_s)
    samples = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            n = inner[name]
            start = time.perf_counter()
            for _ in range(n):
                step()
            samples[name].append((time.perf_counter() - start) / n)
    return {name: Stats(statistics.median(s), min(s), max(s), len(s)) for name, s in samples.items()}
