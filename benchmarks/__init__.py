"""freenet's benchmark suite: workloads timed for freenet and its peers in the same run.

Run ``python -m benchmarks --help``. Nothing in freenet imports this package.
"""
