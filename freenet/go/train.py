"""Training: the replay buffer, the SGD step (policy cross-entropy against the search probabilities plus
value MSE against the game result), the AlphaGo Zero loop over generations, and supervised training on
SGF games. Both loops keep everything in one run folder and resume after an interruption with the same
results as an uninterrupted run (each generation's randomness comes from (seed, generation) alone).

Run folder:
    config.json               the run's settings (fixed at the start)
    checkpoints/              the commit point: after each generation / chunk one atomic, hash-verified
                              file (freenet.checkpoint) with the net, the SGD momentum and the progress;
                              a resume takes the newest good one (a corrupt one is reported and skipped)
    net.safetensors           the latest net; net-0003.safetensors after generation 3, ...
    state.json                the progress, readable (informational: resuming reads the checkpoint)
    games/gen-0003.npz        that generation's self-play games (freenet.go.selfplay.save_games)
    sgf/gen-0003/*.sgf        the same games as SGF, when asked for
"""

import json
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm import tqdm

import freenet as fn
from freenet import distributed, optim
from freenet.errors import FreenetError
from freenet.go import symmetry
from freenet.kernels import settings
from freenet.go.board import BLACK, EMPTY, Board
from freenet.go.features import PLANES, planes
from freenet.checkpoint import Checkpointer
from freenet.go import selfplay_shards
from freenet.go.net import new_net, save_net
from freenet.go.selfplay import GameRecord, SelfPlayConfig, games_cpu_seconds, load_games, save_games
from freenet.nn import functional as F
from freenet.serialize import atomic_write
from freenet.validate import MAX_TEXT_BYTES, FileFormatError, expect, fail, parse_json, read_regular


# -- the buffer ---------------------------------------------------------------------------------------

