"""DataLoader: batches over a dataset with PyTorch's arguments, a seeded shuffle and a resumable position."""

import itertools
import numbers

import numpy as np

from freenet.errors import FreenetError
from freenet.data.dataset import IterableDataset, _tensors, default_collate, default_convert
from freenet.data.sampler import (BatchSampler, RandomSampler, Sampler, SeededSampler, SequentialSampler, count,
                                  epoch_order, fast_order, seed_from)

__all__ = ["DataLoader", "epoch_order", "get_worker_info"]

_STATE_VERSION = 1
_END = object()


def get_worker_info():
    """None, as in PyTorch's main process: freenet's loader has no worker processes."""
    return None


class DataLoader:
    """Iterates over ``dataset`` in batches, with PyTorch's arguments and batches.

    A batch has the structure of one example (see ``default_collate``): a dataset whose items are tuples
    gives tuples of Tensors, one of dicts gives dicts, and one whose items are single arrays gives single
    Tensors. ``collate_fn`` replaces that rule (it gets the list of examples); ``batch_size=None`` turns
    batching off (each item is converted by ``default_convert``, or by ``collate_fn``).

    The order comes from ``sampler`` (default: in order, or ``RandomSampler`` with ``shuffle=True``)
    grouped by ``batch_sampler`` (default: ``BatchSampler(sampler, batch_size, drop_last)``); as in
    PyTorch, ``sampler`` excludes ``shuffle=True``, and ``batch_sampler`` excludes ``batch_size``,
    ``shuffle``, ``sampler`` and ``drop_last``.

    Each ``for batch in loader`` runs one epoch. With ``shuffle=True`` the order of epoch ``e`` is a
    permutation drawn from NumPy's PCG64 seeded by ``(seed, e)`` only, so it is the same on every run,
    whatever the thread count, and after a resume. The seed is ``seed``, or else one draw from
    ``generator`` (an int is the seed itself), or else one draw, at construction, from
    ``freenet.default_generator()`` (so ``freenet.manual_seed`` makes it reproducible); a loader that
    does not shuffle draws nothing. A freenet random sampler given as ``sampler`` is driven the same way:
    epoch ``e`` of the loader is pass ``e`` of the sampler.

    ``state_dict()`` gives the position (epoch, batches already yielded in it, seed) as plain values;
    ``load_state_dict(state)`` makes the next iteration continue from exactly that batch (with a sampler
    of one's own, provided it repeats its order). Without a loaded state, an iteration abandoned
    mid-epoch (a ``break``) counts as finished: the next one starts the following epoch, as in PyTorch.
    One iteration at a time: starting a new one ends the previous iterator.

    ``num_workers``, ``prefetch_factor``, ``persistent_workers``, ``timeout``, ``pin_memory``,
    ``pin_memory_device``, ``multiprocessing_context``, ``worker_init_fn`` and ``in_order`` are checked as
    PyTorch checks them and otherwise have no effect: batches are always made in this process, in the
    same order and with the same contents as with ``num_workers=0`` (so ``worker_init_fn`` is never
    called, and ``get_worker_info()`` is None).

    With the default collate, datasets with a ``get_batch(indices)`` method (``TensorDataset``,
    ``Subset``, ``MNIST``, ``CIFAR10``) are gathered with fancy indexing; any other object with
    ``__len__`` and ``__getitem__`` is fetched example by example.

    An ``IterableDataset`` is iterated once per epoch, its consecutive examples grouped by ``batch_size``
    (the short last batch left out with ``drop_last``) and collated as above; ``batch_size=None`` converts
    each example alone. As in PyTorch it refuses ``shuffle=True``, ``sampler`` and ``batch_sampler``, and
    ``len(loader)`` needs the dataset's ``__len__`` (rounded up, or down with ``drop_last``, to batches).
    Its position cannot be saved: ``state_dict`` and ``load_state_dict`` need a map-style dataset.
    """

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False,
                 pin_memory_device="", in_order=True, seed=None):
        self._iterable = isinstance(dataset, IterableDataset)
        if not self._iterable and not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise FreenetError(f"DataLoader: dataset must have __len__ and __getitem__, or be an IterableDataset, "
                               f"got {type(dataset).__name__}")
        self.dataset = dataset
        if self._iterable:
            _iterable_options(shuffle, sampler, batch_sampler)
        self._workers(num_workers, timeout, prefetch_factor, persistent_workers, multiprocessing_context)
        self.pin_memory, self.pin_memory_device, self.in_order = bool(pin_memory), pin_memory_device, in_order
        self.worker_init_fn, self.generator = worker_init_fn, generator
        self.shuffle = bool(shuffle)
        batch_size, drop_last = self._batching(batch_size, sampler, batch_sampler, drop_last)
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler, self._seed = self._default_sampler(sampler, seed, generator)
        if batch_sampler is None and batch_size is not None:
            batch_sampler = BatchSampler(self.sampler, batch_size, drop_last)
        self.batch_sampler = batch_sampler
        self._seeded = self._driven_sampler()
        auto = batch_sampler is not None
        self.collate_fn = collate_fn if collate_fn is not None else (default_collate if auto else default_convert)
        self._fast = (auto and not self._iterable and self.collate_fn is default_collate
                      and callable(getattr(dataset, "get_batch", None)))
        self._epoch = 0
        self._batch = 0          # batches already yielded in epoch self._epoch
        self._resume = False     # a loaded state waits for the next iteration
        self._ticket = 0         # identifies the live iterator

    # -- construction -------------------------------------------------------------------------------

    def _workers(self, num_workers, timeout, prefetch_factor, persistent_workers, multiprocessing_context):
        """Checks the worker options as PyTorch does; they are kept as attributes only."""
        self.num_workers = count(num_workers, "DataLoader", "num_workers", 0)
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout >= 0:
            raise FreenetError(f"DataLoader: timeout must be a non-negative number, got {timeout!r}")
        if prefetch_factor is not None:
            if self.num_workers == 0:
                raise FreenetError("DataLoader: prefetch_factor can only be given with num_workers > 0 "
                                   "(as in PyTorch)")
            prefetch_factor = count(prefetch_factor, "DataLoader", "prefetch_factor", 0)
        if persistent_workers and self.num_workers == 0:
            raise FreenetError("DataLoader: persistent_workers needs num_workers > 0 (as in PyTorch)")
        if multiprocessing_context is not None and self.num_workers == 0:
            raise FreenetError("DataLoader: multiprocessing_context needs num_workers > 0 (as in PyTorch)")
        self.timeout, self.persistent_workers = timeout, bool(persistent_workers)
        self.multiprocessing_context = multiprocessing_context
        self.prefetch_factor = 2 if prefetch_factor is None and self.num_workers > 0 else prefetch_factor

    def _batching(self, batch_size, sampler, batch_sampler, drop_last):
        """(batch_size, drop_last) after PyTorch's exclusions; batch_size None means no automatic batching."""
        if sampler is not None and self.shuffle:
            raise FreenetError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or self.shuffle or sampler is not None or drop_last:
                raise FreenetError("DataLoader: batch_sampler option is mutually exclusive with batch_size, "
                                   "shuffle, sampler, and drop_last")
            return None, False
        if batch_size is None:
            if drop_last:
                raise FreenetError("DataLoader: batch_size=None disables batching and is mutually exclusive "
                                   "with drop_last")
            return None, False
        return count(batch_size, "DataLoader", "batch_size", 1), bool(drop_last)

    def _default_sampler(self, sampler, seed, generator):
        """(sampler, seed): the given sampler, or a seeded RandomSampler (shuffle) or a SequentialSampler."""
        if seed is not None and generator is not None:
            raise FreenetError("DataLoader: give seed or generator, not both")
        if seed is not None:
            seed = count(seed, "DataLoader", "seed", 0)
        if self._iterable:
            return _InfiniteConstantSampler(), (0 if seed is None else seed)
        if sampler is None and self.shuffle:
            seed = seed_from(generator, "DataLoader") if seed is None else seed
            return RandomSampler(self.dataset, generator=seed), seed
        return (SequentialSampler(self.dataset) if sampler is None else sampler), (0 if seed is None else seed)

    def _driven_sampler(self):
        """The freenet random sampler whose passes follow this loader's epochs, or None."""
        inner = self.batch_sampler.sampler if isinstance(self.batch_sampler, BatchSampler) else self.sampler
        return inner if isinstance(inner, SeededSampler) else None

    # -- iteration ----------------------------------------------------------------------------------

    @property
    def seed(self):
        """The seed of the shuffle (of the driven random sampler); 0 for a loader that draws nothing."""
        return self._seeded.seed if self._seeded is not None else self._seed

    @property
    def epoch(self):
        """The epoch the next batch belongs to (counting from 0)."""
        return self._epoch

    def __len__(self):
        if self._iterable:
            return self._stream_length()
        return len(self.batch_sampler if self.batch_sampler is not None else self.sampler)

    def _source(self, skip):
        """The index batches (or, without batching, the indices) of the current epoch after the first ``skip``."""
        if self._seeded is not None:
            self._seeded.set_epoch(self._epoch)
        if self.batch_sampler is not None:
            if type(self.batch_sampler).__iter__ is BatchSampler.__iter__:
                return self.batch_sampler.batches(skip)
            return itertools.islice(iter(self.batch_sampler), skip, None)
        order = fast_order(self.sampler)
        if order is not None:
            return iter(order()[skip:].tolist())
        return itertools.islice(iter(self.sampler), skip, None)

    def _fetch(self, keys):
        """One batch: the examples at ``keys`` collated, or (without batching) the one example converted."""
        if self.batch_sampler is None:
            return self.collate_fn(self.dataset[keys])
        if self._fast:
            rows = _int_rows(keys)
            if rows is not None:
                return _tensors(self.dataset.get_batch(rows))
        keys = keys.tolist() if isinstance(keys, np.ndarray) else list(keys)
        many = getattr(self.dataset, "__getitems__", None)
        return self.collate_fn(many(keys) if many is not None else [self.dataset[k] for k in keys])

    def __iter__(self):
        if self._batch > 0 and not self._resume:  # the previous iteration was abandoned mid-epoch
            self._epoch, self._batch = self._epoch + 1, 0
        self._resume = False
        self._ticket += 1
        return self._stream(self._ticket) if self._iterable else self._run(self._ticket)

    def _run(self, ticket):
        self._check(ticket)
        source = self._source(self._batch)
        keys = next(source, _END)
        if keys is _END:
            self._epoch, self._batch = self._epoch + 1, 0
            return
        while True:
            batch = self._fetch(keys)
            keys = next(source, _END)
            # Advance before yielding: while the loop body runs, state_dict() already counts this batch.
            last = keys is _END
            if last:
                self._epoch, self._batch = self._epoch + 1, 0
            else:
                self._batch += 1
            yield batch
            if last:
                return
            self._check(ticket)

    def _stream(self, ticket):
        """The batches of one pass over an IterableDataset, read as they are needed (no read-ahead)."""
        self._check(ticket)
        items, size = iter(self.dataset), self.batch_size
        while True:
            if size is None:
                item = next(items, _END)
                examples, ended = ([] if item is _END else [item]), item is _END
            else:
                examples = list(itertools.islice(items, size))
                ended = len(examples) < size  # as PyTorch's fetcher, the stream is not read again after its end
            if not examples or (ended and self.drop_last):
                self._epoch, self._batch = self._epoch + 1, 0
                return
            self._batch += 1
            yield self.collate_fn(examples[0] if size is None else examples)
            if ended:
                self._epoch, self._batch = self._epoch + 1, 0
                return
            self._check(ticket)

    def _stream_length(self):
        """``len(loader)`` over an IterableDataset: PyTorch's rule from ``len(dataset)``."""
        try:
            n = len(self.dataset)
        except TypeError:
            raise TypeError(f"DataLoader: len() of a loader over an IterableDataset needs the dataset's __len__, "
                            f"and {type(self.dataset).__name__} has none") from None
        b = self.batch_size
        return n if b is None else n // b if self.drop_last else -(-n // b)

    def _check(self, ticket):
        if ticket != self._ticket:
            raise FreenetError("DataLoader: this iterator was ended by a newer iteration over the same loader "
                               "(or by load_state_dict)")

    # -- position -----------------------------------------------------------------------------------

    def state_dict(self):
        """The position as a small dict of plain ints, bools and strings (JSON-friendly)."""
        self._map_style("state_dict")
        return {"version": _STATE_VERSION, "epoch": self._epoch, "batch": self._batch, "seed": self.seed,
                "shuffle": self.shuffle, "batch_size": self.batch_size, "drop_last": self.drop_last,
                "dataset_len": len(self.dataset)}

    def load_state_dict(self, state):
        """Sets the position: the next iteration yields batch ``state['batch']`` of epoch ``state['epoch']``.

        The seed is taken from ``state``; shuffle, batch_size, drop_last and the dataset length must match
        this loader, since the position would mean other examples otherwise.
        """
        self._map_style("load_state_dict")
        if not isinstance(state, dict):
            raise FreenetError(f"DataLoader.load_state_dict: expected a dict, got {type(state).__name__}")
        missing = [k for k in ("epoch", "batch", "seed") if k not in state]
        if missing:
            raise FreenetError(f"DataLoader.load_state_dict: state lacks {', '.join(missing)}")
        if state.get("version", _STATE_VERSION) != _STATE_VERSION:
            raise FreenetError(f"DataLoader.load_state_dict: unknown state version {state['version']!r}")
        for key, mine in (("shuffle", self.shuffle), ("batch_size", self.batch_size),
                          ("drop_last", self.drop_last), ("dataset_len", len(self.dataset))):
            if key in state and state[key] != mine:
                raise FreenetError(f"DataLoader.load_state_dict: state has {key}={state[key]!r} but this loader "
                                   f"has {mine!r}")
        who = "DataLoader.load_state_dict"
        epoch, batch = count(state["epoch"], who, "epoch", 0), count(state["batch"], who, "batch", 0)
        seed = count(state["seed"], who, "seed", 0)
        per_epoch = _length(self)
        if per_epoch is not None and batch > per_epoch:
            raise FreenetError(f"{who}: batch {batch} is past the {per_epoch} batches of an epoch")
        if batch == per_epoch:
            epoch, batch = epoch + 1, 0
        if self._seeded is not None:
            self._seeded.seed = seed
        else:
            self._seed = seed
        self._epoch, self._batch = epoch, batch
        self._resume = True
        self._ticket += 1

    def _map_style(self, who):
        if self._iterable:
            raise FreenetError(f"DataLoader.{who}: saving and resuming the position needs a map-style dataset "
                               f"(__len__ and __getitem__); {type(self.dataset).__name__} is an IterableDataset, "
                               "whose stream cannot be restarted at a given batch")


