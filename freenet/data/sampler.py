"""Samplers: the orders in which a DataLoader visits a dataset, with PyTorch's classes and arguments.

The random samplers differ from PyTorch's in one way, so that runs are reproducible and resumable:
each holds a ``seed`` (drawn once, at construction, from ``freenet.default_generator()`` unless a
generator or int seed is given), and the order of its pass ``e`` is a function of ``(seed, e)`` only,
drawn from NumPy's PCG64. Each ``iter()`` starts the next pass, as PyTorch draws a new order;
``set_epoch(e)`` chooses the pass (a DataLoader does this for the sampler it drives).
"""

import operator
from types import GenericAlias

import numpy as np

from freenet.errors import FreenetError
from freenet.factory import default_generator
from freenet.tensor import Tensor


def epoch_rng(seed, epoch):
    """The generator of pass ``epoch`` of a sampler seeded with ``seed``: PCG64 seeded by (seed, epoch) only."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch])))


def epoch_order(seed, epoch, n):
    """The shuffled order of epoch ``epoch``: a permutation of ``range(n)`` that depends only on (seed, epoch)."""
    return epoch_rng(seed, epoch).permutation(n)


def count(value, who, name, minimum):
    """``value`` as an int >= ``minimum``, or a FreenetError naming ``who`` and ``name`` (bools are refused)."""
    if isinstance(value, (bool, np.bool_)):
        raise FreenetError(f"{who}: {name} must be an int, got a bool ({value})")
    try:
        value = operator.index(value)
    except TypeError:
        raise FreenetError(f"{who}: {name} must be an int, got {type(value).__name__}") from None
    if value < minimum:
        raise FreenetError(f"{who}: {name} must be >= {minimum}, got {value}")
    return value


def flag(value, who, name):
    """``value`` if it is a bool, else a FreenetError (PyTorch refuses other truthy values too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise FreenetError(f"{who}: {name} must be a bool, got {value!r}")
    return bool(value)


def seed_from(generator, who):
    """An int seed from ``generator``: None draws one from freenet's default generator (so
    ``freenet.manual_seed`` fixes it), an int is the seed itself, and a NumPy-style generator (anything
    with an ``integers`` method, such as ``numpy.random.Generator``) gives one draw."""
    if generator is None:
        return int(default_generator().integers(2**63))
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, (bool, np.bool_)):
        return count(generator, who, "generator (an int seed)", 0)
    if callable(getattr(generator, "integers", None)):
        return int(generator.integers(2**63))
    raise FreenetError(f"{who}: generator must be None, an int seed or a numpy.random.Generator, "
                       f"got {type(generator).__name__}")


def rng_from(generator, who):
    """A NumPy-style generator to draw from: None is freenet's default generator (advanced by the draw, as
    PyTorch advances its own), an int seeds a new PCG64, and a ``numpy.random.Generator`` (or anything with
    ``permutation`` and ``integers`` methods) is used as it is."""
    if generator is None:
        return default_generator()
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, (bool, np.bool_)):
        return np.random.Generator(np.random.PCG64(count(generator, who, "generator (an int seed)", 0)))
    if callable(getattr(generator, "permutation", None)) and callable(getattr(generator, "integers", None)):
        return generator
    raise FreenetError(f"{who}: generator must be None, an int seed or a numpy.random.Generator, "
                       f"got {type(generator).__name__}")


