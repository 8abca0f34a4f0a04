"""DataLoader: batches over a dataset, with a seeded shuffle and a resumable position."""

import operator

import numpy as np

from freenet.errors import FreenetError
from freenet.factory import default_generator
from freenet.factory import from_numpy
from freenet.data.dataset import collate

_STATE_VERSION = 1


def epoch_order(seed, epoch, n):
    """The shuffled order of epoch ``epoch``: a permutation of ``range(n)`` that depends only on (seed, epoch)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch])))
    return rng.permutation(n)


def _index(value, name, minimum):
    try:
        value = operator.index(value)
    except TypeError:
        raise FreenetError(f"DataLoader: {name} must be an int, got {type(value).__name__}") from None
    if value < minimum:
        raise FreenetError(f"DataLoader: {name} must be >= {minimum}, got {value}")
    return value


class DataLoader:
    """Iterates over ``dataset`` in batches; each batch is a tuple of freenet Tensors, one per field.

    Each ``for batch in loader`` runs one epoch. With ``shuffle=True`` the order of epoch ``e`` is a
    permutation drawn from NumPy's PCG64 seeded by ``(seed, e)`` only, so it is the same on every run
    and after a resume. With ``seed=None`` the seed is drawn once, at construction, from
    ``freenet.default_generator()`` (so ``freenet.manual_seed`` makes it reproducible); a loader that
    does not shuffle draws nothing.

    ``state_dict()`` gives the position (epoch, batches already yielded in it, seed) as plain values;
    ``load_state_dict(state)`` makes the next iteration continue from exactly that batch. Without a
    loaded state, an iteration abandoned mid-epoch (a ``break``) counts as finished: the next one
    starts the following epoch, as in PyTorch. One iteration at a time: starting a new one ends the
    previous iterator.

    Datasets with a ``get_batch(indices)`` method (``TensorDataset``, ``MNIST``, ``CIFAR10``) are
    gathered with fancy indexing; any other object with ``__len__`` and ``__getitem__`` is stacked
    example by example.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise FreenetError(f"DataLoader: dataset must have __len__ and __getitem__, "
                               f"got {type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = _index(batch_size, "batch_size", 1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if seed is None:
            seed = int(default_generator().integers(2**63)) if self.shuffle else 0
        self.seed = _index(seed, "seed", 0)
        self._epoch = 0
        self._batch = 0          # batches already yielded in epoch self._epoch
        self._resume = False     # a loaded state waits for the next iteration
        self._ticket = 0         # identifies the live iterator

    @property
    def epoch(self):
        """The epoch the next batch belongs to (counting from 0)."""
        return self._epoch

    def __len__(self):
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _order(self, epoch):
        n = len(self.dataset)
        return epoch_order(self.seed, epoch, n) if self.shuffle else np.arange(n, dtype=np.int64)

    def _fetch(self, indices):
        get_batch = getattr(self.dataset, "get_batch", None)
        fields = get_batch(indices) if get_batch is not None else collate([self.dataset[int(i)] for i in indices])
        if not isinstance(fields, tuple):
            fields = (fields,)
        return tuple(from_numpy(np.asarray(f)) for f in fields)

    def __iter__(self):
        if self._batch > 0 and not self._resume:  # the previous iteration was abandoned mid-epoch
            self._epoch, self._batch = self._epoch + 1, 0
        self._resume = False
        self._ticket += 1
        return self._run(self._ticket)

    def _run(self, ticket):
        count, b = len(self), self.batch_size
        self._check(ticket)
        if count == 0:
            self._epoch += 1
            return
        order = self._order(self._epoch)
        while True:
            start = self._batch * b
            batch = self._fetch(order[start:start + b])
            # Advance before yielding: while the loop body runs, state_dict() already counts this batch.
            last = self._batch + 1 == count
            if last:
                self._epoch, self._batch = self._epoch + 1, 0
            else:
                self._batch += 1
            yield batch
            if last:
                return
            self._check(ticket)

    def _check(self, ticket):
        if ticket != self._ticket:
            raise FreenetError("DataLoader: this iterator was ended by a newer iteration over the same loader "
                               "(or by load_state_dict)")

    def state_dict(self):
        """The position as a small dict of plain ints, bools and strings (JSON-friendly)."""
        return {"version": _STATE_VERSION, "epoch": self._epoch, "batch": self._batch, "seed": self.seed,
                "shuffle": self.shuffle, "batch_size": self.batch_size, "drop_last": self.drop_last,
                "dataset_len": len(self.dataset)}

    def load_state_dict(self, state):
        """Sets the position: the next iteration yields batch ``state['batch']`` of epoch ``state['epoch']``.

        The seed is taken from ``state``; shuffle, batch_size, drop_last and the dataset length must match
        this loader, since the position would mean other examples otherwise.
        """
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
        epoch = _index(state["epoch"], "epoch", 0)
        batch = _index(state["batch"], "batch", 0)
        seed = _index(state["seed"], "seed", 0)
        if batch > len(self):
            raise FreenetError(f"DataLoader.load_state_dict: batch {batch} is past the {len(self)} batches of an epoch")
        if batch == len(self):
            epoch, batch = epoch + 1, 0
        self.seed, self._epoch, self._batch = seed, epoch, batch
        self._resume = True
        self._ticket += 1
