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
from freenet import optim
from freenet.errors import FreenetError
from freenet.go import symmetry
from freenet.kernels import settings
from freenet.go.board import BLACK, EMPTY, Board
from freenet.go.features import PLANES, planes
from freenet.checkpoint import Checkpointer
from freenet.go.net import Evaluator, new_net, save_net
from freenet.go.selfplay import GameRecord, SelfPlayConfig, load_games, play_games, save_games
from freenet.nn import functional as F
from freenet.serialize import atomic_write


# -- the buffer ---------------------------------------------------------------------------------------

def game_positions(record):
    """(packed planes (T, bytes) uint8, policy targets (T, N*N+1) float32, value targets (T,) float32)."""
    N = record.size
    board = Board(N)
    packed, values = [], []
    for colour, point in record.moves:
        board.to_move = colour
        packed.append(np.packbits(planes(board).astype(bool).ravel()))
        values.append(0.0 if record.winner in (EMPTY, None) else (1.0 if record.winner == colour else -1.0))
        if board.passes >= 2:
            board.passes = 0
        board.play(point, colour)
    T = len(record.moves)
    policy = np.zeros((T, N * N + 1), np.float32)
    if record.policies:
        policy[:] = np.stack(record.policies).astype(np.float32)
        policy /= np.maximum(policy.sum(1, keepdims=True), 1e-12)
    else:
        policy[np.arange(T), [p for _, p in record.moves]] = 1.0
    bits = np.stack(packed) if packed else np.zeros((0, (PLANES * N * N + 7) // 8), np.uint8)
    return bits, policy, np.array(values, np.float32)


class ReplayBuffer:
    """The positions of the last ``window`` games, sampled uniformly with a random symmetry each."""

    def __init__(self, size, window=None):
        self.size, self.window = size, window
        self.games = []  # (bits, policy, value) per game
        self._cat = None

    def add(self, records):
        for r in records:
            if r.size != self.size:
                raise FreenetError(f"a {r.size}x{r.size} game in a {self.size}x{self.size} buffer")
            if r.moves:
                self.games.append(game_positions(r))
        if self.window is not None and len(self.games) > self.window:
            self.games = self.games[-self.window:]
        self._cat = None

    def __len__(self):
        return sum(len(g[2]) for g in self.games)

    def arrays(self):
        if self._cat is None:
            self._cat = tuple(np.concatenate([g[k] for g in self.games]) for k in range(3))
        return self._cat

    def sample(self, batch, rng):
        if not self.games:
            raise FreenetError("the replay buffer is empty (no game in the window has a move)")
        bits, policy, value = self.arrays()
        idx = rng.integers(0, len(value), size=batch)
        N = self.size
        x = np.unpackbits(bits[idx], axis=1, count=PLANES * N * N).reshape(batch, PLANES, N, N).astype(np.float32)
        p = policy[idx].copy()
        syms = rng.integers(0, symmetry.COUNT, size=batch)
        for i, s in enumerate(syms):
            if s:
                x[i] = symmetry.transform_planes(x[i], s)
                p[i] = symmetry.transform_policy(p[i], s)
        return x, p, value[idx].copy()


def train_steps(net, optimizer, buffer, steps, batch_size, rng, progress=False, desc="training"):
    """``steps`` SGD steps on batches from ``buffer``; returns the mean (policy loss, value loss)."""
    net.train()
    totals = np.zeros(2)
    bar = tqdm(range(steps), desc=desc, unit="step", disable=not progress, leave=False)
    for step in bar:
        x, p, z = buffer.sample(batch_size, rng)
        logits, v = net(fn.from_numpy(x))
        policy_loss = F.cross_entropy(logits, fn.from_numpy(p))
        value_loss = F.mse_loss(v, fn.from_numpy(z))
        loss = policy_loss + value_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals += (policy_loss.item(), value_loss.item())
        bar.set_postfix(policy=f"{totals[0] / (step + 1):.3f}", value=f"{totals[1] / (step + 1):.3f}")
    bar.close()
    net.eval()
    return tuple(totals / max(steps, 1))


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

    def as_dict(self):
        return asdict(self)


def _write_json(path, data):
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise FreenetError(f"{path}: cannot read ({e})") from None


def open_run(run_dir, config, kind):
    """The run's config: the saved one when resuming (new settings must agree), else ``config`` saved."""
    os.makedirs(run_dir, exist_ok=True)
    saved = _read_json(os.path.join(run_dir, "config.json"))
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
    if saved != config.as_dict():
        changed = sorted(k for k in set(saved) | set(config.as_dict()) if saved.get(k) != config.as_dict().get(k))
        raise FreenetError(f"{run_dir} was started with other settings ({', '.join(changed)}); resume it with the "
                           "same ones or use a new folder")
    return config


def _load_or_init(run_dir, config, log=print):
    """The net, optimizer and progress of the newest good checkpoint of the run (a corrupt one is reported
    and the one before it used), or fresh ones."""
    net = new_net(config.size, config.blocks, config.filters, seed=config.seed)
    opt = make_optimizer(net, config.lr, config.momentum, config.weight_decay)
    checkpoint = Checkpointer(os.path.join(run_dir, "checkpoints")).latest(warn=log)
    if checkpoint is None:
        return net, opt, {}
    net.load_state_dict(checkpoint.arrays)
    opt.load_state_dict(checkpoint.state["optimizer"])
    return net, opt, checkpoint.state["run"]


def _commit(run_dir, net, opt, state, step, checkpoint_name):
    """One atomic, hash-verified checkpoint holds everything a resume needs; the net files beside it
    (net.safetensors, the latest, and one per generation) are for people and other programs."""
    Checkpointer(os.path.join(run_dir, "checkpoints")).save(step, net.state_dict(),
                                                             {"run": state, "optimizer": opt.state_dict()})
    save_net(net, os.path.join(run_dir, "net.safetensors"))
    save_net(net, os.path.join(run_dir, checkpoint_name))
    _write_json(os.path.join(run_dir, "state.json"), state)


def selfplay_loop(run_dir, config, generations, progress=True, log=print):
    """The AlphaGo Zero loop: for each generation, self-play with the latest net, then SGD on the replay
    window, then a checkpoint. Returns the state after the last generation."""
    from freenet.go.sgf import result_string, write_sgf

    config = open_run(run_dir, config, "selfplay")
    sp = SelfPlayConfig(**{"size": config.size, **config.selfplay})
    if sp.size != config.size:
        raise FreenetError("selfplay size and net size differ")
    net, opt, state = _load_or_init(run_dir, config, log)
    start = state.get("generation", 0) + 1
    games_dir = os.path.join(run_dir, "games")
    os.makedirs(games_dir, exist_ok=True)
    if start > generations:
        log(f"{run_dir}: already at generation {start - 1} of {generations}")
    for gen in range(start, generations + 1):
        t0 = time.perf_counter()
        games_path = os.path.join(games_dir, f"gen-{gen:04d}.npz")
        if os.path.exists(games_path):
            records = load_games(games_path)  # self-play of this generation finished before an interruption
        else:
            ev = Evaluator(net, symmetry_mode="random", rng=np.random.default_rng([config.seed, gen, 3]))
            records = play_games(ev, config.games_per_generation, sp, seed=hash_seed(config.seed, gen),
                                 progress=progress)
            save_games(games_path, records)
            if config.sgf:
                sgf_dir = os.path.join(run_dir, "sgf", f"gen-{gen:04d}")
                os.makedirs(sgf_dir, exist_ok=True)
                for i, r in enumerate(records):
                    write_sgf(os.path.join(sgf_dir, f"game-{i + 1:04d}.sgf"), r.size, r.komi, r.moves,
                              result_string(r.winner, r.score, r.resigned), f"freenet gen {gen - 1}",
                              f"freenet gen {gen - 1}")
        t1 = time.perf_counter()
        buffer = ReplayBuffer(config.size, config.window)
        window, count = [], 0
        for g in range(gen, 0, -1):  # the newest files that fill the window
            window.insert(0, records if g == gen else load_games(os.path.join(games_dir, f"gen-{g:04d}.npz")))
            count += len(window[0])
            if count >= config.window:
                break
        for games in window:
            buffer.add(games)
        losses = train_steps(net, opt, buffer, config.steps_per_generation, config.batch_size,
                             np.random.default_rng([config.seed, gen, 7]), progress, desc=f"gen {gen} SGD")
        t2 = time.perf_counter()
        black_wins = sum(r.winner == BLACK for r in records)
        state = {"generation": gen, "games": state.get("games", 0) + len(records),
                 "steps": state.get("steps", 0) + config.steps_per_generation,
                 "policy_loss": losses[0], "value_loss": losses[1],
                 "seconds": state.get("seconds", 0.0) + (t2 - t0)}
        _commit(run_dir, net, opt, state, gen, f"net-{gen:04d}.safetensors")
        log(f"generation {gen}/{generations}: {len(records)} games ({black_wins} won by Black, "
            f"{np.mean([len(r.moves) for r in records]):.0f} moves on average) in {t1 - t0:.0f} s; "
            f"{config.steps_per_generation} steps on {len(buffer)} positions in {t2 - t1:.0f} s: "
            f"policy loss {losses[0]:.3f}, value loss {losses[1]:.3f}")
    return state


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
            with open(path, "rb") as f:
                n, komi, moves, winner = read_sgf(f.read(), path)
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
        losses = train_steps(net, opt, buffer, config.steps_per_generation, config.batch_size,
                             np.random.default_rng([config.seed, chunk, 11]), progress, desc=f"chunk {chunk}")
        state = {"chunk": chunk, "steps": state.get("steps", 0) + config.steps_per_generation,
                 "policy_loss": losses[0], "value_loss": losses[1],
                 "seconds": state.get("seconds", 0.0) + time.perf_counter() - t0}
        _commit(run_dir, net, opt, state, chunk, f"net-{chunk:04d}.safetensors")
        log(f"chunk {chunk}/{chunks}: {config.steps_per_generation} steps, policy loss {losses[0]:.3f}, "
            f"value loss {losses[1]:.3f}")
    return state
