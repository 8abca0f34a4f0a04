"""Lookups by integer index: embedding (rows of a weight matrix) and one_hot."""

import numpy as np

from freenet import kernels
from freenet.errors import FreenetError, op
from freenet.tensor import Tensor, _constant, inplace, no_grad, record


def _indices(input, name):
    """The integer array of ``input`` (a Tensor, an ndarray or a list)."""
    idx = input._data if isinstance(input, Tensor) else np.asarray(input)
    if idx.dtype.kind not in "iu":
        raise FreenetError(f"{name}: indices must be an integer tensor, not {idx.dtype}")
    return idx


def _padding_index(padding_idx, rows, name="embedding"):
    """``padding_idx`` as a row number (a negative one counts from the end), or None."""
    if padding_idx is None:
        return None
    if not -rows <= padding_idx < rows:
        raise FreenetError(f"{name}: padding_idx={padding_idx} must be within num_embeddings={rows}")
    return int(padding_idx) % rows


def _row_norms(rows, norm_type):
    a = np.abs(rows)
    if norm_type == 2:
        return np.sqrt(np.sum(a * a, axis=1))
    if norm_type == 1:
        return np.sum(a, axis=1)
    if norm_type == np.inf:
        return np.max(a, axis=1, initial=0)
    p = np.asarray(norm_type, dtype=rows.dtype)
    return kernels.power(np.sum(kernels.power(a, p), axis=1), 1 / p)


def _renorm(weight, idx, max_norm, norm_type):
    """Scales the rows of ``weight`` that ``idx`` uses to norm at most ``max_norm``, in place (PyTorch's
    ``embedding_renorm_``: the factor is max_norm / (norm + 1e-7))."""
    rows = np.unique(idx)

    def fill(t):
        w = t._data
        norms = _row_norms(w[rows], norm_type)
        over = norms > max_norm
        if over.any():
            hit = rows[over]
            scale = (max_norm / (norms[over] + 1e-7)).astype(w.dtype)
            w[hit] = w[hit] * scale[:, None]

    with no_grad():
        inplace(weight, None, "embedding_renorm_", fast=fill)


_SHORT_RUN = 16


def _sum_rows(flat, g, rows):
    """``np.add.at(zeros((rows, dim)), flat, g)``, several times faster.

    The uses of each row are found by a stable sort. Rows used at most 16 times get the k-th uses of
    all of them added at once, k = 1, 2, ...: the sums of np.add.at, in its order, to the bit. A row
    used more often gets its uses summed by one ``np.add.reduceat`` (the same bits every run too).
    """
    gw = np.zeros((rows, g.shape[1]), dtype=g.dtype)
    if not flat.size:
        return gw
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    first = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    counts = np.diff(np.r_[first, ordered.size])
    short = counts <= _SHORT_RUN
    starts, uses = first[short], counts[short]
    hit = ordered[starts]
    gw[hit] = g[order[starts]]
    for k in range(1, int(uses.max(initial=1))):
        more = uses > k
        gw[hit[more]] += g[order[starts[more] + k]]
    if not short.all():
        starts, uses = first[~short], counts[~short]
        picked = np.concatenate([order[a:a + n] for a, n in zip(starts, uses)])
        gw[ordered[starts]] = np.add.reduceat(g[picked], np.r_[0, np.cumsum(uses)[:-1]], axis=0)
    return gw


@op
def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of ``weight`` (num_embeddings, dim) picked by the integer ``input`` (any shape): the result
    has shape ``input.shape + (dim,)``.

    The weight's gradient adds up over repeated indices (``_sum_rows``); the row ``padding_idx`` gets none.
    ``max_norm`` first rescales (in place, as PyTorch does) the rows used whose ``norm_type``-norm
    exceeds it; ``scale_grad_by_freq`` divides each row's gradient by how often the input uses it.
    """
    idx = _indices(input, "embedding")
    if weight._data.ndim != 2:
        raise FreenetError(f"embedding: weight must be 2-d (num_embeddings, embedding_dim), not shape "
                           f"{weight._data.shape}")
    if sparse:
        raise FreenetError("embedding: sparse gradients are not supported (use sparse=False)")
    rows, dim = weight._data.shape
    padding_idx = _padding_index(padding_idx, rows)
    if idx.size and (idx.min() < 0 or idx.max() >= rows):
        bad = idx[(idx < 0) | (idx >= rows)].flat[0]
        raise FreenetError(f"embedding: index {bad} is out of range for num_embeddings={rows}")
    if not isinstance(input, Tensor):
        idx = idx.copy()  # backward reads the indices: keep them from later changes
    if max_norm is not None:
        _renorm(weight, idx, max_norm, norm_type)
    out = weight._data[idx]

    def backward(g):
        flat = idx.reshape(-1)
        g = g.reshape(-1, dim)
        if scale_grad_by_freq:
            counts = np.bincount(flat, minlength=rows)
            g = g / counts[flat][:, None].astype(g.dtype)
        gw = _sum_rows(flat, g, rows)
        if padding_idx is not None:
            gw[padding_idx] = 0
        return (gw,)

    return record(out, (weight,), backward, saved=(input,) if isinstance(input, Tensor) else ())


@op
def one_hot(tensor, num_classes=-1):
    """int64 tensor of shape ``tensor.shape + (num_classes,)`` with a 1 at each index; ``num_classes=-1``
    takes one more than the largest index. No gradient (as in PyTorch)."""
    t = tensor._data if isinstance(tensor, Tensor) else np.asarray(tensor)
    if t.dtype.kind not in "iu":
        raise FreenetError(f"one_hot: only applicable to index (integer) tensors, not {t.dtype}")
    if num_classes == -1:
        if not t.size:
            raise FreenetError("one_hot: cannot infer the number of classes from an empty tensor")
        num_classes = int(t.max()) + 1
    elif not isinstance(num_classes, (int, np.integer)) or num_classes < 0:
        raise FreenetError(f"one_hot: num_classes must be -1 or a non-negative int, not {num_classes!r}")
    if t.size and t.min() < 0:
        raise FreenetError("one_hot: class values must be non-negative")
    if t.size and t.max() >= num_classes:
        raise FreenetError(f"one_hot: class value {int(t.max())} is not smaller than num_classes={num_classes}")
    out = np.zeros(t.shape + (int(num_classes),), dtype=np.int64)
    np.put_along_axis(out, t[..., None].astype(np.intp), 1, axis=-1)
    return _constant(out)
