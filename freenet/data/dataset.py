"""Datasets: indexable collections of examples, the batching (collate) rules, and splits of a dataset.

The collate rules are PyTorch's ``default_collate``: a batch has the structure of one example, with
each leaf stacked along a new first axis. Python floats become float32 (freenet's rule for Python
floats, where PyTorch makes float64); Python ints become int64 and bools bool, as in PyTorch.
"""

import bisect
import itertools
import math
import numbers
import operator
import warnings
from collections.abc import Mapping
from types import GenericAlias

import numpy as np

from freenet.errors import FreenetError
from freenet.factory import from_numpy
from freenet.tensor import Tensor
from freenet.data.sampler import index_array, rng_from


class Dataset:
    """A sized, indexable collection: ``dataset[i]`` is one example (a value, a tuple of fields, a dict...).

    Subclasses define ``__len__`` and ``__getitem__``. A subclass that can fetch many examples at once
    (say with fancy indexing) overrides ``get_batch(indices)``; the default fetches them one by one
    (through ``__getitems__`` if the subclass has one, as PyTorch) and collates them.
    ``a + b`` is ``ConcatDataset([a, b])``. ``Dataset[T]`` is allowed in class statements and type hints,
    as PyTorch's Dataset is generic.
    """

    __class_getitem__ = classmethod(GenericAlias)

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __add__(self, other):
        return ConcatDataset([self, other])

    def get_batch(self, indices):
        """The examples at ``indices`` (an int64 array) collated by ``collate``: ndarrays at the leaves."""
        many = getattr(self, "__getitems__", None)
        rows = [int(i) for i in indices]
        return collate(many(rows) if many is not None else [self[i] for i in rows])


# -- collate ------------------------------------------------------------------------------------------

def collate(examples):
    """Stacks a list of examples into one batch with the structure of an example, ndarrays at the leaves.

    Dicts give a dict of batches, tuples a tuple and lists a list (namedtuples keep their type), nested
    to any depth; Tensors, ndarrays and NumPy scalars are stacked; Python ints give int64, floats
    float32 and bools bool; strings give a list of strings. Anything else, or leaves of different
    shapes, raise a FreenetError naming the field (``[1]['image']``) and the types or shapes.
    """
    if isinstance(examples, (str, bytes, Mapping)) or not hasattr(examples, "__len__"):
        raise FreenetError(f"collate: expected a list of examples, got {type(examples).__name__}")
    examples = list(examples)
    if not examples:
        raise FreenetError("collate: no examples to stack")
    return _collate(examples, "")


def default_collate(batch):
    """PyTorch's ``default_collate``: ``collate`` with freenet Tensors at the leaves."""
    return _tensors(collate(batch))


def default_convert(data):
    """PyTorch's ``default_convert`` (the loader's rule when ``batch_size=None``): ndarrays and NumPy
    scalars become Tensors, inside dicts, tuples and lists too; anything else is returned unchanged."""
    if isinstance(data, np.ndarray) and data.dtype.kind not in "OSUV":
        return from_numpy(data)
    if isinstance(data, np.generic) and data.dtype.kind in "biufc":
        return from_numpy(np.asarray(data))
    if isinstance(data, (Mapping, tuple, list)):
        return _rebuild(data, map(default_convert, data.values() if isinstance(data, Mapping) else data))
    return data


def _tensors(batch):
    """``batch`` with each ndarray leaf wrapped as a Tensor (sharing memory); other leaves unchanged."""
    if isinstance(batch, np.ndarray):
        return from_numpy(batch)
    if isinstance(batch, (Mapping, tuple, list)):
        return _rebuild(batch, map(_tensors, batch.values() if isinstance(batch, Mapping) else batch))
    return batch


