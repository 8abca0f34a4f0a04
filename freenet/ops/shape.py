"""Ops that move elements without computing on them: views, joins, padding and indexing."""

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from freenet.errors import FreenetError, op
from freenet.tensor import Tensor, record


def _shape_arg(args):
    """``reshape(2, 3)`` and ``reshape((2, 3))`` alike."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


@op
def reshape(x, *shape):
    """The same elements in a new shape (one size may be -1); ``view`` is the same op."""
    shape = _shape_arg(shape)
    try:
        out = x.data.reshape(shape)
    except ValueError:
        raise FreenetError(f"reshape: cannot reshape {x.data.shape} ({x.data.size} elements) into {shape}") from None
    return record(out, (x,), lambda g: (g.reshape(x.data.shape),))


@op
def transpose(x, dim0, dim1):
    out = np.swapaxes(x.data, dim0, dim1)
    return record(out, (x,), lambda g: (np.swapaxes(g, dim0, dim1),))


@op
def permute(x, *dims):
    dims = normalize_axis_tuple(_shape_arg(dims), x.data.ndim)
    if len(dims) != x.data.ndim:
        raise FreenetError(f"permute: {len(dims)} dims given for a tensor of {x.data.ndim} dims")
    inverse = tuple(np.argsort(dims))
    return record(np.transpose(x.data, dims), (x,), lambda g: (np.transpose(g, inverse),))


def T(x):
    """All dims reversed (the matrix transpose for 2-d tensors)."""
    return permute(x, tuple(range(x.data.ndim - 1, -1, -1)))


@op
def flatten(x, start_dim=0, end_dim=-1):
    if x.data.ndim == 0:
        return reshape(x, 1)
    start, end = normalize_axis_index(start_dim, x.data.ndim), normalize_axis_index(end_dim, x.data.ndim)
    if start > end:
        raise FreenetError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = x.data.shape
    return reshape(x, shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:])


@op
def squeeze(x, dim=None):
    """Drops size-1 dims (all of them, or ``dim`` if it has size 1, as in PyTorch)."""
    if dim is None:
        axes = tuple(i for i, n in enumerate(x.data.shape) if n == 1)
    else:
        axes = tuple(a for a in normalize_axis_tuple(dim, x.data.ndim) if x.data.shape[a] == 1)
    return reshape(x, tuple(n for i, n in enumerate(x.data.shape) if i not in axes))


@op
def unsqueeze(x, dim):
    dim = normalize_axis_index(dim, x.data.ndim + 1)
    return reshape(x, x.data.shape[:dim] + (1,) + x.data.shape[dim:])


@op
def expand(x, *sizes):
    """Broadcast to ``sizes`` without copying; -1 keeps a dim's size."""
    sizes = _shape_arg(sizes)
    lead = len(sizes) - x.data.ndim
    if lead < 0:
        raise FreenetError(f"expand: cannot expand {x.data.shape} to fewer dims {sizes}")
    shape = tuple(x.data.shape[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(sizes))
    return record(np.broadcast_to(x.data, shape), (x,), lambda g: (g,))


@op
def cat(tensors, dim=0):
    """Joins tensors along an existing dim."""
    tensors = _tensors(tensors, "cat")
    out = np.concatenate([t.data for t in tensors], axis=dim)
    axis = normalize_axis_index(dim, out.ndim)
    cuts = np.cumsum([t.data.shape[axis] for t in tensors])[:-1]
    return record(out, tuple(tensors), lambda g: tuple(np.split(g, cuts, axis=axis)))


@op
def stack(tensors, dim=0):
    """Joins same-shaped tensors along a new dim."""
    tensors = _tensors(tensors, "stack")
    out = np.stack([t.data for t in tensors], axis=dim)
    axis = normalize_axis_index(dim, out.ndim)
    return record(out, tuple(tensors), lambda g: tuple(np.moveaxis(g, axis, 0)))


def _tensors(tensors, name):
    tensors = list(tensors)
    if not tensors:
        raise FreenetError(f"{name}: needs at least one tensor")
    return [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]


@op
def pad(x, pad, value=0.0):
    """Constant padding as in PyTorch: ``pad = (left, right, top, bottom, ...)`` from the last dim back."""
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) // 2 > x.data.ndim:
        raise FreenetError(f"pad: needs pairs for at most {x.data.ndim} dims, got {pad}")
    if any(p < 0 for p in pad):
        raise FreenetError(f"pad: negative padding {pad} is not supported")
    widths = [(0, 0)] * x.data.ndim
    for i in range(len(pad) // 2):
        widths[x.data.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    out = np.pad(x.data, widths, constant_values=value)
    inner = tuple(slice(lo, n - hi) for (lo, hi), n in zip(widths, out.shape))
    return record(out, (x,), lambda g: (g[inner],))


def _index_part(part):
    if isinstance(part, Tensor):
        return part.data
    if isinstance(part, list):
        array = np.asarray(part)
        return array.astype(np.intp) if array.size == 0 else array  # [] indexes nothing, as in NumPy
    return part


@op
def getitem(x, index):
    """NumPy indexing: basic (ints, slices, None, ...), integer arrays and boolean masks.

    Gradients scatter back; an index repeated in an integer array accumulates.
    """
    index = tuple(_index_part(p) for p in index) if isinstance(index, tuple) else _index_part(index)
    parts = index if isinstance(index, tuple) else (index,)
    for p in parts:
        if isinstance(p, np.ndarray) and p.dtype.kind not in "iub":
            raise FreenetError(f"index: arrays used as indices must be integer or bool, not {p.dtype}")
    repeats_possible = any(isinstance(p, np.ndarray) and p.dtype.kind in "iu" for p in parts)
    out = x.data[index]

    def backward(g):
        gx = np.zeros(x.data.shape, dtype=g.dtype)
        if repeats_possible:
            np.add.at(gx, index, g)
        else:
            gx[index] = g
        return (gx,)

    return record(out, (x,), backward)
