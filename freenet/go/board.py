"""Go rules: a board of any size from 5 to 19 with captures, no suicide, positional superko, passes,
resignation and area (Tromp-Taylor) scoring with komi.

Points are numbered ``row * size + col`` with row 0 the bottom line (GTP's row 1, Leela Zero's y = 0);
``size * size`` is the pass. The stones live on a padded array (one line of edge points all round),
and groups are kept incrementally as in Leela Zero's FastBoard: each stone knows its group's head, the
stones of a group form a circular list, and the head holds the group's exact liberty count, so a
legality check looks at the four neighbours only. The inner loops are compiled by Numba.

>>> b = Board(5)
>>> b.play(b.point("C3")); b.play(b.point("C4"))
>>> b.to_move == BLACK, b.area()
(True, (1, 1))
"""

import numpy as np
from numba import njit

from freenet.errors import FreenetError

EMPTY, BLACK, WHITE, EDGE = 0, 1, 2, 3
MIN_SIZE, MAX_SIZE = 5, 19
COLUMNS = "ABCDEFGHJKLMNOPQRST"  # GTP columns: no I

_ZOBRIST = np.random.default_rng(20240505).integers(1, 2**63 - 1, size=(3, (MAX_SIZE + 2) ** 2), dtype=np.int64)


class IllegalMove(FreenetError):
    """A move that the rules forbid (occupied point, suicide, superko, game over)."""


# -- compiled inner loops -----------------------------------------------------------------------------

@njit(cache=True)
def _stamp_libs(color, nxt, head, W, mark):
    """Exact liberty count of the group whose head is ``head`` (``mark`` is scratch, all zero on entry)."""
    count = 0
    s = head
    while True:
        for u in (s - 1, s + 1, s - W, s + W):
            if color[u] == EMPTY and mark[u] == 0:
                mark[u] = 1
                count += 1
        s = nxt[s]
        if s == head:
            break
    # clear the marks
    s = head
    while True:
        for u in (s - 1, s + 1, s - W, s + W):
            mark[u] = 0
        s = nxt[s]
        if s == head:
            break
    return count


@njit(cache=True)
def _result_hash(color, parent, nxt, libs, W, v, c, h, zob):
    """(legal apart from superko, hash after the move) for ``c`` playing at empty point ``v``."""
    opp = 3 - c
    h ^= zob[c, v]
    ok = False
    seen = np.empty(4, np.int64)
    ns = 0
    for u in (v - 1, v + 1, v - W, v + W):
        cu = color[u]
        if cu == EMPTY:
            ok = True
        elif cu == c:
            if libs[parent[u]] > 1:
                ok = True
        elif cu == opp:
            g = parent[u]
            if libs[g] == 1:
                dup = False
                for k in range(ns):
                    if seen[k] == g:
                        dup = True
                if not dup:
                    seen[ns] = g
                    ns += 1
                    ok = True
                    s = g
                    while True:
                        h ^= zob[opp, s]
                        s = nxt[s]
                        if s == g:
                            break
    return ok, h


@njit(cache=True)
def _is_legal(color, parent, nxt, libs, W, v, c, h, zob, history, nhist):
    if color[v] != EMPTY:
        return False
    ok, h2 = _result_hash(color, parent, nxt, libs, W, v, c, h, zob)
    if not ok:
        return False
    for i in range(nhist):
        if history[i] == h2:
            return False
    return True


@njit(cache=True)
def _legal_mask(color, parent, nxt, libs, N, W, c, h, zob, history, nhist, out):
    for r in range(N):
        for col in range(N):
            v = (r + 1) * W + col + 1
            out[r * N + col] = _is_legal(color, parent, nxt, libs, W, v, c, h, zob, history, nhist)