def _rebuild(template, values):
    """A container like ``template`` (dict, namedtuple, tuple, list) holding ``values`` in its order."""
    values = list(values)
    if isinstance(template, Mapping):
        out = dict(zip(template.keys(), values))
        if type(template) is dict:
            return out
        try:
            return type(template)(out)
        except TypeError:
            return out
    if isinstance(template, tuple):
        return type(template)(*values) if hasattr(template, "_fields") else tuple(values)
    return values


def _where(path):
    return f"field {path}" if path else "the examples"


def _collate(values, path):
    first = values[0]
    if isinstance(first, Mapping):
        return _collate_mappings(values, path)
    if isinstance(first, (tuple, list)):
        return _collate_sequences(values, path)
    if isinstance(first, (str, bytes)):
        return _collate_strings(values, path)
    return _stack(values, path)


def _mismatch(values, path, k, what):
    return FreenetError(f"collate: {_where(path)} is a {type(values[0]).__name__} in example 0 but a "
                        f"{type(values[k]).__name__} in example {k}{what}")


def _collate_mappings(values, path):
    keys = list(values[0])
    for k, v in enumerate(values):
        if not isinstance(v, Mapping):
            raise _mismatch(values, path, k, "")
        if len(v) != len(keys) or any(key not in v for key in keys):
            raise FreenetError(f"collate: {_where(path)} has keys {keys} in example 0 but {list(v)} in example {k}")
    fields = [_collate([v[key] for v in values], f"{path}[{key!r}]") for key in keys]
    return _rebuild(values[0], fields)


def _collate_sequences(values, path):
    width = len(values[0])
    for k, v in enumerate(values):
        if not isinstance(v, (tuple, list)):
            raise _mismatch(values, path, k, "")
        if len(v) != width:
            raise FreenetError(f"collate: {_where(path)} has {width} fields in example 0 but {len(v)} "
                               f"in example {k}")
    fields = [_collate([v[f] for v in values], f"{path}[{f}]") for f in range(width)]
    return _rebuild(values[0], fields)


def _collate_strings(values, path):
    for k, v in enumerate(values):
        if not isinstance(v, (str, bytes)):
            raise _mismatch(values, path, k, "")
    return list(values)


_PYTHON_NUMBERS = (bool, int, float)


def _stack(values, path):
    if all(isinstance(v, _PYTHON_NUMBERS) and not isinstance(v, np.generic) for v in values):
        return _numbers(values, path)
    arrays = [_leaf(v, k, path) for k, v in enumerate(values)]
    for k, a in enumerate(arrays):
        if a.shape != arrays[0].shape:
            raise FreenetError(f"collate: {_where(path)} cannot be stacked: example 0 has shape {arrays[0].shape} "
                               f"but example {k} has shape {a.shape}")
    return np.stack(arrays)


def _numbers(values, path):
    """Python numbers: all bools give bool, ints (and bools) int64, and any float makes the field float32."""
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.bool_)
    try:
        if any(isinstance(v, float) for v in values):
            return np.asarray(values, dtype=np.float64).astype(np.float32)
        return np.array(values, dtype=np.int64)
    except OverflowError:
        raise FreenetError(f"collate: {_where(path)} holds an int outside int64: "
                           f"{max(values, key=abs)}") from None


def _leaf(value, k, path):
    """One leaf as an ndarray (Tensors share memory), or a FreenetError naming the field and type."""
    if isinstance(value, Tensor):
        array = value._data
    elif isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
    elif isinstance(value, bool):
        array = np.bool_(value)
    elif isinstance(value, int):
        array = _numbers([value], path)[0]
    elif isinstance(value, float):
        array = np.float32(value)
    else:
        raise FreenetError(f"collate: {_where(path)} holds a value of type {type(value).__name__} in example {k}; "
                           "collate batches Tensors, NumPy arrays, Python numbers and strings, in dicts, tuples "
                           "and lists")
    if array.dtype.kind in "OSUV":
        raise FreenetError(f"collate: {_where(path)} holds an array of dtype {array.dtype} in example {k}; "
                           "only numeric and bool arrays can be stacked")
    return np.asarray(array)


