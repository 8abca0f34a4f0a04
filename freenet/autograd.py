"""The public face of the engine: recording new ops, grad mode, and the gradient checker."""

from freenet.gradcheck import gradcheck
from freenet.tensor import enable_grad, grad, is_grad_enabled, no_grad, record, unbroadcast

__all__ = ["record", "grad", "no_grad", "enable_grad", "is_grad_enabled", "gradcheck", "unbroadcast"]
