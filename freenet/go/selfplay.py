"""Self-play: a net plays itself, many games at once, and the positions, search probabilities and results
are kept for training.

Every game in flight is a row of one ``tree.Forest``; each round walks all of them to their next leaves
and evaluates the leaves in one net call, so the net's batch speed sets the pace. A game's move: a
search to ``playouts`` root visits (the subtree kept from the previous move counts), Dirichlet noise at
the root, the move drawn with temperature 1 for the first ``temperature_moves`` moves and the most
visited one after. A side whose root winrate falls below ``resign`` resigns, except in a
``no_resign_fraction`` of the games.

KataGo's ideas (Wu 2019, "Accelerating Self-Play Learning in Go"), each a setting:
- playout cap randomization: with ``cheap_playouts`` set, only a ``full_fraction`` of the moves get the
  full search (with noise) and become training positions; the rest get a cheap search without noise
  and only move the game on;
- forced playouts: at the root of a full search, a visited child gets at least ``sqrt(2 P total)``
  visits, and the policy target has them taken out again (``tree.prune_forced``).

Games are stored as compact NumPy files (``save_games``): moves and colours as small integers, the
search probabilities as float16, the root values, which moves had a full search, the final ownership
of every point, one winner and score per game. ``load_games`` reads them back, and the planes are
rebuilt by replaying the moves. Same seed, same net: same games, whatever the thread count.
"""

import io
import lzma
import math
import os
import struct
import zipfile
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm import tqdm

from freenet import validate
from freenet.errors import FreenetError
from freenet.go.board import BLACK, EMPTY, MAX_SIZE, MIN_SIZE, WHITE
from freenet.go.mcts import choose_move
from freenet.go.tree import Forest, capacity_for

MAX_LEAVES = 16  # leaves per game per round at most (virtual loss): when few games are left to fill the batch


@dataclass
class SelfPlayConfig:
    size: int = 9
    komi: float = 7.5
    playouts: int = 200  # root visits of a (full) search; those kept from the previous move count
    cheap_playouts: int = None  # playout cap randomization: the cheap searches' visits (None: off)
    full_fraction: float = 0.25  # with cheap_playouts: the share of moves with a full search
    forced_playouts: bool = False  # forced playouts and policy target pruning in full searches
    batch: int = 128  # positions per net call (each game adds 1 leaf, more when few games are left)
    parallel: int = 128  # games in flight
    temperature_moves: int = None  # None: size (9 on 9x9, 19 on 19x19)
    resign: float = 0.05  # winrate; 0 never resigns
    resign_from_move: int = None  # no resignation before this move (None: size * size // 3): a young net's
    # value is noise, and games it resigns early teach nothing but that
    no_resign_fraction: float = 0.2
    max_moves: int = None  # None: 2 * size * size
    c_puct: float = 1.5
    fpu_reduction: float = 0.25
    noise_fraction: float = 0.25
    dirichlet_alpha: float = None  # None: 0.03 * 361 / size**2

    def as_dict(self):
        return asdict(self)


@dataclass
class GameRecord:
    size: int
    komi: float
    moves: list = field(default_factory=list)  # (colour, point)
    policies: list = field(default_factory=list)  # search probabilities before each move (N*N+1); None: none
    winner: int = None  # BLACK, WHITE or EMPTY
    score: float = None  # Black's margin; +-inf for a resignation
    resigned: bool = False
    values: list = field(default_factory=list)  # the search's value before each move, for the side to move
    ownership: np.ndarray = None  # (N*N,) int8 final area: +1 Black's, -1 White's, 0 neither; None if resigned


class _Game:
    """A game in a forest row: its randomness (from the seed and its index alone) and its record."""

    def __init__(self, index, config, seed):
        self.index = index
        self.rng = np.random.default_rng([seed, index])
        self.resign_allowed = config.resign > 0 and self.rng.random() >= config.no_resign_fraction
        self.record = GameRecord(config.size, config.komi)
        self.full = True
        self.noised = False


