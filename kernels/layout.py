"""Memory layouts of 4-D (N, C, H, W) arrays: C-contiguous (NCHW), or channels-last (NHWC memory
under the NCHW shape, as PyTorch's ``channels_last``).

The convolutions' GEMMs produce channels-last outputs, and the next convolution and the batch norm
kernels read them as they are, so a conv net's activations are never transposed between layers. The
shape (and so the public API) stays NCHW; only the strides differ, and NumPy operations follow them.

>>> import numpy as np
>>> x = np.zeros((2, 3, 4, 5), np.float32).transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2)
>>> channels_last(x), x.shape, nhwc_rows(x, np.float32).shape
(True, (2, 3, 4, 5), (40, 3))
"""

import numpy as np


def channels_last(a):
    """Whether the 4-D array ``a`` holds NHWC memory (``a.transpose(0, 2, 3, 1)`` C-contiguous) and is
    not also C-contiguous (one channel, or one pixel, is both: it counts as NCHW)."""
    return (isinstance(a, np.ndarray) and a.ndim == 4 and not a.flags.c_contiguous
            and a.transpose(0, 2, 3, 1).flags.c_contiguous)


def rows_layout(a):
    """Whether the 4-D ``a`` can be read as (N * H * W, C) rows without a copy: channels-last, or also
    C-contiguous with one channel or one pixel. Per-channel kernels take such arrays as rows."""
    return isinstance(a, np.ndarray) and a.ndim == 4 and a.transpose(0, 2, 3, 1).flags.c_contiguous


def nhwc_rows(a, dtype):
    """The C-contiguous (N * H * W, C) rows of the 4-D ``a`` in ``dtype``: a view when ``a`` is
    channels-last in that dtype, else a copy."""
    a = np.asarray(a)
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1), dtype).reshape(-1, a.shape[1])


def from_nhwc_rows(rows, shape):
    """The (N, C, H, W) channels-last view of (N * H * W, C) ``rows``."""
    N, C, H, W = shape
    return rows.reshape(N, H, W, C).transpose(0, 3, 1, 2)


def flat_like(a, like, dtype):
    """``a`` (of ``like``'s shape) as a contiguous 1-D array in ``like``'s memory order: channels-last
    when ``like`` is, else C order. A view when ``a`` already is so laid out, else a copy."""
    if channels_last(like):
        return nhwc_rows(a, dtype).reshape(-1)
    return np.ascontiguousarray(a, dtype).reshape(-1)


def empty_in_layout(like, dtype):
    """A new array of ``like``'s shape in its layout (channels-last or C order), and its 1-D view
    in memory order, for the elementwise kernels."""
    if channels_last(like):
        rows = np.empty((like.size // like.shape[1], like.shape[1]), dtype)
        return from_nhwc_rows(rows, like.shape), rows.reshape(-1)
    out = np.empty(np.shape(like), dtype)
    return out, out.reshape(-1)