def index_array(indices, who, name="indices"):
    """``indices`` (a sequence, ndarray or Tensor of ints) as a 1-d int64 array."""
    data = indices._data if isinstance(indices, Tensor) else indices
    try:
        array = np.asarray(data)
    except (TypeError, ValueError) as e:
        raise FreenetError(f"{who}: {name} must be a sequence of ints ({e})") from None
    if array.size == 0:
        return np.zeros(0, np.int64)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise FreenetError(f"{who}: {name} must be a 1-d sequence of ints, got shape {array.shape} "
                           f"dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


class Sampler:
    """An iterable of dataset indices (or, for a batch sampler, of lists of indices).

    Subclasses define ``__iter__`` and, where the count is known, ``__len__``. ``Sampler[int]`` is allowed
    in class statements and type hints, as PyTorch's Sampler is generic.
    """

    __class_getitem__ = classmethod(GenericAlias)

    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


class SequentialSampler(Sampler):
    """Indices ``0, 1, ..., len(data_source) - 1`` in order."""

    def __init__(self, data_source):
        self.data_source = data_source

    def order(self):
        """The indices of one pass, as an int64 array."""
        return np.arange(len(self.data_source), dtype=np.int64)

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class SeededSampler(Sampler):
    """A random sampler whose pass ``e`` depends only on ``(seed, e)``: reproducible and resumable."""

    def __init__(self, generator, who):
        self.generator = generator
        self.seed = seed_from(generator, who)
        self.epoch = 0

    def set_epoch(self, epoch):
        """Makes the next ``iter()`` give pass ``epoch`` (as ``DistributedSampler.set_epoch`` in PyTorch)."""
        self.epoch = count(epoch, type(self).__name__, "epoch", 0)

    def order(self):
        """The indices of the current pass as an int64 array; the following call gives the next pass."""
        indices = self._draw(epoch_rng(self.seed, self.epoch))
        self.epoch += 1
        return indices

    def _draw(self, rng):
        raise NotImplementedError

    def __iter__(self):
        return iter(self.order().tolist())


class RandomSampler(SeededSampler):
    """Random indices into ``data_source``: a permutation per pass, or ``num_samples`` draws.

    Without replacement, ``num_samples`` larger than the dataset gives whole permutations followed by
    the start of another (as PyTorch). With ``replacement=True`` it draws ``num_samples`` indices
    uniformly. ``num_samples`` defaults to the dataset's length, read at each pass.
    """

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        self.data_source = data_source
        self.replacement = flag(replacement, "RandomSampler", "replacement")
        self._num_samples = None if num_samples is None else count(num_samples, "RandomSampler", "num_samples", 1)
        super().__init__(generator, "RandomSampler")

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def _draw(self, rng):
        n, k = len(self.data_source), self.num_samples
        if k and not n:
            raise FreenetError(f"RandomSampler: cannot draw {k} samples from an empty dataset")
        if self.replacement:
            return rng.integers(0, n, size=k, dtype=np.int64)
        whole = [rng.permutation(n) for _ in range(k // n)] if n else []
        part = rng.permutation(n)[:k % n] if n and k % n else np.zeros(0, np.int64)
        return np.concatenate(whole + [part]).astype(np.int64, copy=False)

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(SeededSampler):
    """The given ``indices`` in a random order (a new permutation each pass), without replacement."""

    def __init__(self, indices, generator=None):
        self.indices = indices
        self._rows = index_array(indices, "SubsetRandomSampler")
        super().__init__(generator, "SubsetRandomSampler")

    def _draw(self, rng):
        return self._rows[rng.permutation(len(self._rows))]

    def __len__(self):
        return len(self._rows)


class WeightedRandomSampler(SeededSampler):
    """``num_samples`` indices in ``[0, len(weights))``, index ``i`` drawn with probability proportional to
    ``weights[i]``; with ``replacement=False`` each index appears at most once per pass."""

    def __init__(self, weights, num_samples, replacement=True, generator=None):
        who = "WeightedRandomSampler"
        self.num_samples = count(num_samples, who, "num_samples", 1)
        self.replacement = flag(replacement, who, "replacement")
        self.weights = _weights(weights, who)
        positive = int(np.count_nonzero(self.weights))
        if not self.replacement and self.num_samples > positive:
            raise FreenetError(f"{who}: cannot draw {self.num_samples} samples without replacement from "
                               f"{positive} non-zero weights")
        super().__init__(generator, who)

    def _draw(self, rng):
        p = self.weights / self.weights.sum()
        return rng.choice(len(p), size=self.num_samples, replace=self.replacement, p=p).astype(np.int64)

    def __len__(self):
        return self.num_samples


def _weights(weights, who):
    data = weights._data if isinstance(weights, Tensor) else weights
    try:
        w = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise FreenetError(f"{who}: weights must be numbers ({e})") from None
    if w.ndim != 1:
        raise FreenetError(f"{who}: weights should be a 1d sequence but given weights have shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise FreenetError(f"{who}: weights must be finite and non-negative with a positive sum")
    return w


def fast_order(sampler):
    """``sampler.order`` (the whole pass as one array) when ``sampler`` is one of freenet's samplers that
    iterates over exactly that array, else None (a subclass with its own ``__iter__`` is iterated)."""
    if type(sampler).__iter__ in (SequentialSampler.__iter__, SeededSampler.__iter__):
        return sampler.order
    return None


class BatchSampler(Sampler):
    """Groups the indices of ``sampler`` (any iterable of ints) into lists of ``batch_size``; with
    ``drop_last`` a short final batch is left out."""

    def __init__(self, sampler, batch_size, drop_last):
        self.sampler = sampler
        self.batch_size = count(batch_size, "BatchSampler", "batch_size", 1)
        self.drop_last = flag(drop_last, "BatchSampler", "drop_last")

    def batches(self, skip=0):
        """The batches of one pass as int64 arrays, leaving out the first ``skip`` (for a resume)."""
        order = fast_order(self.sampler)
        if order is None:
            for k, batch in enumerate(self._lists()):
                if k >= skip:
                    yield np.asarray(batch, dtype=np.int64)
            return
        indices, b = order(), self.batch_size
        end = len(indices) - len(indices) % b if self.drop_last else len(indices)
        for start in range(skip * b, end, b):
            yield indices[start:start + b]

    def _lists(self):
        batch = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __iter__(self):
        if fast_order(self.sampler) is None:
            return self._lists()
        return (batch.tolist() for batch in self.batches())

    def __len__(self):
        n, b = len(self.sampler), self.batch_size
        return n // b if self.drop_last else -(-n // b)