def play_games(evaluator, games, config=None, seed=0, progress=False, first_index=0):
    """Plays ``games`` games of self-play with ``evaluator`` (``net.Evaluator``); returns their GameRecords
    in order of game index."""
    config = config or SelfPlayConfig()
    N = config.size
    if evaluator.size != N:
        raise FreenetError(f"self-play on {N}x{N} with a net for {evaluator.size}x{evaluator.size}")
    temperature_moves = N if config.temperature_moves is None else config.temperature_moves
    alpha = config.dirichlet_alpha or 0.03 * 361 / (N * N)
    resign_from = N * N // 3 if config.resign_from_move is None else config.resign_from_move
    visits = max(config.playouts, config.cheap_playouts or 0)
    rows = min(config.parallel, games)
    forest = Forest(N, rows, capacity_for(N, visits, MAX_LEAVES), komi=config.komi, max_moves=config.max_moves,
                    c_puct=config.c_puct, fpu_reduction=config.fpu_reduction)
    queue = iter(range(first_index, first_index + games))
    slot = [None] * rows
    done = {}
    bar = tqdm(total=games, desc="self-play", unit="game", disable=not progress, leave=False)

    def begin_search(r):
        g = slot[r]
        g.full = config.cheap_playouts is None or g.rng.random() < config.full_fraction
        forest.goal[r] = config.playouts if g.full else config.cheap_playouts
        forest.forced[r] = g.full and config.forced_playouts
        g.noised = False

    def start_game(r):
        index = next(queue, None)
        forest.new_game(r)
        slot[r] = None if index is None else _Game(index, config, seed)
        if slot[r] is not None:
            begin_search(r)

    def end_game(r, resigned_colour=None):
        g = slot[r]
        rec = g.record
        if resigned_colour is not None:
            rec.resigned = True
            rec.winner = 3 - resigned_colour
            rec.score = np.inf if rec.winner == BLACK else -np.inf
        else:
            black, white = forest.area(r)
            rec.score = float(black - white - config.komi)
            rec.winner = BLACK if rec.score > 0 else WHITE if rec.score < 0 else EMPTY
            rec.ownership = forest.area_map(r)
        done[g.index] = rec
        bar.update(1)
        start_game(r)

    def finish_move(r):
        """The search of row ``r`` reached its goal: record the position, play the move (or resign)."""
        g = slot[r]
        colour, number = forest.to_move(r), forest.moves(r)
        moves, visits, wsum, prior, prior_raw = forest.root(r)
        value = forest.root_value(r)
        if g.resign_allowed and number >= resign_from and (value + 1) / 2 < config.resign:
            end_game(r, resigned_colour=colour)
            return
        policy = forest.policy_target(r).astype(np.float16) if g.full else None
        move = choose_move(moves, visits, prior_raw, 1.0 if number < temperature_moves else 0.0, g.rng)
        g.record.moves.append((colour, move))
        g.record.policies.append(policy)
        g.record.values.append(value)
        forest.play(r, move)
        if forest.game_over(r):
            end_game(r)
        else:
            begin_search(r)

    for r in range(rows):
        start_game(r)
    while any(g is not None for g in slot):
        for r in range(rows):
            while slot[r] is not None and forest.expanded(r):
                g = slot[r]
                if g.full and not g.noised:
                    forest.add_noise(r, g.rng.dirichlet(np.full(len(forest.root(r)[0]), alpha)), config.noise_fraction)
                    g.noised = True
                if forest.root_visits(r) < forest.goal[r]:
                    break
                finish_move(r)
        active = sum(g is not None for g in slot)
        forest.batch[:] = min(MAX_LEAVES, max(1, math.ceil(config.batch / max(active, 1))))
        forest.round(evaluator.evaluate_planes)
    bar.close()
    return [done[i] for i in sorted(done)]


# -- files ------------------------------------------------------------------------------------------

