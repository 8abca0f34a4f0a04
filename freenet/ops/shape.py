"""Ops that move elements without computing on them: views, joins, padding and indexing."""

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from freenet.errors import FreenetError, op
from freenet.tensor import Tensor, record, view


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
        out = x._data.reshape(shape)
    except ValueError:
        raise FreenetError(f"reshape: cannot reshape {x._data.shape} ({x._data.size} elements) into {shape}") from None
    return view(record(out, (x,), lambda g: (g.reshape(x._data.shape),), saved=()), x)


@op
def transpose(x, dim0, dim1):
    out = np.swapaxes(x._data, dim0, dim1)
    return view(record(out, (x,), lambda g: (np.swapaxes(g, dim0, dim1),), saved=()), x)


@op
def permute(x, *dims):
    dims = normalize_axis_tuple(_shape_arg(dims), x._data.ndim)
    if len(dims) != x._data.ndim:
        raise FreenetError(f"permute: {len(dims)} dims given for a tensor of {x._data.ndim} dims")
    inverse = tuple(np.argsort(dims))
    return view(record(np.transpose(x._data, dims), (x,), lambda g: (np.transpose(g, inverse),), saved=()), x)


def T(x):
    """All dims reversed (the matrix transpose for 2-d tensors)."""
    return permute(x, tuple(range(x._data.ndim - 1, -1, -1)))


@op
def flatten(x, start_dim=0, end_dim=-1):
    if x._data.ndim == 0:
        return reshape(x, 1)
    start, end = normalize_axis_index(start_dim, x._data.ndim), normalize_axis_index(end_dim, x._data.ndim)
    if start > end:
        raise FreenetError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = x._data.shape
    return reshape(x, shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:])


@op
def squeeze(x, dim=None):
    """Drops size-1 dims (all of them, or ``dim`` if it has size 1, as in PyTorch)."""
    if dim is None:
        axes = tuple(i for i, n in enumerate(x._data.shape) if n == 1)
    else:
        axes = tuple(a for a in normalize_axis_tuple(dim, x._data.ndim) if x._data.shape[a] == 1)
    return reshape(x, tuple(n for i, n in enumerate(x._data.shape) if i not in axes))


@op
def unsqueeze(x, dim):
    dim = normalize_axis_index(dim, x._data.ndim + 1)
    return reshape(x, x._data.shape[:dim] + (1,) + x._data.shape[dim:])


