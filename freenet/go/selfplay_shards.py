"""A generation's self-play cut into shards of games, shared out among MPI processes.

The games of a generation are cut into ``shards`` runs of consecutive game indices. Shard s is one
``play_games`` call of its own, with its own evaluator randomness (seeded by the run's seed, the
generation and s) and each game seeded by its index, so a game does not depend on which process plays
it, nor on how many there are: the run's nets are the same for any number of processes. With one
shard, a generation is played exactly as it always was.

Rank 0 keeps the run folder and trains; before each generation it sends the net to the other ranks
(``serve``), which play their shards and send the games back.
"""

import io
import json
import os
import tempfile
import time

import numpy as np
from safetensors import numpy as safetensors_numpy

from freenet import distributed
from freenet.go.net import Evaluator, new_net
from freenet.go.selfplay import load_games, play_games, save_games


def play_generation(net, config, sp, gen, game_seed, progress=False):
    """This generation's games (on rank 0: all of them, in game order; elsewhere: None) and the CPU
    seconds all ranks spent on them. Rank 0 calls this; the other ranks are in ``serve``."""
    world = distributed.world()
    if world.size > 1:
        world.broadcast_bytes(json.dumps({"generation": gen, "seed": game_seed}).encode())
        world.broadcast_bytes(safetensors_numpy.save({k: v.numpy() for k, v in net.state_dict().items()}))
    return _play_my_shards(net, config, sp, gen, game_seed, progress)


def serve(config, sp):
    """The loop of a rank other than 0: play the shards of each generation rank 0 announces, until it stops."""
    world = distributed.world()
    net = new_net(config.size, config.blocks, config.filters, seed=config.seed, ownership=config.ownership,
                  score=config.score, pooling=config.pooling)
    while True:
        order = json.loads(world.broadcast_bytes(b""))
        if order.get("stop"):
            return
        net.load_state_dict(safetensors_numpy.load(world.broadcast_bytes(b"")))
        net.eval()
        _play_my_shards(net, config, sp, order["generation"], order["seed"], progress=False)


def stop_serving():
    """Rank 0: tells the other ranks that the run is over."""
    world = distributed.world()
    if world.size > 1:
        world.broadcast_bytes(json.dumps({"stop": True}).encode())


def shard_games(games, shards):
    """(first game index, number of games) of each shard."""
    rows = distributed.shard_rows(games, shards)
    return [(r.start, r.stop - r.start) for r in rows]


def _play_my_shards(net, config, sp, gen, game_seed, progress):
    world = distributed.world()
    cpu0 = time.process_time()
    if config.shards == 1:  # the original schedule: one call, the evaluator seeded as before shards existed
        ev = Evaluator(net, symmetry_mode="random", rng=np.random.default_rng([config.seed, gen, 3]))
        records = play_games(ev, config.games_per_generation, sp, seed=game_seed, progress=progress)
    else:
        records = []
        for s in distributed.shard_range(config.shards, world.rank, world.size):
            first, count = shard_games(config.games_per_generation, config.shards)[s]
            ev = Evaluator(net, symmetry_mode="random", rng=np.random.default_rng([config.seed, gen, 3, s]))
            records += play_games(ev, count, sp, seed=game_seed, progress=progress, first_index=first)
    cpu = time.process_time() - cpu0
    if world.size == 1:
        return records, cpu
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "games.npz")
        save_games(path, records)
        with open(path, "rb") as f:
            payload = f.read()
    parts = world.allgather_bytes(payload)  # in rank order, which is shard order
    cpu_total = float(sum(a[0] for a in world.allgather_arrays(np.array([cpu]))))
    if not world.main:
        return None, cpu_total
    return [r for part in parts for r in load_games(io.BytesIO(part))], cpu_total