def save_games(path, records, cpu_seconds=None):
    """Writes games to one compressed .npz (written to a temporary name, then renamed); ``cpu_seconds``,
    the CPU time they took, is kept with them (``games_cpu_seconds``)."""
    if not records:
        raise FreenetError("save_games: no games")
    size, komi = records[0].size, records[0].komi
    N2 = size * size + 1
    offsets = np.zeros(len(records) + 1, np.int64)
    for i, r in enumerate(records):
        offsets[i + 1] = offsets[i] + len(r.moves)
    total = int(offsets[-1])
    moves = np.zeros(total, np.int16)
    colours = np.zeros(total, np.int8)
    policy = np.zeros((total, N2), np.float16)
    full = np.zeros(total, bool)  # the position had a full search: its policy is a training target
    values = np.full(total, np.nan, np.float16)
    ownership = np.zeros((len(records), N2 - 1), np.int8)
    for i, r in enumerate(records):
        a = offsets[i]
        for k, (c, p) in enumerate(r.moves):
            moves[a + k], colours[a + k] = p, c
        if r.policies:
            for k, p in enumerate(r.policies):
                if p is not None:
                    policy[a + k], full[a + k] = p, True
        else:  # a record without search probabilities (an SGF game): the move played
            policy[np.arange(a, a + len(r.moves)), moves[a:a + len(r.moves)]] = 1
            full[a:a + len(r.moves)] = True
        if r.values:
            values[a:a + len(r.moves)] = r.values
        if r.ownership is not None:
            ownership[i] = r.ownership
    winner = np.array([{BLACK: 1, WHITE: -1, EMPTY: 0}.get(r.winner, 0) for r in records], np.int8)
    score = np.array([np.nan if r.score is None else r.score for r in records], np.float32)
    owned = np.array([r.ownership is not None for r in records])
    tmp = f"{path}.tmp.npz"
    np.savez_compressed(tmp, format=np.array(FORMAT), size=np.int64(size), komi=np.float64(komi),
                        moves=moves, colours=colours, policy=policy, full=full, values=values, offsets=offsets,
                        winner=winner, score=score, ownership=ownership, owned=owned,
                        cpu_seconds=np.float64(np.nan if cpu_seconds is None else cpu_seconds))
    os.replace(tmp, path)


# The arrays of one games file, inflated, at most: a 19x19 generation of 500 games is about 100 MB. Every
# array's .npy header (dtype, shape) is checked before the array is read, so that a header that lies or a
# compression bomb costs nothing.
MAX_GAMES_BYTES = 1 << 30
_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
# what zipfile and numpy raise for a damaged archive or member (lzma and bz2 for a flipped method field)
_DAMAGED = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError,
            NotImplementedError, RuntimeError, struct.error)


class _GamesArchive:
    """An .npz games file (a path or a binary file object) read through checks: ``get`` reads an array only
    after its header has the expected dtype kind and shape and its size fits the file and the budget."""

    def __init__(self, path):
        if isinstance(path, (str, os.PathLike)):
            self.where = os.fspath(path)
            data = validate.read_regular(self.where, MAX_GAMES_BYTES, "games file")
        else:  # selfplay_shards hands parts over as BytesIO
            self.where = getattr(path, "name", "games data")
            data = path.read(MAX_GAMES_BYTES + 1)
            if len(data) > MAX_GAMES_BYTES:
                validate.fail(self.where, f"more than {MAX_GAMES_BYTES:,} bytes")
        if not data.startswith(b"PK"):  # np.load would read a bare .npy header's shape, or try pickle
            validate.fail(self.where, "not a freenet Go games file (not an .npz archive)")
        self.budget = MAX_GAMES_BYTES
        try:
            self.npz = np.load(io.BytesIO(data), allow_pickle=False)
        except _DAMAGED as e:
            validate.fail(self.where, f"cannot read games ({e})")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.npz.close()

    def has(self, key):
        return f"{key}.npy" in self.npz.zip.namelist()

    def get(self, key, kinds, shape):
        """The array ``key``: dtype kind one of ``kinds`` ("iu", "f", "b", "U"), shape ``shape`` (None: any length)."""
        if not self.has(key):
            validate.fail(self.where, f"not a valid games file: no '{key}' array")
        try:
            info = self.npz.zip.getinfo(f"{key}.npy")
            with self.npz.zip.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version not in _NPY_HEADERS:
                    validate.fail(self.where, f"'{key}' is in .npy format {version}, not 1.0 or 2.0")
                got, _, dtype = _NPY_HEADERS[version](f)
        except validate.FileFormatError:  # a ValueError too
            raise
        except _DAMAGED as e:
            validate.fail(self.where, f"cannot read games ('{key}': {e})")
        if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
            validate.fail(self.where, f"not a valid games file: '{key}' holds {dtype}")
        if len(got) != len(shape) or any(g < 0 or w is not None and g != w for g, w in zip(got, shape)):
            want = tuple("any" if w is None else w for w in shape)
            validate.fail(self.where, f"not a valid games file: '{key}' has shape {got}, expected {want}")
        nbytes = math.prod(got) * dtype.itemsize
        if nbytes > info.file_size:
            validate.fail(self.where, f"not a valid games file: the header of '{key}' claims {nbytes:,} bytes, the "
                                      f"archive holds {info.file_size:,}")
        if nbytes > self.budget:
            validate.fail(self.where, f"its arrays hold more than {MAX_GAMES_BYTES:,} bytes (a compression bomb?)")
        self.budget -= nbytes
        try:
            return self.npz[key]
        except _DAMAGED as e:
            validate.fail(self.where, f"cannot read games ('{key}': {e})")