# -- datasets -----------------------------------------------------------------------------------------

class IterableDataset(Dataset):
    """A stream of examples: subclasses define ``__iter__`` (and ``__len__`` where the count is known).

    A DataLoader iterates it once per epoch and batches consecutive examples with the same collate rules
    as a map-style dataset; it has no indices, so it takes no ``shuffle``, ``sampler`` or
    ``batch_sampler``. ``a + b`` of two iterable datasets is ``ChainDataset([a, b])``.
    """

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __len__(self):
        # A TypeError, as for an object without __len__ (so ``list(dataset)`` and ``len(loader)`` behave as
        # in PyTorch); a subclass that knows its length defines __len__.
        raise TypeError(f"object of type '{type(self).__name__}' has no len()")

    def __add__(self, other):
        return ChainDataset([self, other])


class ChainDataset(IterableDataset):
    """The examples of several iterable datasets one stream after the other (``a + b`` for two)."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        for k, d in enumerate(self.datasets):
            if not isinstance(d, IterableDataset):
                raise FreenetError(f"ChainDataset: dataset {k} is a {type(d).__name__}, not an IterableDataset "
                                   "(join map-style datasets with ConcatDataset)")

    def __iter__(self):
        for d in self.datasets:
            yield from d

    def __len__(self):
        return sum(len(d) for d in self.datasets)


class TensorDataset(Dataset):
    """Examples taken along the first axis of one or more tensors (or ndarrays) of the same length.

    ``dataset[i]`` is a tuple of tensors (views of row ``i``); ``get_batch`` gathers many rows with one
    fancy-indexing call per field, so batching costs no Python loop over examples.

    >>> import numpy as np
    >>> ds = TensorDataset(np.zeros((5, 2), np.float32), np.arange(5))
    >>> len(ds), ds[3][1].item()
    (5, 3)
    """

    def __init__(self, *tensors):
        if not tensors:
            raise FreenetError("TensorDataset: needs at least one tensor")
        arrays = []
        for k, t in enumerate(tensors):
            a = t._data if isinstance(t, Tensor) else t
            if not isinstance(a, np.ndarray):
                raise FreenetError(f"TensorDataset: argument {k} is a {type(t).__name__}, "
                                   "not a Tensor or ndarray")
            if a.ndim == 0:
                raise FreenetError(f"TensorDataset: argument {k} is 0-d; each tensor needs a first "
                                   "(example) axis")
            arrays.append(a)
        lengths = [a.shape[0] for a in arrays]
        if len(set(lengths)) != 1:
            shapes = ", ".join(str(a.shape) for a in arrays)
            raise FreenetError(f"TensorDataset: tensors must agree in their first dimension, got shapes {shapes}")
        self.arrays = tuple(arrays)
        self.tensors = tuple(from_numpy(a) for a in arrays)

    def __len__(self):
        return self.arrays[0].shape[0]

    def __getitem__(self, index):
        n = len(self)
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {n} examples")
        return tuple(from_numpy(np.asarray(a[i])) for a in self.arrays)

    def get_batch(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        return tuple(np.take(a, indices, axis=0) for a in self.arrays)


class Subset(Dataset):
    """The examples of ``dataset`` at ``indices``, in that order: ``subset[i]`` is ``dataset[indices[i]]``.

    Batches keep the fast path of the underlying dataset: ``get_batch`` maps the indices and calls the
    dataset's own ``get_batch``.
    """

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = indices
        self._rows = index_array(indices, "Subset")
        n = len(dataset)
        bad = np.flatnonzero((self._rows < -n) | (self._rows >= n))
        if bad.size:
            raise FreenetError(f"Subset: index {self._rows[bad[0]]} (at position {bad[0]}) is out of range "
                               f"for a dataset of {n} examples")

    def __len__(self):
        return len(self._rows)

    def __getitem__(self, index):
        try:
            row = self._rows[operator.index(index)]
        except IndexError:
            raise IndexError(f"Subset: index {index} out of range for {len(self)} examples") from None
        return self.dataset[int(row)]

    def get_batch(self, indices):
        base = getattr(self.dataset, "get_batch", None)
        if base is None:
            return super().get_batch(indices)
        return base(self._rows[np.asarray(indices, dtype=np.int64)])


class ConcatDataset(Dataset):
    """The examples of several datasets one after the other (``a + b`` for two)."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise FreenetError("ConcatDataset: needs at least one dataset")
        for k, d in enumerate(self.datasets):
            if isinstance(d, IterableDataset):
                raise FreenetError(f"ConcatDataset: dataset {k} is an IterableDataset ({type(d).__name__}); "
                                   "chain iterable datasets with ChainDataset")
            if not (hasattr(d, "__len__") and hasattr(d, "__getitem__")):
                raise FreenetError(f"ConcatDataset: dataset {k} is a {type(d).__name__}, without __len__ "
                                   "and __getitem__")
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, index):
        n, i = len(self), operator.index(index)
        if not -n <= i < n:
            raise IndexError(f"ConcatDataset: index {index} out of range for {n} examples")
        i %= n
        d = bisect.bisect_right(self.cumulative_sizes, i)
        return self.datasets[d][i - (self.cumulative_sizes[d - 1] if d else 0)]


