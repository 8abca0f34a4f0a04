"""Which stones are dead at the end of a game, and the score once they are taken off.

``Board.score`` counts every stone on the board (Tromp-Taylor); a referee such as GNU Go first removes the
dead stones and then counts the area (Chinese rules), so a position can be a win by one count and a loss
by the other. The dead stones are judged from an *ownership* map: an (N*N,) float array in [-1, 1], +1
where Black will own the point, -1 where White will, in Black's sign whoever is to move. It may come from
playouts (``ownership_by_playouts``) or from a net's ownership head; nothing here depends on which.

The playouts are "heavy" (take a chain in atari, save one's own, never a self-atari of two or more
stones): uniform random ones (``Board.playout``) let dead stones in atari escape and big groups fill
their own liberties. On the 103 games of ``docs/go-match`` that ended with two passes, these playouts
(256) give the same dead stones as GNU Go 3.8's ``final_status_list dead`` in 101 games and the same
winner after removal in all 103 (uniform playouts: 87 and 95). The two misses have one shape: a group
whose last two liberties it shares with a lone enemy stone inside it, killed only by a two-stone
throw-in that the playouts never play, so they see a seki.

A white stone inside Black's area: alive by Tromp-Taylor (its region reaches both colours), dead here.

>>> from freenet.go.board import Board
>>> b = Board(5)
>>> for m in ["C1", "D1", "C2", "D2", "C3", "D3", "C4", "D4", "C5", "D5", "pass", "B3"]:
...     b.play(b.point(m))
>>> own = ownership_by_playouts(b)
>>> [b.name(p) for p in dead_stones(b, own)], b.score(0.5), score_with_dead_removed(b, dead_stones(b, own), 0.5)
(['B3'], -6.5, 4.5)
"""

import numpy as np
from numba import njit

from freenet.errors import FreenetError
from freenet.go.board import (_ZOBRIST, BLACK, EMPTY, WHITE, Board, _area, _is_eye, _owner_map, _play, _rand,
                              _result_hash)

# A chain is dead when its mean ownership, in its own sign, is below -DEAD_THRESHOLD. On the games above
# (256 playouts, seeds 0-3) every threshold from 0 to 0.3 gives the same results: apart from the two
# misses, the chains GNU Go calls dead measure -0.3 or less, the ones it calls alive +0.38 or more.
DEAD_THRESHOLD = 0.2
SEKI_MARGIN = 0.5  # a seki's shared liberty stays empty in the playouts: ownership near 0


# -- compiled --------------------------------------------------------------------------------------------

@njit(cache=True)
def _after(color, parent, nxt, stones, W, v, c, mark, buf):
    """(liberties, stones) of the chain that ``c`` would form by playing empty ``v``, captures ignored."""
    n = 0
    libs = 0
    size = 1
    mark[v] = 1
    buf[n] = v
    n += 1
    for u in (v - 1, v + 1, v - W, v + W):
        cu = color[u]
        if cu == EMPTY:
            if mark[u] == 0:
                mark[u] = 1
                buf[n] = u
                n += 1
                libs += 1
        elif cu == c:
            g = parent[u]
            if mark[g] == 0:  # heads are stones, liberties empty: one mark array serves both
                mark[g] = 1
                buf[n] = g
                n += 1
                size += stones[g]
                s = g
                while True:
                    for w in (s - 1, s + 1, s - W, s + W):
                        if color[w] == EMPTY and mark[w] == 0:
                            mark[w] = 1
                            buf[n] = w
                            n += 1
                            libs += 1
                    s = nxt[s]
                    if s == g:
                        break
    for k in range(n):
        mark[buf[k]] = 0
    return libs, size


@njit(cache=True)
def _captures(color, parent, libs, W, v, c):
    """Whether ``c`` playing at ``v`` takes an opponent chain."""
    for u in (v - 1, v + 1, v - W, v + W):
        if color[u] == 3 - c and libs[parent[u]] == 1:
            return True
    return False


@njit(cache=True)
def _liberty(color, nxt, W, g):
    """One liberty of chain ``g`` (its only one when it is in atari)."""
    s = g
    while True:
        for u in (s - 1, s + 1, s - W, s + W):
            if color[u] == EMPTY:
                return u
        s = nxt[s]
        if s == g:
            return -1