def game_positions(record, value_q_weight=0.0):
    """The training positions of a game: those with a policy target (a full search, or every move of an
    SGF game), as a dict of arrays: ``planes`` (T, bytes) packed uint8, ``policy`` (T, N*N+1), ``value``
    (T,) (the result for the side to move, mixed with ``value_q_weight`` of the search's value),
    ``ownership`` (T, N*N) int8 and ``score`` (T,) (the final margin / N*N) for the side to move, and
    ``aux`` (T,): 1 where the game was played out, so that ownership and score are known."""
    N = record.size
    board = Board(N)
    keep, packed, sign = [], [], []
    for t, (colour, point) in enumerate(record.moves):
        if not record.policies or record.policies[t] is not None:
            board.to_move = colour
            keep.append(t)
            packed.append(np.packbits(planes(board).astype(bool).ravel()))
            sign.append(1 if colour == BLACK else -1)
        if board.passes >= 2:
            board.passes = 0
        board.play(point, colour)
    T = len(keep)
    sign = np.array(sign, np.int8)
    policy = np.zeros((T, N * N + 1), np.float32)
    if record.policies:
        if T:
            policy[:] = np.stack([record.policies[t] for t in keep]).astype(np.float32)
        policy /= np.maximum(policy.sum(1, keepdims=True), 1e-12)
    else:
        policy[np.arange(T), [record.moves[t][1] for t in keep]] = 1.0
    black_wins = 0.0 if record.winner in (EMPTY, None) else (1.0 if record.winner == BLACK else -1.0)
    value = (black_wins * sign).astype(np.float32)
    if value_q_weight and record.values:
        q = np.array([record.values[t] for t in keep], np.float32)
        value = np.where(np.isnan(q), value, (1 - value_q_weight) * value + value_q_weight * q).astype(np.float32)
    played_out = record.ownership is not None
    ownership = np.zeros((T, N * N), np.int8)
    score = np.zeros(T, np.float32)
    if played_out:
        ownership[:] = record.ownership[None, :] * sign[:, None]
        score[:] = record.score / (N * N) * sign
    bits = np.stack(packed) if packed else np.zeros((0, (PLANES * N * N + 7) // 8), np.uint8)
    return {"planes": bits, "policy": policy, "value": value, "ownership": ownership, "score": score,
            "aux": np.full(T, 1.0 if played_out else 0.0, np.float32)}


class ReplayBuffer:
    """The positions of the last ``window`` games, sampled uniformly with a random symmetry each."""

    def __init__(self, size, window=None, value_q_weight=0.0):
        self.size, self.window, self.value_q_weight = size, window, value_q_weight
        self.games = []  # game_positions() per game
        self._cat = None

    def add(self, records):
        for r in records:
            if r.size != self.size:
                raise FreenetError(f"a {r.size}x{r.size} game in a {self.size}x{self.size} buffer")
            if r.moves:
                self.games.append(game_positions(r, self.value_q_weight))
        if self.window is not None and len(self.games) > self.window:
            self.games = self.games[-self.window:]
        self._cat = None

    def __len__(self):
        return sum(len(g["value"]) for g in self.games)

    def arrays(self):
        if self._cat is None:
            self._cat = {k: np.concatenate([g[k] for g in self.games]) for k in self.games[0]} if self.games else {}
        return self._cat

    def sample(self, batch, rng):
        """A dict of a batch's arrays: ``planes`` (B, 18, N, N) float32 and the targets of ``game_positions``
        (ownership as float32), each position under its own random symmetry."""
        if not len(self):
            raise FreenetError("the replay buffer is empty (no game in the window has a training position)")
        a = self.arrays()
        idx = rng.integers(0, len(a["value"]), size=batch)
        N = self.size
        x = np.unpackbits(a["planes"][idx], axis=1, count=PLANES * N * N).reshape(batch, PLANES, N, N)
        x = x.astype(np.float32)
        p = a["policy"][idx].copy()
        own = a["ownership"][idx].astype(np.float32)
        syms = rng.integers(0, symmetry.COUNT, size=batch)
        for i, s in enumerate(syms):
            if s:
                x[i] = symmetry.transform_planes(x[i], s)
                p[i] = symmetry.transform_policy(p[i], s)
                own[i] = symmetry.transform_points(own[i], s)
        return {"planes": x, "policy": p, "value": a["value"][idx].copy(), "ownership": own,
                "score": a["score"][idx].copy(), "aux": a["aux"][idx].copy()}


def losses(net, batch, ownership_weight=1.5, score_weight=0.5):
    """(total loss, {name: float}) of a sampled batch: policy cross-entropy against the search
    probabilities, value MSE against the result, and, for a net with those heads, ownership MSE (mean
    over points) and score MSE, counted only for played-out games."""
    out = net(fn.from_numpy(batch["planes"]))
    logits, v = out[0], out[1]
    policy_loss = F.cross_entropy(logits, fn.from_numpy(batch["policy"]))
    value_loss = F.mse_loss(v, fn.from_numpy(batch["value"]))
    total = policy_loss + value_loss
    parts = {"policy": policy_loss.item(), "value": value_loss.item()}
    aux = fn.from_numpy(batch["aux"])
    if len(out) > 2 and out[2] is not None:
        err = (out[2] - fn.from_numpy(batch["ownership"])) ** 2
        ownership_loss = (err.mean(dim=1) * aux).mean()
        total = total + ownership_weight * ownership_loss
        parts["ownership"] = ownership_loss.item()
    if len(out) > 3 and out[3] is not None:
        score_loss = (((out[3] - fn.from_numpy(batch["score"])) ** 2) * aux).mean()
        total = total + score_weight * score_loss
        parts["score"] = score_loss.item()
    return total, parts


def train_steps(net, optimizer, buffer, steps, batch_size, rng, progress=False, desc="training",
                ownership_weight=1.5, score_weight=0.5):
    """``steps`` SGD steps on batches from ``buffer``; returns the mean of each loss ({name: float})."""
    net.train()
    totals = {}
    bar = tqdm(range(steps), desc=desc, unit="step", disable=not progress, leave=False)
    for step in bar:
        loss, parts = losses(net, buffer.sample(batch_size, rng), ownership_weight, score_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for k, x in parts.items():
            totals[k] = totals.get(k, 0.0) + x
        bar.set_postfix({k: f"{x / (step + 1):.3f}" for k, x in totals.items()})
    bar.close()
    net.eval()
    return {k: x / max(steps, 1) for k, x in totals.items()}


def make_optimizer(net, lr, momentum, weight_decay):
    return optim.SGD(net.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay)


# -- the run folder -------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    size: int = 9
    blocks: int = 6
    filters: int = 64
    seed: int = 0
    games_per_generation: int = 64
    window: int = 500  # games in the replay buffer
    steps_per_generation: int = 100
    batch_size: int = 256
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    selfplay: dict = field(default_factory=dict)  # SelfPlayConfig fields
    sgf: bool = False  # also write the self-play games as SGF
    ownership: bool = False  # the net's auxiliary heads and global pooling (net.NetConfig)
    score: bool = False
    pooling: bool = False
    ownership_weight: float = 1.5
    score_weight: float = 0.5
    value_q_weight: float = 0.0  # value target: (1 - w) x the game's result + w x the search's value
    shards: int = 1  # a generation's games in this many independent parts, which MPI processes share out

    def as_dict(self):
        return asdict(self)


def _write_json(path, data):
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def read_json(path):
    """The JSON object in ``path``, None if there is no such file. Anything else wrong with it (a folder or a
    FIFO, too large, too deep, not JSON, not an object) is a FileFormatError naming it."""
    if not os.path.exists(path):
        return None
    # state.json may hold a diverged run's NaN losses, as _write_json wrote them
    data = parse_json(read_regular(path, MAX_TEXT_BYTES, "JSON file"), path, allow_nonfinite=True)
    return expect(data, dict, f"{path}: the JSON")


def open_run(run_dir, config, kind):
    """The run's config: the saved one when resuming (new settings must agree), else ``config`` saved."""
    os.makedirs(run_dir, exist_ok=True)
    saved = read_json(os.path.join(run_dir, "config.json"))
    path = settings.matmul_path()
    if saved is None:
        _write_json(os.path.join(run_dir, "config.json"), {"kind": kind, "matmul": path, **config.as_dict()})
        return config
    if saved.pop("kind", kind) != kind:
        raise FreenetError(f"{run_dir} holds a different kind of run")
    recorded = saved.pop("matmul", path)  # one run, one matmul path (older runs did not say theirs)
    if recorded != path:
        raise FreenetError(f"{run_dir} was trained with the {recorded} matmul path, not {path}; resume it with "
                           f"FREENET_MATMUL={recorded}")
    saved = {**asdict(type(config)()), **saved}  # settings added since the run began have their defaults
    if kind == "selfplay":
        expect(saved.get("selfplay", {}), dict, os.path.join(run_dir, "config.json") + ": selfplay")
        saved["selfplay"] = {k: v for k, v in {**SelfPlayConfig().as_dict(), **saved["selfplay"]}.items()
                             if k in config.selfplay or k in saved["selfplay"]}
    if saved != config.as_dict():
        changed = sorted(k for k in set(saved) | set(config.as_dict()) if saved.get(k) != config.as_dict().get(k))
        raise FreenetError(f"{run_dir} was started with other settings ({', '.join(changed)}); resume it with the "
                           "same ones or use a new folder")
    return config


def _load_or_init(run_dir, config, log=print):
    """The net, optimizer and progress of the newest good checkpoint of the run (a corrupt one is reported
    and the one before it used), or fresh ones. The state in a good checkpoint is checked before use too:
    a checksum proves the file is what was written, not that it suits this run."""
    net = new_net(config.size, config.blocks, config.filters, seed=config.seed, ownership=config.ownership,
                  score=config.score, pooling=config.pooling)
    opt = make_optimizer(net, config.lr, config.momentum, config.weight_decay)
    checkpoint = Checkpointer(os.path.join(run_dir, "checkpoints")).latest(warn=log)
    if checkpoint is None:
        return net, opt, {}
    where = checkpoint.path
    state = expect(checkpoint.state, dict, where)
    for key in ("run", "optimizer"):
        if key not in state:
            fail(where, f"has no {key!r} in its state")
    run = _checked_run(state["run"], f"{where}: run")
    try:
        net.load_state_dict(checkpoint.arrays)
        opt.load_state_dict(state["optimizer"])
    except FileFormatError:
        raise
    except FreenetError as e:
        raise FileFormatError(f"{where}: {e}") from None
    return net, opt, run


_RUN_COUNTS = ("generation", "chunk", "games", "steps")
_RUN_SECONDS = ("seconds", "selfplay_seconds", "cpu_seconds")


def _checked_run(run, where):
    """A run's progress from a checkpoint: the counts and times the loops add to are ints >= 0 and numbers
    >= 0; the rest (the last losses) only goes to state.json, and is left as it is."""
    expect(run, dict, where)
    for key, value in run.items():
        if key in _RUN_COUNTS:
            expect(value, int, f"{where}: {key}", lo=0)
        elif key in _RUN_SECONDS:
            expect(value, float, f"{where}: {key}", lo=0)
    return run


def _commit(run_dir, net, opt, state, step, checkpoint_name):
    """One atomic, hash-verified checkpoint holds everything a resume needs; the net files beside it
    (net.safetensors, the latest, and one per generation) are for people and other programs."""
    Checkpointer(os.path.join(run_dir, "checkpoints")).save(step, net.state_dict(),
                                                             {"run": state, "optimizer": opt.state_dict()})
    save_net(net, os.path.join(run_dir, "net.safetensors"))
    save_net(net, os.path.join(run_dir, checkpoint_name))
    _write_json(os.path.join(run_dir, "state.json"), state)


def selfplay_loop(run_dir, config, generations, progress=True, log=print, ladder=None, cpu_hours=None):
    """The AlphaGo Zero loop: for each generation, self-play with the latest net, then SGD on the replay
    window, then a checkpoint. With ``ladder`` ({"every": K, "opponents": [...], "games": n, "playouts":
    p}), every K-th generation's net plays the ladder's opponents (``freenet.go.ladder``), and only those
    generations keep their ``net-XXXX.safetensors``. With ``cpu_hours``, no generation starts once the
    run's processes have used that much CPU time (an A/B at equal CPU-hours). Returns the state after
    the last generation."""
    sp = SelfPlayConfig(**{"size": config.size, **config.selfplay})
    if sp.size != config.size:
        raise FreenetError("selfplay size and net size differ")
    if not 1 <= config.shards <= config.games_per_generation:
        raise FreenetError(f"--shards must be between 1 and the games per generation ({config.games_per_generation})")
    distributed.check_shards(config.shards, "self-play shards")
    if not distributed.world().main:  # under MPI: play the shards rank 0 hands out; it keeps the run folder
        return selfplay_shards.serve(config, sp)
    try:
        return _selfplay_main(run_dir, config, sp, generations, progress, log, ladder, cpu_hours)
    finally:
        selfplay_shards.stop_serving()


def _selfplay_main(run_dir, config, sp, generations, progress, log, ladder, cpu_hours):
    from freenet.go.sgf import result_string, write_sgf

    config = open_run(run_dir, config, "selfplay")
    net, opt, state = _load_or_init(run_dir, config, log)
    start = state.get("generation", 0) + 1
    games_dir = os.path.join(run_dir, "games")
    os.makedirs(games_dir, exist_ok=True)
    if start > generations:
        log(f"{run_dir}: already at generation {start - 1} of {generations}")
    if ladder and start > 1:
        _ladder(run_dir, start - 1, state, ladder, log)  # an interrupted ladder goes on
    for gen in range(start, generations + 1):
        if cpu_hours is not None and state.get("cpu_seconds", 0.0) >= 3600 * cpu_hours:
            log(f"{run_dir}: {state['cpu_seconds'] / 3600:.2f} CPU-hours spent, the budget of {cpu_hours}")
            break
        t0, cpu0 = time.perf_counter(), time.process_time()
        games_path = os.path.join(games_dir, f"gen-{gen:04d}.npz")
        if os.path.exists(games_path):  # self-play of this generation finished before an interruption
            records = load_games(games_path)
            cpu0 -= games_cpu_seconds(games_path)
        else:
            records, cpu = selfplay_shards.play_generation(net, config, sp, gen, hash_seed(config.seed, gen), progress)
            cpu0 -= cpu - (time.process_time() - cpu0)  # the CPU time of every process counts
            save_games(games_path, records, cpu)
            records = load_games(games_path)  # as a resumed run reads them (values are stored as float16)
            if config.sgf:
                sgf_dir = os.path.join(run_dir, "sgf", f"gen-{gen:04d}")
                os.makedirs(sgf_dir, exist_ok=True)
                for i, r in enumerate(records):
                    write_sgf(os.path.join(sgf_dir, f"game-{i + 1:04d}.sgf"), r.size, r.komi, r.moves,
                              result_string(r.winner, r.score, r.resigned), f"freenet gen {gen - 1}",
                              f"freenet gen {gen - 1}")
        t1 = time.perf_counter()
        buffer = ReplayBuffer(config.size, config.window, config.value_q_weight)
        window, count = [], 0
        for g in range(gen, 0, -1):  # the newest files that fill the window
            window.insert(0, records if g == gen else load_games(os.path.join(games_dir, f"gen-{g:04d}.npz")))
            count += len(window[0])
            if count >= config.window:
                break
        for games in window:
            buffer.add(games)
        means = train_steps(net, opt, buffer, config.steps_per_generation, config.batch_size,
                            np.random.default_rng([config.seed, gen, 7]), progress, desc=f"gen {gen} SGD",
                            ownership_weight=config.ownership_weight, score_weight=config.score_weight)
        t2 = time.perf_counter()
        black_wins = sum(r.winner == BLACK for r in records)
        state = {"generation": gen, "games": state.get("games", 0) + len(records),
                 "steps": state.get("steps", 0) + config.steps_per_generation,
                 **{f"{k}_loss": x for k, x in means.items()},
                 "seconds": state.get("seconds", 0.0) + (t2 - t0),
                 "selfplay_seconds": state.get("selfplay_seconds", 0.0) + (t1 - t0),
                 "cpu_seconds": state.get("cpu_seconds", 0.0) + (time.process_time() - cpu0)}
        _commit(run_dir, net, opt, state, gen, f"net-{gen:04d}.safetensors")
        if ladder and gen > 1 and (gen - 1) % ladder["every"]:
            _remove(os.path.join(run_dir, f"net-{gen - 1:04d}.safetensors"))  # between ladder generations
        log(f"generation {gen}/{generations}: {len(records)} games ({black_wins} won by Black, "
            f"{np.mean([len(r.moves) for r in records]):.0f} moves on average) in {t1 - t0:.0f} s; "
            f"{config.steps_per_generation} steps on {len(buffer)} positions in {t2 - t1:.0f} s: "
            + ", ".join(f"{k} loss {x:.3f}" for k, x in means.items()))
        if ladder:
            _ladder(run_dir, gen, state, ladder, log)
    return state


def _ladder(run_dir, gen, state, ladder, log):
    from freenet.go import ladder as evaluation

    if gen % ladder["every"] == 0:
        evaluation.evaluate(run_dir, gen, ladder.get("opponents", ("gnugo-1", "gnugo-10", "previous")),
                            games=ladder.get("games", 20), playouts=ladder.get("playouts", 200),
                            cpu_hours=state.get("cpu_seconds", 0.0) / 3600, log=log)


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def hash_seed(seed, gen):
    return int(np.random.default_rng([seed, gen]).integers(0, 2**31))


def sgf_records(folder, size=None, log=print):
    """GameRecords of the SGF files under ``folder`` (recursively); unreadable or unusable files are
    skipped with a line in the log."""
    from freenet.go.sgf import read_sgf

    records, skipped = [], 0
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if f.lower().endswith(".sgf"))
    if not paths:
        raise FreenetError(f"no .sgf files under {folder}")
    for path in paths:
        try:
            n, komi, moves, winner = read_sgf(read_regular(path, MAX_TEXT_BYTES, "SGF file"), path)
        except (FreenetError, OSError) as e:
            skipped += 1
            log(f"skipped: {e}")
            continue
        if size is not None and n != size:
            skipped += 1
            continue
        records.append(GameRecord(n, komi, moves, [], winner))
    if not records:
        raise FreenetError(f"no usable {size or ''}{'x' + str(size) if size else ''} games under {folder}")
    return records, skipped


def supervised_loop(run_dir, config, sgf_dir, chunks, progress=True, log=print):
    """Supervised training on SGF games: ``chunks`` rounds of ``steps_per_generation`` SGD steps, a
    checkpoint after each (the policy target is the move played, the value target the game's result)."""
    config = open_run(run_dir, config, "supervised")
    records, skipped = sgf_records(sgf_dir, config.size, log)
    buffer = ReplayBuffer(config.size)
    buffer.add(records)
    log(f"{len(records)} games ({len(buffer)} positions) from {sgf_dir}; {skipped} skipped")
    net, opt, state = _load_or_init(run_dir, config, log)
    start = state.get("chunk", 0) + 1
    for chunk in range(start, chunks + 1):
        t0 = time.perf_counter()
        means = train_steps(net, opt, buffer, config.steps_per_generation, config.batch_size,
                            np.random.default_rng([config.seed, chunk, 11]), progress, desc=f"chunk {chunk}",
                            ownership_weight=config.ownership_weight, score_weight=config.score_weight)
        state = {"chunk": chunk, "steps": state.get("steps", 0) + config.steps_per_generation,
                 **{f"{k}_loss": x for k, x in means.items()},
                 "seconds": state.get("seconds", 0.0) + time.perf_counter() - t0}
        _commit(run_dir, net, opt, state, chunk, f"net-{chunk:04d}.safetensors")
        log(f"chunk {chunk}/{chunks}: {config.steps_per_generation} steps, "
            + ", ".join(f"{k} loss {x:.3f}" for k, x in means.items()))
    return state
