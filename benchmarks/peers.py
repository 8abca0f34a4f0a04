"""Which frameworks can run here, set to the same thread count."""

import importlib.util


class Unavailable(Exception):
    """A framework or a workload cannot run here; the report says why instead of dropping it."""


def available(name):
    """None if the peer can run, else the reason it cannot."""
    if name == "freenet":
        return None
    module = {"torch": "torch", "jax": "jax", "tinygrad": "tinygrad"}.get(name)
    if module is None:
        return f"unknown peer {name!r}"
    if importlib.util.find_spec(module) is None:
        hint = ' (pip install -e ".[peers]")' if name == "torch" else ""
        return f"{name} is not installed{hint}"
    return None


def set_threads(name, threads):
    if name == "freenet":
        import freenet
        freenet.set_num_threads(threads)
    elif name == "torch":
        import torch
        torch.set_num_threads(threads)