@njit(cache=True)
def _heavy_playout(color, parent, nxt, libs, stones, N, W, c, h, zob, seed, max_moves):
    """Plays until two passes or ``max_moves`` on the arrays given (callers pass copies). Each move, in
    order: take a chain in atari; save an own chain from atari (if its liberty gives it two or more);
    else a random legal point that fills no own eye and is not a self-atari of two or more stones.
    Simple ko is forbidden, superko ignored."""
    state = np.empty(1, np.int64)
    state[0] = seed * np.int64(6364136223846793005) + np.int64(1442695040888963407)
    if state[0] == 0:
        state[0] = 1
    mark = np.zeros(W * W, np.int64)  # scratch for _after and _play, zero between calls
    buf = np.empty(W * W, np.int64)
    empties = np.empty(N * N, np.int64)
    captures = np.empty(N * N, np.int64)
    escapes = np.empty(N * N, np.int64)
    ko = -1
    moves = 0
    passes = 0
    while passes < 2 and moves < max_moves:
        opp = 3 - c
        move = -1
        # 1. captures, 2. escapes from atari
        ncap = 0
        nesc = 0
        for r in range(N):
            for col in range(N):
                v = (r + 1) * W + col + 1
                cv = color[v]
                if (cv != BLACK and cv != WHITE) or parent[v] != v or libs[v] != 1:
                    continue
                lib = _liberty(color, nxt, W, v)
                if lib == ko or lib < 0:
                    continue
                if cv == opp:
                    ok, _ = _result_hash(color, parent, nxt, libs, W, lib, c, h, zob)
                    if ok:
                        captures[ncap] = lib
                        ncap += 1
                elif cv == c and ncap == 0:
                    nl, _ = _after(color, parent, nxt, stones, W, lib, c, mark, buf)
                    if nl >= 2 or _captures(color, parent, libs, W, lib, c):
                        escapes[nesc] = lib
                        nesc += 1
        if ncap > 0:
            move = captures[_rand(state) % ncap]
        elif nesc > 0:
            move = escapes[_rand(state) % nesc]
        else:
            n = 0
            for r in range(N):
                for col in range(N):
                    v = (r + 1) * W + col + 1
                    if color[v] == EMPTY:
                        empties[n] = v
                        n += 1
            while n > 0:
                i = _rand(state) % n
                v = empties[i]
                empties[i] = empties[n - 1]
                n -= 1
                if v == ko or _is_eye(color, W, v, c):
                    continue
                ok, _ = _result_hash(color, parent, nxt, libs, W, v, c, h, zob)
                if not ok:
                    continue
                # a self-atari of one stone stays allowed: throw-ins and nakade kill groups
                nl, ns = _after(color, parent, nxt, stones, W, v, c, mark, buf)
                if nl <= 1 and ns >= 2 and not _captures(color, parent, libs, W, v, c):
                    continue
                move = v
                break
        if move >= 0:
            h, cap = _play(color, parent, nxt, libs, stones, W, move, c, h, zob, mark)
            ko = -1
            if cap == 1 and stones[parent[move]] == 1 and libs[parent[move]] == 1:
                for u in (move - 1, move + 1, move - W, move + W):
                    if color[u] == EMPTY:
                        ko = u
            passes = 0
        else:
            passes += 1
            ko = -1
        c = opp
        moves += 1
    return moves


@njit(cache=True)
def _ownership(color, parent, nxt, libs, stones, N, W, to_move, h, zob, playouts, seed, max_moves):
    total = np.zeros(N * N, np.float64)
    owner = np.zeros(N * N, np.int64)
    for i in range(playouts):
        c = color.copy()
        # half the playouts start with the other side: at the end of a game nobody is really to move
        first = to_move if i % 2 == 0 else 3 - to_move
        _heavy_playout(c, parent.copy(), nxt.copy(), libs.copy(), stones.copy(), N, W, first, h, zob,
                       seed * np.int64(1000003) + i, max_moves)
        _owner_map(c, N, W, owner)
        for k in range(N * N):
            total[k] += owner[k]
    for k in range(N * N):
        total[k] /= playouts
    return total


# -- checks ----------------------------------------------------------------------------------------------

def _check_board(board):
    if not isinstance(board, Board):
        raise FreenetError(f"expected a Board, not {type(board).__name__}")


def _check_ownership(board, ownership):
    try:
        own = np.asarray(ownership, dtype=np.float64)
    except (TypeError, ValueError):
        raise FreenetError("ownership must be an array of numbers") from None
    n = board.size * board.size
    if own.shape != (n,):
        raise FreenetError(f"ownership must have shape ({n},) for a {board.size}x{board.size} board, "
                           f"not {own.shape}")
    if not np.isfinite(own).all():
        raise FreenetError("ownership holds NaN or infinite values")
    return own


def _check_int(name, value, low, high):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not low <= value < high:
        raise FreenetError(f"{name} must be an integer from {low} to {high - 1}, not {value!r}")
    return int(value)


# -- ownership -------------------------------------------------------------------------------------------

def ownership_by_playouts(board, playouts=256, seed=0):
    """Monte-Carlo ownership: the mean over ``playouts`` heavy playouts from ``board`` of +1 where a point
    ends as Black's area (Tromp-Taylor: a Black stone, or empty reaching only Black), -1 White's, 0
    neutral; (N*N,) float64 in Black's sign.

    Deterministic for a seed, in the calling thread. The playouts go on even if the game is over (two
    passes), and every other one starts with the side not to move: at the end of a game nobody really
    is, and a chain in atari should not live or die by who passed last."""
    _check_board(board)
    playouts = _check_int("playouts", playouts, 1, 2**31)
    seed = _check_int("seed", seed, -2**62, 2**62)
    N = board.size
    return _ownership(board.color, board.parent, board.nxt, board.libs, board.stones, N, board.W,
                      board.to_move, board.hash, _ZOBRIST, playouts, np.int64(seed), 3 * N * N)


