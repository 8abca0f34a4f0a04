"""PyTorch's import path ``torch.utils``: ``freenet.utils.data`` is ``torch.utils.data``."""

from freenet.utils import data

__all__ = ["data"]
