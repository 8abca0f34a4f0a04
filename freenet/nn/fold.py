"""Inference helpers: batch norm folded into the convolution or linear layer before it.

In eval mode ``bn(conv(x))`` is ``conv'(x)`` with ``w' = w * s`` and ``b' = beta + (b - mean) * s``
per output channel, ``s = gamma / sqrt(running_var + eps)``: one pass over memory instead of two.
"""

import numpy as np

from freenet.errors import FreenetError

__all__ = ["fold_batch_norm"]


def fold_batch_norm(layer, bn):
    """(weight, bias) ndarrays of ``layer`` (Conv2d or Linear) with the eval-mode ``bn`` after it folded in.

    >>> from freenet import nn
    >>> conv, bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
    >>> w, b = fold_batch_norm(conv, bn)
    >>> w.shape, b.shape
    ((4, 3, 3, 3), (4,))
    """
    w = layer.weight._data
    if bn.running_mean is None:
        raise FreenetError(f"fold_batch_norm: {type(bn).__name__} has no running statistics to fold")
    if bn.num_features != w.shape[0]:
        raise FreenetError(f"fold_batch_norm: {type(bn).__name__}({bn.num_features}) after a layer with "
                           f"{w.shape[0]} outputs")
    mean = bn.running_mean._data.astype(np.float64)
    scale = 1.0 / np.sqrt(bn.running_var._data.astype(np.float64) + bn.eps)
    shift = np.zeros(w.shape[0])
    if bn.weight is not None:
        scale = scale * bn.weight._data
        shift = bn.bias._data.astype(np.float64)
    bias = np.zeros(w.shape[0]) if layer.bias is None else layer.bias._data.astype(np.float64)
    folded_w = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
    folded_b = (shift + (bias - mean) * scale).astype(w.dtype)
    return folded_w, folded_b