def games_cpu_seconds(path):
    """The CPU seconds stored with a games file, 0.0 if it has none."""
    with _GamesArchive(path) as f:
        x = float(f.get("cpu_seconds", "f", ())) if f.has("cpu_seconds") else np.nan
    return 0.0 if np.isnan(x) else validate.expect(x, float, f"{f.where}: cpu_seconds", 0)


FORMAT = "freenet.go.games/2"


def load_games(path):
    """The GameRecords in a file written by ``save_games`` (this format or /1, without values,
    full-search flags and ownership). A file that is not one raises FileFormatError naming it: every
    array's dtype and shape is checked before it is read, and the arrays against each other."""
    with _GamesArchive(path) as f:
        where = f.where
        kind = str(f.get("format", "U", ())) if f.has("format") else None
        if kind not in (FORMAT, "freenet.go.games/1"):
            validate.fail(where, "not a freenet Go games file")
        size = int(f.get("size", "iu", ()))
        if not MIN_SIZE <= size <= MAX_SIZE:
            validate.fail(where, f"not a valid games file: board size {size}")
        komi = validate.expect(float(f.get("komi", "iuf", ())), float, f"{where}: komi")  # finite
        offsets = f.get("offsets", "iu", (None,))
        if (not len(offsets) or offsets[0] != 0 or offsets.max() > MAX_GAMES_BYTES  # (then int64 holds them)
                or (np.diff(offsets.astype(np.int64)) < 0).any()):
            validate.fail(where, "not a valid games file: game offsets do not match the moves")
        games, positions, N2 = len(offsets) - 1, int(offsets[-1]), size * size + 1
        # shapes from the offsets and the size: an array that disagrees is refused before it is read
        moves, colours = f.get("moves", "iu", (positions,)), f.get("colours", "iu", (positions,))
        policy = f.get("policy", "f", (positions, N2))
        winner, score = f.get("winner", "iu", (games,)), f.get("score", "f", (games,))
        if kind == FORMAT:
            full, values = f.get("full", "b", (positions,)), f.get("values", "f", (positions,))
            ownership, owned = f.get("ownership", "iu", (games, N2 - 1)), f.get("owned", "b", (games,))
        else:
            full, values = np.ones(positions, bool), np.full(positions, np.nan, np.float16)
            ownership, owned = np.zeros((games, N2 - 1), np.int8), np.zeros(games, bool)
    problems = []
    if positions and ((moves < 0).any() or (moves >= N2).any() or not np.isin(colours, (BLACK, WHITE)).all()):
        problems.append("a move or colour is out of range")
    if not np.isin(winner, (-1, 0, 1)).all():
        problems.append("a winner is not -1, 0 or 1")
    if games and ((ownership < -1).any() or (ownership > 1).any()):
        problems.append("an ownership is not -1, 0 or 1")
    if problems:
        validate.fail(where, f"not a valid games file: {'; '.join(problems)}")
    records = []
    for i in range(games):
        a, b = int(offsets[i]), int(offsets[i + 1])
        r = GameRecord(size, komi, [(int(c), int(p)) for c, p in zip(colours[a:b], moves[a:b])],
                       [policy[k] if full[k] else None for k in range(a, b)],
                       {1: BLACK, -1: WHITE, 0: EMPTY}[int(winner[i])], float(score[i]),
                       values=[float(v) for v in values[a:b]], ownership=ownership[i].copy() if owned[i] else None)
        r.resigned = bool(np.isinf(r.score))
        records.append(r)
    return records
