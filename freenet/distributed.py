"""Data-parallel work over MPI whose results do not depend on the number of processes.

Work is cut into ``shards``, a number fixed by the run (never by the number of processes K): the rows
of a global batch, or a generation's self-play games. Rank r of K computes the contiguous shards
``shard_range(shards, r, K)``. Gradients are then added along one fixed binary tree over the shards
(``tree_sum``): sum(lo, hi) = sum(lo, mid) + sum(mid, hi) with mid = (lo + hi) // 2. Each rank adds up
the subtrees that lie inside its own range and sends only those; every rank then completes the same
tree from the same pieces. Addition order depends on ``shards`` alone, so K = 1, 2 or 4 processes (and
a run without mpiexec) give the same bits.

Launched by mpiexec, mpirun or srun, ``world()`` is MPI's COMM_WORLD through mpi4py (the ``mpi``
extra); otherwise it is a world of one process and nothing here needs MPI.

    import freenet.distributed as dist
    world = dist.world()
    for images, labels in loader:
        optimizer.zero_grad()
        dist.sharded_backward(model.parameters(), len(labels), shards=4,
                              loss_of=lambda rows: F.cross_entropy(model(images[rows]), labels[rows]))
        optimizer.step()
"""

import os
import time

import numpy as np

from freenet.errors import FreenetError

# Set by the launchers: MPICH and Intel MPI (hydra), Open MPI, PMIx, Slurm's srun.
_LAUNCHER_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_SIZE")
_LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE")
SPIN_SECONDS = 0.1  # a rank waiting for the others checks without pause this long (an exchange of a step),
MAX_SLEEP_SECONDS = 1e-3  # then sleeps between checks, up to this long (waiting for the trainer's turn)

_world = None


class World:
    """The processes of the job: ``rank`` (this one), ``size`` (all), ``comm`` (mpi4py's, None alone)."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()

    @property
    def main(self):
        """True on the rank that writes files and prints (rank 0)."""
        return self.rank == 0

    def abort(self, code=1):
        """Ends every rank of the job (after an error on this one): the others must not wait forever."""
        if self.size > 1:
            self.comm.Abort(code)

    def allgather_arrays(self, mine):
        """Every rank's float array ``mine`` (1-D; lengths may differ): the list of all of them, in rank order."""
        mine = np.ascontiguousarray(mine)
        if self.size == 1:
            return [mine]
        counts = self._allgather_ints(mine.size)
        out = np.empty(sum(counts), mine.dtype)
        self._wait(self.comm.Iallgatherv(mine, [out, counts]))
        return np.split(out, np.cumsum(counts)[:-1])

    def allgather_bytes(self, data):
        """Every rank's ``data`` (bytes): the list of all of them, in rank order."""
        return [a.tobytes() for a in self.allgather_arrays(np.frombuffer(data, np.uint8))]

    def broadcast_bytes(self, data):
        """Rank 0's ``data`` (bytes) on every rank (others pass anything)."""
        if self.size == 1:
            return data
        length = np.array([len(data) if self.main else 0], np.int64)
        self._wait(self.comm.Ibcast(length, root=0))
        buf = np.frombuffer(data, np.uint8).copy() if self.main else np.empty(int(length[0]), np.uint8)
        self._wait(self.comm.Ibcast(buf, root=0))
        return buf.tobytes()

    def sum_int(self, value):
        """The sum over ranks of an integer (exact in any order)."""
        return sum(self._allgather_ints(int(value))) if self.size > 1 else int(value)

    def _allgather_ints(self, value):
        out = np.empty(self.size, np.int64)
        self._wait(self.comm.Iallgather(np.array([value], np.int64), out))
        return [int(v) for v in out]

    def _wait(self, request):
        # A blocking MPI call spins a core at 100% while it waits (MPICH's default): a rank waiting for
        # the trainer would steal a core from it on a small machine. But a message moves on only while
        # both ends call into MPI: sleeping early makes each step's exchange tens of times slower.
        start, pause = time.perf_counter(), 1e-4
        while not request.Test():
            if time.perf_counter() - start > SPIN_SECONDS:
                time.sleep(pause)
                pause = min(2 * pause, MAX_SLEEP_SECONDS)


def world():
    """The job's processes: MPI's COMM_WORLD when a launcher started this one, else a world of one."""
    global _world
    if _world is None:
        _world = World(_mpi_comm() if launched_by_mpi() else None)
    return _world