@op
def expand(x, *sizes):
    """Broadcast to ``sizes`` without copying; -1 keeps a dim's size."""
    sizes = _shape_arg(sizes)
    lead = len(sizes) - x._data.ndim
    if lead < 0:
        raise FreenetError(f"expand: cannot expand {x._data.shape} to fewer dims {sizes}")
    shape = tuple(x._data.shape[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(sizes))
    return view(record(np.broadcast_to(x._data, shape), (x,), lambda g: (g,), saved=()), x)


@op
def cat(tensors, dim=0):
    """Joins tensors along an existing dim."""
    tensors = _tensors(tensors, "cat")
    out = np.concatenate([t._data for t in tensors], axis=dim)
    axis = normalize_axis_index(dim, out.ndim)
    cuts = np.cumsum([t._data.shape[axis] for t in tensors])[:-1]
    return record(out, tuple(tensors), lambda g: tuple(np.split(g, cuts, axis=axis)), saved=())


@op
def stack(tensors, dim=0):
    """Joins same-shaped tensors along a new dim."""
    tensors = _tensors(tensors, "stack")
    out = np.stack([t._data for t in tensors], axis=dim)
    axis = normalize_axis_index(dim, out.ndim)
    return record(out, tuple(tensors), lambda g: tuple(np.moveaxis(g, axis, 0)), saved=())


def _tensors(tensors, name):
    tensors = list(tensors)
    if not tensors:
        raise FreenetError(f"{name}: needs at least one tensor")
    return [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]


@op
def pad(x, pad, value=0.0):
    """Constant padding as in PyTorch: ``pad = (left, right, top, bottom, ...)`` from the last dim back."""
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) // 2 > x._data.ndim:
        raise FreenetError(f"pad: needs pairs for at most {x._data.ndim} dims, got {pad}")
    if any(p < 0 for p in pad):
        raise FreenetError(f"pad: negative padding {pad} is not supported")
    widths = [(0, 0)] * x._data.ndim
    for i in range(len(pad) // 2):
        widths[x._data.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    out = np.pad(x._data, widths, constant_values=value)
    inner = tuple(slice(lo, n - hi) for (lo, hi), n in zip(widths, out.shape))
    return record(out, (x,), lambda g: (g[inner],), saved=())


def _index_part(part):
    if isinstance(part, Tensor):
        return part._data
    if isinstance(part, list):
        array = np.asarray(part)
        return array.astype(np.intp) if array.size == 0 else array  # [] indexes nothing, as in NumPy
    return part


@op
def getitem(x, index):
    """NumPy indexing: basic (ints, slices, None, ...), integer arrays and boolean masks.

    Gradients scatter back; an index repeated in an integer array accumulates.
    """
    index = _index(index)
    parts = index if isinstance(index, tuple) else (index,)
    repeats_possible = any(isinstance(p, np.ndarray) and p.dtype.kind in "iu" for p in parts)
    out = x._data[index]

    def backward(g):
        gx = np.zeros(x._data.shape, dtype=g.dtype)
        if repeats_possible:
            np.add.at(gx, index, g)
        else:
            gx[index] = g
        return (gx,)

    return view(record(out, (x,), backward, saved=()), x)


def _index(index):
    index = tuple(_index_part(p) for p in index) if isinstance(index, tuple) else _index_part(index)
    for p in index if isinstance(index, tuple) else (index,):
        if isinstance(p, np.ndarray) and p.dtype.kind not in "iub":
            raise FreenetError(f"index: arrays used as indices must be integer or bool, not {p.dtype}")
    return index


@op
def index_put(x, index, value):
    """A copy of ``x`` with ``x[index] = value`` (value broadcast to the indexed shape): what
    ``x[index] = value`` computes when autograd records. Keep integer indices unique: where one repeats,
    the last write wins but every copy of the value gets the gradient."""
    index = _index(index)
    value = value if isinstance(value, Tensor) else Tensor(np.asarray(value, dtype=x._data.dtype))
    out = x._data.copy()
    out[index] = value._data
    written = np.zeros(x._data.shape, dtype=bool)
    written[index] = True

    def backward(g):
        picked = g[index]
        return np.where(written, 0, g), np.broadcast_to(picked, np.broadcast_shapes(picked.shape, value._data.shape))

    return record(out, (x, value), backward, saved=())


def setitem(x, index, value):
    """``x[index] = value`` written straight into x's memory (nothing to record)."""
    x._data[_index(index)] = value._data if isinstance(value, Tensor) else value


@op
def masked_fill(x, mask, value):
    """``x`` with ``value`` where the bool ``mask`` (broadcast to x's shape) is true; no gradient flows there."""
    m = mask._data if isinstance(mask, Tensor) else np.asarray(mask)
    if m.dtype != np.bool_:
        raise FreenetError(f"masked_fill: mask must be bool, not {m.dtype}")
    m = np.broadcast_to(m, x._data.shape)
    fill = value._data if isinstance(value, Tensor) else value
    if isinstance(fill, np.ndarray) and fill.ndim:
        raise FreenetError(f"masked_fill: value must be a number or a 0-d tensor, not shape {fill.shape}")
    out = np.where(m, np.asarray(fill, dtype=x._data.dtype), x._data)
    return record(out, (x,), lambda g: (np.where(m, 0, g),), saved=())


def t(x):
    """The transpose of a matrix (a tensor of at most 2 dims, as in PyTorch)."""
    if x._data.ndim > 2:
        raise FreenetError(f"t: expects a tensor of at most 2 dims, not {x._data.ndim}; use transpose or permute")
    return x if x._data.ndim < 2 else transpose(x, 0, 1)


@op
def repeat(x, *sizes):
    """``x`` tiled ``sizes`` times along each dim (leading new dims allowed), as ``Tensor.repeat``."""
    sizes = _shape_arg(sizes)
    if len(sizes) < x._data.ndim:
        raise FreenetError(f"repeat: needs at least {x._data.ndim} sizes for a {x._data.ndim}-d tensor, got {sizes}")
    shape = (1,) * (len(sizes) - x._data.ndim) + x._data.shape
    out = np.tile(x._data.reshape(shape), sizes)

    def backward(g):  # (r0, s0, r1, s1, ...) summed over the repeats
        split = tuple(n for pair in zip(sizes, shape) for n in pair)
        return (g.reshape(split).sum(axis=tuple(range(0, 2 * len(sizes), 2))).reshape(x._data.shape),)

    return record(out, (x,), backward, saved=())


def split(x, split_size_or_sections, dim=0):
    """Views of ``x`` along ``dim``: pieces of ``split_size`` (the last may be shorter), or of the listed sizes."""
    n = x._data.shape[dim]
    if isinstance(split_size_or_sections, (list, tuple)):
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise FreenetError(f"split: sections {sizes} do not add up to the size {n} of dim {dim}")
    else:
        step = int(split_size_or_sections)
        if step <= 0:
            raise FreenetError(f"split: split_size must be positive, not {step}")
        sizes = [min(step, n - i) for i in range(0, n, step)] or [0]
    axis = normalize_axis_index(dim, x._data.ndim)
    pieces, start = [], 0
    for size in sizes:
        pieces.append(getitem(x, (slice(None),) * axis + (slice(start, start + size),)))
        start += size
    return tuple(pieces)


def chunk(x, chunks, dim=0):
    """``split`` into ``chunks`` pieces of size ceil(n / chunks) (fewer if they run out, as PyTorch)."""
    if chunks <= 0:
        raise FreenetError(f"chunk: chunks must be positive, not {chunks}")
    n = x._data.shape[dim]
    return split(x, max(-(-n // chunks), 1), dim)


@op
def roll(x, shifts, dims=None):
    """Elements shifted cyclically along ``dims`` (the flattened tensor when None)."""
    if dims is None:
        return reshape(roll(reshape(x, -1), shifts, 0), x._data.shape)
    out = np.roll(x._data, shifts, dims)
    back = tuple(-s for s in shifts) if isinstance(shifts, (tuple, list)) else -shifts
    return record(out, (x,), lambda g: (np.roll(g, back, dims),), saved=())


@op
def flip(x, dims):
    dims = normalize_axis_tuple(dims, x._data.ndim)
    return record(np.flip(x._data, dims).copy(), (x,), lambda g: (np.flip(g, dims),), saved=())


def _triangle(keep_lower):
    def triangle(x, diagonal=0):
        """The lower (upper) triangle of the last two dims, the rest zero; the gradient as the mask."""
        if x._data.ndim < 2:
            raise FreenetError(f"{triangle.__name__}: needs at least 2 dims, not {x._data.ndim}")
        rows, cols = x._data.shape[-2:]
        mask = (np.tri(rows, cols, diagonal, dtype=bool) if keep_lower
                else ~np.tri(rows, cols, diagonal - 1, dtype=bool))
        return record(np.where(mask, x._data, 0).astype(x._data.dtype), (x,), lambda g: (np.where(mask, g, 0),),
                      saved=())

    triangle.__name__ = triangle.__qualname__ = "tril" if keep_lower else "triu"
    return op(triangle)


tril, triu = _triangle(True), _triangle(False)


@op
def gather(x, dim, index):
    """``out[i][j] = x[index[i][j]][j]`` for dim 0 (and so on): values picked along ``dim``."""
    idx = index._data if isinstance(index, Tensor) else np.asarray(index)
    if idx.dtype.kind not in "iu":
        raise FreenetError(f"gather: index must hold integers, not {idx.dtype}")
    axis = normalize_axis_index(dim, x._data.ndim)
    if idx.ndim != x._data.ndim:
        raise FreenetError(f"gather: index has {idx.ndim} dims, the input {x._data.ndim}")
    region = tuple(slice(None) if d == axis else slice(0, n) for d, n in enumerate(idx.shape))  # index may be smaller
    out = np.take_along_axis(x._data[region], idx, axis)

    def backward(g):
        gx = np.zeros(x._data.shape, dtype=g.dtype)
        np.add.at(gx[region], _along_axis(idx, axis), g)  # repeated indices accumulate
        return (gx,)

    return record(out, (x,), backward, saved=())


def _along_axis(idx, axis):
    """The fancy index that ``take_along_axis(a, idx, axis)`` uses, for ``np.add.at``."""
    grids = list(np.indices(idx.shape, sparse=True))
    grids[axis] = idx
    return tuple(grids)


def index_select(x, dim, index):
    idx = index._data if isinstance(index, Tensor) else np.asarray(index)
    return getitem(x, (slice(None),) * normalize_axis_index(dim, x._data.ndim) + (idx,))