# -- chains and their status -----------------------------------------------------------------------------

def chains(board):
    """The chains on the board: a list of (colour, sorted list of points), ordered by their first point."""
    _check_board(board)
    found = {}
    for p in range(board.size * board.size):
        v = board.vertex(p)
        c = int(board.color[v])
        if c in (BLACK, WHITE):
            found.setdefault(int(board.parent[v]), (c, []))[1].append(p)
    return sorted(found.values(), key=lambda chain: chain[1][0])


def _own_sign_mean(own, color, points):
    """A chain's mean ownership in its own sign: +1 surely its own, -1 surely the opponent's."""
    return (1.0 if color == BLACK else -1.0) * float(own[points].mean())


def dead_stones(board, ownership, threshold=DEAD_THRESHOLD):
    """Sorted points of the stones whose chain is dead: its mean ownership, in its own colour's sign, is
    below ``-threshold`` (the opponent owns it). A chain is dead or alive as a whole."""
    own = _check_ownership(board, ownership)
    dead = []
    for color, points in chains(board):
        if _own_sign_mean(own, color, points) < -threshold:
            dead.extend(points)
    return sorted(dead)


def self_atari(board, point, color):
    """Whether ``color`` playing on empty ``point`` leaves its chain in atari (or is suicide) without
    capturing anything."""
    _check_board(board)
    point = _check_int("point", point, 0, board.size * board.size)
    if color not in (BLACK, WHITE):
        raise FreenetError(f"colour must be BLACK (1) or WHITE (2), not {color!r}")
    v, W = board.vertex(point), board.W
    if board.color[v] != EMPTY:
        raise FreenetError(f"{board.name(point)} is occupied")
    ok, _ = _result_hash(board.color, board.parent, board.nxt, board.libs, W, v, color, board.hash, _ZOBRIST)
    if not ok:
        return True
    if _captures(board.color, board.parent, board.libs, W, v, color):
        return False
    libs, _ = _after(board.color, board.parent, board.nxt, board.stones, W, v, color,
                     np.zeros(W * W, np.int64), np.empty(W * W, np.int64))
    return libs <= 1


def final_status(board, ownership, threshold=DEAD_THRESHOLD, seki_margin=SEKI_MARGIN):
    """{"alive": [...], "dead": [...], "seki": [...]}, each a list of chains (sorted lists of points).

    Dead as in ``dead_stones``. Seki is only the obvious case: a liberty shared by live chains of both
    colours, owned by neither (ownership within ``seki_margin`` of 0), that neither side can fill without
    putting itself in atari; the live chains touching it are in seki. Every other live chain is alive."""
    own = _check_ownership(board, ownership)
    found = chains(board)
    dead = [_own_sign_mean(own, c, pts) < -threshold for c, pts in found]
    chain_at = {}
    for i, (c, pts) in enumerate(found):
        for p in pts:
            chain_at[board.vertex(p)] = i
    W = board.W
    seki = set()
    for p in range(board.size * board.size):
        v = board.vertex(p)
        if board.color[v] != EMPTY or abs(own[p]) > seki_margin:
            continue
        near = {chain_at[u] for u in (v - 1, v + 1, v - W, v + W) if u in chain_at and not dead[chain_at[u]]}
        if ({found[i][0] for i in near} == {BLACK, WHITE}
                and self_atari(board, p, BLACK) and self_atari(board, p, WHITE)):
            seki |= near
    out = {"alive": [], "dead": [], "seki": []}
    for i, (c, pts) in enumerate(found):
        out["dead" if dead[i] else "seki" if i in seki else "alive"].append(pts)
    return out


# -- scoring ---------------------------------------------------------------------------------------------

def score_with_dead_removed(board, dead, komi):
    """Black's area minus White's minus ``komi`` once the ``dead`` stones (points) are taken off: their
    points become empty, and every empty region counts for the one colour it reaches (Chinese area
    scoring, as GNU Go's referee counts)."""
    _check_board(board)
    try:
        komi = float(komi)
    except (TypeError, ValueError):
        raise FreenetError(f"komi must be a number, not {komi!r}") from None
    if not np.isfinite(komi):
        raise FreenetError(f"komi must be finite, not {komi!r}")
    color = board.color.copy()
    n = board.size * board.size
    for p in dead:
        p = _check_int("a dead stone's point", p, 0, n)
        v = board.vertex(p)
        if board.color[v] not in (BLACK, WHITE):
            raise FreenetError(f"dead stone {board.name(p)} is not a stone")
        color[v] = EMPTY
    b, w = _area(color, board.size, board.W)
    return float(b - w) - komi


def winner_of_score(score):
    """BLACK, WHITE or EMPTY (a draw) for Black's margin ``score``."""
    return BLACK if score > 0 else WHITE if score < 0 else EMPTY
