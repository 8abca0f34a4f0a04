"""Shared test settings: Numba compiles on first call, so hypothesis gets no per-example deadline."""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, max_examples=30,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=300,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("FREENET_HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config):
    config.addinivalue_line("markers", "fuzz: hostile-input tests (tests/fuzz.py); `pytest -m fuzz` runs them long")
    if "fuzz" in (config.getoption("markexpr", "") or ""):
        os.environ.setdefault("FREENET_FUZZ", "long")  # read by tests/fuzz.py when the test modules load


@pytest.fixture
def one_thread():
    """For tiny nets: one thread (on a busy shared machine a thread pool only costs)."""
    import freenet as fn

    before = fn.get_num_threads()
    fn.set_num_threads(1)
    yield
    fn.set_num_threads(before)