def current_world():
    """The world if this process has asked for it (``world()``), else None: nothing is started here."""
    return _world


def launched_by_mpi():
    return any(v in os.environ for v in _LAUNCHER_VARIABLES)


def _mpi_comm():
    try:
        from mpi4py import MPI
    except ImportError:
        raise FreenetError("this process was started by an MPI launcher (mpiexec, mpirun or srun), but mpi4py is "
                           "not installed: pip install 'freenet[mpi]'") from None
    return MPI.COMM_WORLD


def local_processes():
    """How many ranks of the job share this machine (1 when not under MPI), from the launcher's variables."""
    for v in _LOCAL_SIZE_VARIABLES:
        if os.environ.get(v, "").isdigit():
            return max(1, int(os.environ[v]))
    return 1


def default_threads():
    """The CPUs of this machine shared among the job's ranks on it."""
    return max(1, (os.cpu_count() or 1) // local_processes())


def check_shards(shards, what="shards"):
    """``shards`` must give every rank at least one."""
    size = world().size
    if shards < size:
        raise FreenetError(f"{size} processes but {shards} {what}: each process computes whole shards, so use "
                           f"--shards {size} or more (the result depends on --shards, never on the processes)")


def shard_range(shards, rank, size):
    """The contiguous shards of ``rank`` among ``size`` processes."""
    return range(rank * shards // size, (rank + 1) * shards // size)


def shard_rows(n, shards):
    """The row slices of a batch of ``n`` rows cut into ``shards`` (the first ones one row longer)."""
    bounds = np.cumsum([0] + [n // shards + (i < n % shards) for i in range(shards)])
    return [slice(int(bounds[i]), int(bounds[i + 1])) for i in range(shards)]


def _subtrees(lo, hi, mine):
    """The maximal nodes (lo, hi) of the shard tree that lie inside the range ``mine``, left to right."""
    if mine.start <= lo and hi <= mine.stop:
        return [(lo, hi)]
    if hi <= mine.start or mine.stop <= lo or hi - lo < 2:
        return []
    mid = (lo + hi) // 2
    return _subtrees(lo, mid, mine) + _subtrees(mid, hi, mine)


def tree_sum(parts, lo, hi):
    """sum(lo, hi) of the shard tree, from ``parts`` {(lo, hi): array} holding a cover of [lo, hi)."""
    if (lo, hi) in parts:
        return parts[(lo, hi)]
    mid = (lo + hi) // 2
    return tree_sum(parts, lo, mid) + tree_sum(parts, mid, hi)


def combine_shards(local, shards):
    """The tree sum over all shards of flat arrays, on every rank, from this rank's ``local`` {shard: array}."""
    w = world()
    mine = shard_range(shards, w.rank, w.size)
    nodes = _subtrees(0, shards, mine)
    pieces = [tree_sum({(s, s + 1): a for s, a in local.items()}, lo, hi) for lo, hi in nodes]
    sent = np.concatenate(pieces) if pieces else np.zeros(0, next(iter(local.values()), np.zeros(0)).dtype)
    parts = {}
    for rank, received in enumerate(w.allgather_arrays(sent)):
        rank_nodes = _subtrees(0, shards, shard_range(shards, rank, w.size))
        for (lo, hi), piece in zip(rank_nodes, np.split(received, len(rank_nodes)) if rank_nodes else []):
            parts[(lo, hi)] = piece
    return tree_sum(parts, 0, shards)


def sharded_backward(model, n, shards, loss_of):
    """Gradients of a global batch of ``n`` rows cut into ``shards``, the same bits for any number of ranks.

    ``loss_of(rows)`` (a slice of the batch) returns the mean loss of those rows as a Tensor, or a pair
    (that loss, a number to add up over the batch, such as the count of correct predictions). This
    rank runs it and ``backward`` for its shards, weighting each loss by its share of the batch, and
    every rank ends with each parameter of ``model`` holding in ``.grad`` the tree sum over all shards.
    Batch norm's running statistics take every shard's update in shard order, on every rank (with
    more than one shard, each shard is normalised by its own statistics: "ghost" batch norm). With
    more than one shard, shard s draws its randomness (dropout) from its own generator, seeded by one
    draw from freenet's default generator and s. Returns the batch's mean loss as a float (with the
    pair: the mean loss and the number's sum).
    """
    import freenet as fn
    from freenet.ops.norm import defer_running_updates

    check_shards(shards)
    params = [p for p in model.parameters() if p.requires_grad]
    dtype = np.result_type(np.float32, *(p.dtype for p in params))
    tracked = [m for m in model.modules() if getattr(m, "running_mean", None) is not None and m.training]
    counted = {id(m): int(m.num_batches_tracked._data) for m in tracked}
    w = world()
    rows = shard_rows(n, shards)
    if tracked and any(r.stop == r.start for r in rows):
        raise FreenetError(f"a batch of {n} rows in {shards} shards leaves one empty, and batch norm needs rows in "
                           "every shard: use fewer shards or a larger batch")
    generator = fn.default_generator()
    base = int(generator.integers(0, 2**63)) if shards > 1 else None  # the same draw on every rank
    after = generator.bit_generator.state
    local, updates, pair = {}, {}, False
    for s in shard_range(shards, w.rank, w.size):
        if rows[s].stop == rows[s].start:  # a short last batch: this shard adds nothing
            local[s] = np.zeros(sum(int(np.prod(p.shape)) for p in params) + 2, dtype)
            continue
        for p in params:
            p.grad = None
        if base is not None:
            generator.bit_generator.state = np.random.PCG64([base, s]).state
        with defer_running_updates() as updates[s]:
            out = loss_of(rows[s])
            pair = isinstance(out, tuple)
            loss, extra = out if pair else (out, 0.0)
            loss = loss * ((rows[s].stop - rows[s].start) / n)
            loss.backward()
        grads = [np.zeros(p.shape, dtype) if p.grad is None else p.grad.numpy() for p in params]
        local[s] = np.concatenate([g.astype(dtype, copy=False).ravel() for g in grads]
                                  + [np.array([loss.item(), extra], dtype)])
    generator.bit_generator.state = after
    total = combine_shards(local, shards)
    if tracked:
        _apply_running_updates(tracked, counted, updates, rows, shards)
    offset = 0
    for p in params:
        size = int(np.prod(p.shape))
        p.grad = fn.from_numpy(total[offset:offset + size].reshape(p.shape).astype(p.dtype, copy=False))
        offset += size
    return (float(total[offset]), float(total[offset + 1])) if pair else float(total[offset])


def _apply_running_updates(tracked, counted, updates, rows, shards):
    """Batch norm's deferred updates (``updates``: this rank's, per shard) applied on every rank for every
    shard in shard order; ``num_batches_tracked`` then counts every shard's forward passes (``counted``:
    the counts before the batch). The shards' forward passes must update the same layers in the same order."""
    from freenet.ops.norm import apply_running_update

    w = world()
    order = next((u for u in updates.values() if u), [])  # (running_mean, running_var, ...) per update
    sent = [np.concatenate([np.concatenate([u[2], u[3]]) for u in shard_updates]) for shard_updates in updates.values()
            if shard_updates]
    received = w.allgather_arrays(np.concatenate(sent) if sent else np.zeros(0))
    filled = [[s for s in shard_range(shards, rank, w.size) if rows[s].stop > rows[s].start]
              for rank in range(w.size)]
    widths = {len(v) // len(f) if len(v) % len(f) == 0 else -1 for v, f in zip(received, filled) if f}
    if widths == {0}:
        return  # the forward passes updated no running statistics (no batch norm was called)
    if len(widths) != 1 or not order or -1 in widths:
        raise FreenetError("the shards' forward passes updated batch norm's running statistics differently")
    layout = [(u[0], u[1], u[4]) for u in order]
    calls = {}
    for vector, rank_filled in zip(received, filled):
        for shard_vector in np.split(vector, len(rank_filled)) if rank_filled else []:
            offset = 0
            for running_mean, running_var, momentum in layout:
                c = len(running_mean)
                apply_running_update(running_mean, running_var, shard_vector[offset:offset + c],
                                     shard_vector[offset + c:offset + 2 * c], momentum)
                offset += 2 * c
                calls[id(running_mean)] = calls.get(id(running_mean), 0) + 1
    for m in tracked:
        m.num_batches_tracked._data[...] = counted[id(m)] + calls.get(id(m.running_mean._data), 0)
