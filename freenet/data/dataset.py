"""Datasets: indexable collections of examples, and the batching rule the DataLoader uses."""

import numpy as np

from freenet.errors import FreenetError
from freenet.factory import from_numpy
from freenet.tensor import Tensor


class Dataset:
    """A sized, indexable collection: ``dataset[i]`` is one example, a tuple of fields (or a single value).

    Subclasses define ``__len__`` and ``__getitem__``. A subclass that can fetch many examples at once
    (say with fancy indexing) overrides ``get_batch(indices)``; the default fetches them one by one.
    """

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def get_batch(self, indices):
        """The examples at ``indices`` (an int64 array) stacked per field: a tuple of ndarrays."""
        return collate([self[int(i)] for i in indices])


def _field_array(value):
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, float):  # a Python float is float32 in freenet, as in freenet.tensor
        return np.float32(value)
    return np.asarray(value)


def collate(examples):
    """Stacks a list of examples field by field into a tuple of ndarrays (one leading batch axis each).

    An example is a tuple or list of fields, or a single value (which makes a one-field batch).
    """
    if not examples:
        raise FreenetError("collate: no examples to stack")
    rows = [tuple(e) if isinstance(e, (tuple, list)) else (e,) for e in examples]
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise FreenetError(f"collate: examples have different numbers of fields "
                           f"({sorted({len(r) for r in rows})})")
    batch = []
    for f in range(width):
        arrays = [_field_array(r[f]) for r in rows]
        try:
            batch.append(np.stack(arrays))
        except ValueError as e:
            raise FreenetError(f"collate: field {f} cannot be stacked: {e}") from None
    return tuple(batch)


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
            a = t.data if isinstance(t, Tensor) else t
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