@njit(cache=True)
def _remove_group(color, parent, nxt, libs, stones, W, g, h, zob):
    """Takes group ``g`` off the board; gives its points back as liberties to the neighbouring groups."""
    c = color[g]
    n = 0
    s = g
    while True:
        color[s] = EMPTY
        h ^= zob[c, s]
        n += 1
        s = nxt[s]
        if s == g:
            break
    seen = np.empty(4, np.int64)
    s = g
    while True:
        ns = 0
        for u in (s - 1, s + 1, s - W, s + W):
            cu = color[u]
            if cu == BLACK or cu == WHITE:
                gu = parent[u]
                dup = False
                for k in range(ns):
                    if seen[k] == gu:
                        dup = True
                if not dup:
                    seen[ns] = gu
                    ns += 1
                    libs[gu] += 1
        t = nxt[s]
        nxt[s] = s
        parent[s] = s
        s = t
        if s == g:
            break
    stones[g] = 0
    return n, h


@njit(cache=True)
def _play(color, parent, nxt, libs, stones, W, v, c, h, zob, mark):
    """Puts a stone of ``c`` on ``v`` (legality already checked); returns (hash, stones captured)."""
    opp = 3 - c
    color[v] = c
    parent[v] = v
    nxt[v] = v
    stones[v] = 1
    h ^= zob[c, v]
    free = 0
    seen = np.empty(4, np.int64)
    ns = 0
    for u in (v - 1, v + 1, v - W, v + W):
        cu = color[u]
        if cu == EMPTY:
            free += 1
        elif cu == BLACK or cu == WHITE:
            g = parent[u]
            dup = False
            for k in range(ns):
                if seen[k] == g:
                    dup = True
            if not dup:
                seen[ns] = g
                ns += 1
                libs[g] -= 1  # v was one of its liberties
    libs[v] = free
    merged = False
    for u in (v - 1, v + 1, v - W, v + W):
        if color[u] == c:
            a = parent[u]
            b = parent[v]
            if a != b:
                merged = True
                if stones[a] < stones[b]:
                    a, b = b, a
                # relabel group b into a, then splice the circular lists
                s = b
                while True:
                    parent[s] = a
                    s = nxt[s]
                    if s == b:
                        break
                t = nxt[a]
                nxt[a] = nxt[b]
                nxt[b] = t
                stones[a] += stones[b]
    if merged:
        g = parent[v]
        libs[g] = _stamp_libs(color, nxt, g, W, mark)
    captured = 0
    for u in (v - 1, v + 1, v - W, v + W):
        if color[u] == opp and libs[parent[u]] == 0:
            n, h = _remove_group(color, parent, nxt, libs, stones, W, parent[u], h, zob)
            captured += n
    return h, captured


