"""Parameter: a leaf tensor that a Module registers as something to train."""

import numpy as np

from freenet.tensor import Tensor


class Parameter(Tensor):
    """A Tensor that ``Module`` treats as a parameter when assigned as an attribute.

    ``Parameter(t)`` for a Tensor ``t`` shares ``t``'s array (as ``torch.nn.Parameter`` does); any
    other data is copied as ``freenet.tensor`` copies it. The result is a leaf that requires grad
    unless ``requires_grad=False``. Ops on a Parameter give plain Tensors.

    >>> import freenet as fn
    >>> w = fn.nn.Parameter(fn.zeros(2))
    >>> w.requires_grad, w.is_leaf
    (True, True)
    """

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        shared = isinstance(data, Tensor)
        super().__init__(np.empty(0, dtype=np.float32) if data is None or shared else data)
        if shared:
            self._data = data._data
        self.requires_grad = requires_grad

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
