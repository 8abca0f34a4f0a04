"""Self-play: a net plays itself, many games at once, and the positions, search probabilities and results
are kept for training.

All games in flight search their current move together (``mcts.run_many``), so each net call evaluates
``parallel x batch`` leaves. Each move: Dirichlet noise at the root, ``playouts`` new walks (the tree of
the previous move is reused), the visit counts stored as the policy target, the move drawn with
temperature 1 for the first ``temperature_moves`` moves and the most visited one after. A side whose
root winrate falls below ``resign`` resigns, except in a ``no_resign_fraction`` of the games.

Games are stored as compact NumPy files (``save_games``): moves and colours as small integers, the search
probabilities as float16, one winner per game. ``load_games`` reads them back, and the planes are
rebuilt by replaying the moves. Same seed, same net: same games.
"""

import os
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm import tqdm

from freenet.errors import FreenetError
from freenet.go.board import BLACK, EMPTY, WHITE, Board
from freenet.go.mcts import MCTS, SearchConfig, run_many


@dataclass
class SelfPlayConfig:
    size: int = 9
    komi: float = 7.5
    playouts: int = 200
    batch: int = 8  # leaves per game per net call
    parallel: int = 16  # games in flight
    temperature_moves: int = None  # None: size (9 on 9x9, 19 on 19x19)
    resign: float = 0.05  # winrate; 0 never resigns
    no_resign_fraction: float = 0.2
    max_moves: int = None  # None: 2 * size * size
    c_puct: float = 1.5
    fpu_reduction: float = 0.25
    noise_fraction: float = 0.25
    dirichlet_alpha: float = None

    def as_dict(self):
        return asdict(self)


@dataclass
class GameRecord:
    size: int
    komi: float
    moves: list = field(default_factory=list)  # (colour, point)
    policies: list = field(default_factory=list)  # search probabilities before each move (N*N+1)
    winner: int = None  # BLACK, WHITE or EMPTY
    score: float = None  # Black's margin; +-inf for a resignation
    resigned: bool = False


class _Game:
    def __init__(self, index, config, evaluator, seed):
        self.index = index
        self.rng = np.random.default_rng([seed, index])
        self.resign_allowed = config.resign > 0 and self.rng.random() >= config.no_resign_fraction
        search_config = SearchConfig(c_puct=config.c_puct, fpu_reduction=config.fpu_reduction, noise=True,
                                     dirichlet_alpha=config.dirichlet_alpha, noise_fraction=config.noise_fraction,
                                     batch=config.batch, komi=config.komi, max_moves=config.max_moves)
        self.search = MCTS(evaluator, search_config, self.rng)
        self.board = Board(config.size)
        self.search.set_board(self.board)
        self.record = GameRecord(config.size, config.komi)


def play_games(evaluator, games, config=None, seed=0, progress=False, first_index=0):
    """Plays ``games`` games of self-play; returns their GameRecords in order of game index."""
    config = config or SelfPlayConfig()
    N = config.size
    max_moves = config.max_moves or 2 * N * N
    temperature_moves = N if config.temperature_moves is None else config.temperature_moves
    pending = list(range(first_index, first_index + games))
    active, done = [], {}
    bar = tqdm(total=games, desc="self-play", unit="game", disable=not progress, leave=False)
    moves_played = 0
    while pending or active:
        while pending and len(active) < config.parallel:
            active.append(_Game(pending.pop(0), config, evaluator, seed))
        searches = [g.search for g in active]
        for s in searches:
            if s.ensure_root():
                s.add_noise()
        run_many(searches, config.playouts)
        still = []
        for g in active:
            b = g.board
            policy = g.search.visit_policy()
            winrate = (g.search.root_value() + 1) / 2
            if g.resign_allowed and winrate < config.resign:
                b.resign(b.to_move)
            else:
                t = 1.0 if b.move_number < temperature_moves else 0.0
                move = g.search.choose(t)
                g.record.moves.append((b.to_move, move))
                g.record.policies.append(policy.astype(np.float16))
                b.play(move)
                g.search.advance(move)
                moves_played += 1
            if b.game_over or b.move_number >= max_moves:
                rec = g.record
                rec.winner = b.winner(config.komi)
                rec.resigned = b.resigned is not None
                rec.score = (np.inf if rec.winner == BLACK else -np.inf) if rec.resigned else b.score(config.komi)
                done[g.index] = rec
                bar.update(1)
                bar.set_postfix(moves=moves_played)
            else:
                still.append(g)
        active = still
    bar.close()
    return [done[i] for i in sorted(done)]


# -- files ------------------------------------------------------------------------------------------

def save_games(path, records):
    """Writes games to one compressed .npz (written to a temporary name, then renamed)."""
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
    for i, r in enumerate(records):
        a = offsets[i]
        for k, (c, p) in enumerate(r.moves):
            moves[a + k], colours[a + k] = p, c
        if r.policies:
            policy[a:a + len(r.moves)] = np.stack(r.policies)
        else:  # a record without search probabilities (an SGF game): the move played
            policy[np.arange(a, a + len(r.moves)), moves[a:a + len(r.moves)]] = 1
    winner = np.array([{BLACK: 1, WHITE: -1, EMPTY: 0}.get(r.winner, 0) for r in records], np.int8)
    score = np.array([np.nan if r.score is None else r.score for r in records], np.float32)
    tmp = f"{path}.tmp.npz"
    np.savez_compressed(tmp, format=np.array("freenet.go.games/1"), size=np.int64(size), komi=np.float64(komi),
                        moves=moves, colours=colours, policy=policy, offsets=offsets, winner=winner, score=score)
    os.replace(tmp, path)


def load_games(path):
    """The GameRecords in a file written by ``save_games``."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if "format" not in f or str(f["format"]) != "freenet.go.games/1":
                raise FreenetError(f"{path}: not a freenet Go games file")
            size, komi = int(f["size"]), float(f["komi"])
            moves, colours, policy = f["moves"], f["colours"], f["policy"]
            offsets, winner, score = f["offsets"], f["winner"], f["score"]
    except FileNotFoundError:
        raise FreenetError(f"no such games file: {path}") from None
    except (OSError, ValueError, KeyError) as e:
        raise FreenetError(f"{path}: cannot read games ({e})") from None
    records = []
    for i in range(len(offsets) - 1):
        a, b = int(offsets[i]), int(offsets[i + 1])
        r = GameRecord(size, komi, [(int(c), int(p)) for c, p in zip(colours[a:b], moves[a:b])],
                       list(policy[a:b]), {1: BLACK, -1: WHITE, 0: EMPTY}[int(winner[i])], float(score[i]))
        r.resigned = bool(np.isinf(r.score))
        records.append(r)
    return records
