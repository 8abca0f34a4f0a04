"""Neural-network building blocks. ``freenet.nn.functional`` holds activations and losses."""

from freenet.nn import functional

__all__ = ["functional"]