@njit(cache=True)
def _owner_map(color, N, W, out):
    """Tromp-Taylor owner of each point into ``out`` (N*N): +1 Black (a stone, or empty reaching only
    Black), -1 White, 0 neither."""
    region = np.full(W * W, -1, np.int64)
    stack = np.empty(W * W, np.int64)
    members = np.empty(W * W, np.int64)
    for r in range(N):
        for col in range(N):
            v = (r + 1) * W + col + 1
            cv = color[v]
            if cv == BLACK:
                out[r * N + col] = 1
            elif cv == WHITE:
                out[r * N + col] = -1
            elif region[v] < 0:  # flood the empty region
                stack[0] = v
                top = 1
                region[v] = v
                n = 0
                reach = 0
                while top > 0:
                    top -= 1
                    s = stack[top]
                    members[n] = s
                    n += 1
                    for u in (s - 1, s + 1, s - W, s + W):
                        cu = color[u]
                        if cu == EMPTY:
                            if region[u] < 0:
                                region[u] = v
                                stack[top] = u
                                top += 1
                        elif cu == BLACK:
                            reach |= 1
                        elif cu == WHITE:
                            reach |= 2
                owner = 1 if reach == 1 else -1 if reach == 2 else 0
                for k in range(n):
                    s = members[k]
                    out[(s // W - 1) * N + s % W - 1] = owner


@njit(cache=True)
def _area(color, N, W):
    """Tromp-Taylor area: (black points, white points), stones plus empty regions reaching one colour only."""
    owner = np.empty(N * N, np.int8)
    _owner_map(color, N, W, owner)
    black = 0
    white = 0
    for k in range(N * N):
        if owner[k] == 1:
            black += 1
        elif owner[k] == -1:
            white += 1
    return black, white


@njit(cache=True)
def _rand(state):
    """xorshift64*: (next state, a 31-bit random number)."""
    x = state[0]
    x ^= x >> np.int64(12)
    x ^= x << np.int64(25)
    x ^= (x >> np.int64(27)) & np.int64(0x1FFFFFFFFF)
    state[0] = x
    return (x * np.int64(2685821657736338717) >> np.int64(33)) & np.int64(0x7FFFFFFF)


@njit(cache=True)
def _is_eye(color, W, v, c):
    """A point surrounded by ``c`` whose diagonals make it a true eye (the usual playout heuristic)."""
    for u in (v - 1, v + 1, v - W, v + W):
        if color[u] != c and color[u] != EDGE:
            return False
    bad = 0
    edge = 0
    for u in (v - W - 1, v - W + 1, v + W - 1, v + W + 1):
        cu = color[u]
        if cu == EDGE:
            edge = 1
        elif cu != c and cu != EMPTY:
            bad += 1
        elif cu == EMPTY:
            pass
    if edge:
        return bad == 0
    return bad < 2


@njit(cache=True)
def _playout(color, parent, nxt, libs, stones, N, W, c, h, zob, passes, seed, max_moves):
    """Plays random moves (never filling one's own eye, simple ko forbidden) until two passes or
    ``max_moves``; returns (black area minus white area, moves played). Works on the arrays given
    (callers pass copies)."""
    state = np.empty(1, np.int64)
    state[0] = seed * np.int64(6364136223846793005) + np.int64(1442695040888963407)
    if state[0] == 0:
        state[0] = 1
    mark = np.zeros(W * W, np.int64)
    empties = np.empty(N * N, np.int64)
    ko = -1
    moves = 0
    while passes < 2 and moves < max_moves:
        n = 0
        for r in range(N):
            for col in range(N):
                v = (r + 1) * W + col + 1
                if color[v] == EMPTY:
                    empties[n] = v
                    n += 1
        played = False
        while n > 0:
            i = _rand(state) % n
            v = empties[i]
            empties[i] = empties[n - 1]
            n -= 1
            if v == ko or _is_eye(color, W, v, c):
                continue
            ok, h2 = _result_hash(color, parent, nxt, libs, W, v, c, h, zob)
            if not ok:
                continue
            h, cap = _play(color, parent, nxt, libs, stones, W, v, c, h, zob, mark)
            ko = -1
            if cap == 1 and stones[parent[v]] == 1 and libs[parent[v]] == 1:
                for u in (v - 1, v + 1, v - W, v + W):
                    if color[u] == EMPTY:
                        ko = u
            played = True
            break
        if played:
            passes = 0
        else:
            passes += 1
            ko = -1
        c = 3 - c
        moves += 1
    b, w = _area(color, N, W)
    return b - w, moves


# -- the board ----------------------------------------------------------------------------------------

def check_size(size):
    if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise FreenetError(f"board size must be an integer from {MIN_SIZE} to {MAX_SIZE}, not {size!r}")
    return int(size)


def opponent(color):
    return 3 - color


class Board:
    """A game in progress: the stones, whose turn it is, and what the rules need to remember (the
    positions seen so far for superko, consecutive passes, the last 8 positions for the net's input).

    ``play(point)`` raises ``IllegalMove``; ``copy()`` is cheap (a few small arrays).
    """

    __slots__ = ("size", "W", "color", "parent", "nxt", "libs", "stones", "hash", "to_move", "passes",
                 "history", "nhist", "past", "moves", "resigned", "_mark")

    def __init__(self, size=19):
        N = check_size(size)
        W = N + 2
        self.size, self.W = N, W
        self.color = np.full(W * W, EDGE, np.int8)
        inner = np.zeros((W, W), bool)
        inner[1:-1, 1:-1] = True
        self.color[inner.ravel()] = EMPTY
        self.parent = np.arange(W * W, dtype=np.int16)
        self.nxt = np.arange(W * W, dtype=np.int16)
        self.libs = np.zeros(W * W, np.int16)
        self.stones = np.zeros(W * W, np.int16)
        self.hash = np.int64(0)
        self.to_move = BLACK
        self.passes = 0
        self.history = np.zeros(64, np.int64)  # hashes of every position so far (positional superko)
        self.history[0] = self.hash
        self.nhist = 1
        self.past = ()  # the last 8 positions before this one, most recent first (N*N int8 arrays)
        self.moves = []  # (colour, point) in order
        self.resigned = None  # the colour that resigned, if any
        self._mark = np.zeros(W * W, np.int64)

    # -- coordinates ----------------------------------------------------------------------------
    @property
    def pass_move(self):
        return self.size * self.size

    def vertex(self, point):
        return (point // self.size + 1) * self.W + point % self.size + 1

    def point(self, text):
        """A GTP vertex ('D4', 'pass') as a point number; FreenetError if it is not on this board."""
        t = str(text).strip().upper()
        if t == "PASS":
            return self.pass_move
        if len(t) < 2 or t[0] not in COLUMNS or not t[1:].isdigit():
            raise FreenetError(f"not a vertex: {text!r}")
        col, row = COLUMNS.index(t[0]), int(t[1:]) - 1
        if col >= self.size or not 0 <= row < self.size:
            raise FreenetError(f"vertex {text!r} is off the {self.size}x{self.size} board")
        return row * self.size + col

    def name(self, point):
        """The GTP name of a point ('D4', 'pass')."""
        if point == self.pass_move:
            return "pass"
        return f"{COLUMNS[point % self.size]}{point // self.size + 1}"

    # -- state ----------------------------------------------------------------------------------
    def copy(self):
        b = Board.__new__(Board)
        b.size, b.W = self.size, self.W
        b.color, b.parent, b.nxt = self.color.copy(), self.parent.copy(), self.nxt.copy()
        b.libs, b.stones = self.libs.copy(), self.stones.copy()
        b.hash, b.to_move, b.passes = self.hash, self.to_move, self.passes
        b.history, b.nhist = self.history.copy(), self.nhist
        b.past, b.moves, b.resigned = self.past, list(self.moves), self.resigned
        b._mark = self._mark  # scratch, always zero between calls
        return b

    def stones_array(self):
        """The stones as a (size, size) int8 array (EMPTY/BLACK/WHITE), row 0 at the bottom."""
        W = self.W
        return self.color.reshape(W, W)[1:-1, 1:-1].copy()

    def at(self, point):
        return int(self.color[self.vertex(point)])

    @property
    def game_over(self):
        return self.passes >= 2 or self.resigned is not None

    @property
    def move_number(self):
        return len(self.moves)

    def is_legal(self, point, color=None):
        c = self.to_move if color is None else color
        if self.game_over or not 0 <= point <= self.pass_move:
            return False
        if point == self.pass_move:
            return True
        return bool(_is_legal(self.color, self.parent, self.nxt, self.libs, self.W, self.vertex(point), c,
                              self.hash, _ZOBRIST, self.history, self.nhist))

    def legal_mask(self, color=None):
        """Bool array of size*size + 1: which points (and the pass, last) are legal for the side to move."""
        c = self.to_move if color is None else color
        out = np.zeros(self.pass_move + 1, bool)
        if self.game_over:
            return out
        _legal_mask(self.color, self.parent, self.nxt, self.libs, self.size, self.W, c, self.hash, _ZOBRIST,
                    self.history, self.nhist, out)
        out[-1] = True
        return out

    def legal_moves(self):
        return np.flatnonzero(self.legal_mask())

    def play(self, point, color=None):
        """Plays ``point`` (or the pass) for ``color`` (default: the side to move); the other side moves next.
        Raises IllegalMove if the rules forbid it."""
        c = self.to_move if color is None else color
        if c not in (BLACK, WHITE):
            raise FreenetError(f"colour must be BLACK (1) or WHITE (2), not {c!r}")
        point = int(point)
        if self.game_over:
            raise IllegalMove("the game is over")
        if not 0 <= point <= self.pass_move:
            raise IllegalMove(f"point {point} is off the {self.size}x{self.size} board")
        snapshot = self.stones_array()
        if point == self.pass_move:
            self.passes += 1
        else:
            v = self.vertex(point)
            if self.color[v] != EMPTY:
                raise IllegalMove(f"{self.name(point)} is occupied")
            ok, h2 = _result_hash(self.color, self.parent, self.nxt, self.libs, self.W, v, c, self.hash, _ZOBRIST)
            if not ok:
                raise IllegalMove(f"{self.name(point)} is suicide")
            if (self.history[:self.nhist] == h2).any():
                raise IllegalMove(f"{self.name(point)} repeats an earlier position (superko)")
            self.hash, _ = _play(self.color, self.parent, self.nxt, self.libs, self.stones, self.W, v, c,
                                 self.hash, _ZOBRIST, self._mark)
            if self.nhist == len(self.history):
                self.history = np.concatenate([self.history, np.zeros(len(self.history), np.int64)])
            self.history[self.nhist] = self.hash
            self.nhist += 1
            self.passes = 0
        self.past = (snapshot,) + self.past[:7]
        self.moves.append((c, point))
        self.to_move = opponent(c)

    def resign(self, color=None):
        self.resigned = self.to_move if color is None else color

    # -- scoring --------------------------------------------------------------------------------
    def area(self):
        """(black area, white area) under Tromp-Taylor rules: stones plus empty points reaching one colour only."""
        b, w = _area(self.color, self.size, self.W)
        return int(b), int(w)

    def area_map(self):
        """(N*N,) int8: +1 where the point is Black's area (Tromp-Taylor), -1 White's, 0 neither."""
        out = np.zeros(self.size * self.size, np.int8)
        _owner_map(self.color, self.size, self.W, out)
        return out

    def score(self, komi=7.5):
        """Black's area minus White's area minus komi (positive: Black wins)."""
        b, w = self.area()
        return b - w - komi

    def winner(self, komi=7.5):
        """BLACK, WHITE, or EMPTY for a draw; a resignation decides the game."""
        if self.resigned is not None:
            return opponent(self.resigned)
        s = self.score(komi)
        return BLACK if s > 0 else WHITE if s < 0 else EMPTY

    def playout(self, seed, max_moves=None):
        """Black area minus White area after random play (no eye filling) from here to two passes."""
        if max_moves is None:
            max_moves = 3 * self.size * self.size
        return int(self.playout_moves(seed, max_moves)[0])

    def playout_moves(self, seed, max_moves=None):
        """(Black area minus White area, moves played) after a random playout from here."""
        if max_moves is None:
            max_moves = 3 * self.size * self.size
        score, moves = _playout(self.color.copy(), self.parent.copy(), self.nxt.copy(), self.libs.copy(),
                                self.stones.copy(), self.size, self.W, self.to_move, self.hash, _ZOBRIST,
                                self.passes, np.int64(seed), max_moves)
        return int(score), int(moves)

    # -- display --------------------------------------------------------------------------------
    def __str__(self):
        return render(self.stones_array(), self.size)

    def __repr__(self):
        return f"Board({self.size}, moves={len(self.moves)}, to_move={'BW'[self.to_move - 1]})"


def render(stones, size, last=None):
    """Text picture of a (size, size) stone array, top row first, as GTP's showboard prints it."""
    letters = COLUMNS[:size]
    lines = ["   " + " ".join(letters)]
    for r in range(size - 1, -1, -1):
        row = " ".join(".XO"[stones[r, c]] for c in range(size))
        lines.append(f"{r + 1:2d} {row} {r + 1:2d}")
    lines.append("   " + " ".join(letters))
    return "\n".join(lines)