# -- random_split -------------------------------------------------------------------------------------

def random_split(dataset, lengths, generator=None):
    """Splits ``dataset`` into non-overlapping random ``Subset``s of the given lengths, as PyTorch.

    ``lengths`` are ints summing to ``len(dataset)``, or fractions summing to 1 (each split gets
    ``floor(n * fraction)`` examples, and the remainder goes one by one to the first splits). The
    permutation is drawn from ``generator``: None means freenet's default generator (so
    ``freenet.manual_seed`` makes the split reproducible), an int seeds a fresh one, and a
    ``numpy.random.Generator`` is used as it is.
    """
    n = len(dataset)
    sizes = _split_sizes(lengths, n)
    order = rng_from(generator, "random_split").permutation(n).tolist()
    ends = list(itertools.accumulate(sizes))
    return [Subset(dataset, order[end - size:end]) for end, size in zip(ends, sizes)]


def _split_sizes(lengths, n):
    if isinstance(lengths, (str, bytes, Mapping)) or not hasattr(lengths, "__iter__"):
        raise FreenetError(f"random_split: lengths must be a sequence of ints or fractions, "
                           f"got {type(lengths).__name__}")
    lengths = list(lengths)
    for k, v in enumerate(lengths):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise FreenetError(f"random_split: lengths must be ints or fractions, got {v!r} at index {k}")
    total = sum(lengths)
    if lengths and math.isclose(total, 1) and total <= 1:
        return _fraction_sizes(lengths, n)
    if not all(isinstance(v, numbers.Integral) for v in lengths):
        raise FreenetError(f"random_split: fractions must sum to 1, got {lengths} (sum {total})")
    sizes = [operator.index(v) for v in lengths]
    if any(s < 0 for s in sizes):
        raise FreenetError(f"random_split: lengths must not be negative, got {sizes}")
    if sum(sizes) != n:
        raise FreenetError(f"random_split: lengths {sizes} sum to {sum(sizes)} but the dataset has {n} examples")
    return sizes


def _fraction_sizes(fractions, n):
    for k, f in enumerate(fractions):
        if not 0 <= f <= 1:
            raise FreenetError(f"random_split: fraction at index {k} is not between 0 and 1 (got {f})")
    sizes = [math.floor(n * f) for f in fractions]
    for k in range(n - sum(sizes)):
        sizes[k % len(sizes)] += 1
    for k, s in enumerate(sizes):
        if s == 0:
            warnings.warn(f"random_split: the split at index {k} is empty", stacklevel=4)
    return sizes