class _InfiniteConstantSampler(Sampler):
    """The sampler of a loader over an IterableDataset (as PyTorch's): None forever, the dataset has no keys."""

    def __iter__(self):
        return itertools.repeat(None)


def _iterable_options(shuffle, sampler, batch_sampler):
    """PyTorch's refusals for an IterableDataset: the order is the stream's, so no shuffle or samplers."""
    given = (("shuffle", shuffle, bool(shuffle)), ("sampler", sampler, sampler is not None),
             ("batch_sampler", batch_sampler, batch_sampler is not None))
    for name, value, refused in given:
        if refused:
            raise FreenetError(f"DataLoader with IterableDataset: expected unspecified {name} option, but got "
                               f"{name}={value!r}")


def _length(loader):
    """``len(loader)``, or None when its sampler has no length."""
    try:
        return len(loader)
    except TypeError:
        return None


def _int_rows(keys):
    """``keys`` as a 1-d int64 array when they are integer indices, else None (keys of another kind)."""
    if isinstance(keys, np.ndarray) and keys.dtype == np.int64:
        return keys
    try:
        rows = np.asarray(keys)
    except (TypeError, ValueError):
        return None
    if rows.ndim == 1 and (rows.dtype.kind in "iu" or rows.size == 0):
        return rows.astype(np.int64, copy=False)
    return None
