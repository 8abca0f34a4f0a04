"""The search trees of many games at once, in arrays, compiled: what self-play runs.

``mcts.MCTS`` is the readable search (one Python object per node); this is the same PUCT search with
each game's tree in rows of a few 2-D arrays and the walks, the leaves' input planes and legal moves,
the backups and the tree reuse in Numba. One round (``Forest.round``) walks every game to its next
leaves, evaluates all of them in one net call, and backs them up, so the net's batch throughput is
the limit of self-play, not Python.

A tree is a block of rows of its game: row 0 is the root; a node's children are the ``count`` rows
from ``first`` on, one per legal move (``move``), created when the node is expanded. On each child:

    visits  walks through it (a walk waiting for its leaf's value counts, with a virtual loss)
    wsum    the sum of their values for the player who chose it (-1 per waiting walk)
    prior   the net's probability of its move (with Dirichlet noise at the root in self-play)
    value   the net's value at it for its own side to move (once expanded), or the exact result
    status  FRESH, PENDING (waiting for the net), EXPANDED or TERMINAL

Selection, first-play urgency, virtual loss and the order of the sums are those of ``mcts.MCTS``, so
with the same evaluator both give the same visit counts (tested). KataGo's forced playouts (Wu 2019,
section 3.1) are an option of the root: a child visited fewer than ``sqrt(k P sum N)`` times is
walked into before PUCT decides; ``prune_forced`` takes those walks back out of the policy target.
"""

import math

import numpy as np
from numba import njit

from freenet.go.board import _ZOBRIST, BLACK, EDGE, EMPTY, _area, _is_legal, _owner_map, _play
from freenet.go.features import HISTORY, PLANES

FRESH, PENDING, EXPANDED, TERMINAL = 0, 1, 2, 3
# columns of Forest.pos, a game's root position besides its stones
HASH, TO_MOVE, PASSES, MOVES, NHIST = 0, 1, 2, 3, 4
# entries of Forest.rules
C_PUCT, FPU, FPU_ROOT, KOMI, MAX_MOVES, FORCED_K = 0, 1, 2, 3, 4, 5


# -- one walk ---------------------------------------------------------------------------------------

@njit(cache=True)
def _select_child(tree, g, node, rules, at_root, forced):
    move, first, count, visits, wsum, prior, prior_raw, value, status, top = tree
    f, n = first[g, node], count[g, node]
    total = 0.0
    mass = 0.0  # summed in order, as mcts.MCTS does
    for j in range(f, f + n):
        if visits[g, j] > 0:
            total += visits[g, j]
            mass += prior[g, j]
    if at_root and forced:
        for j in range(f, f + n):  # forced playouts: a visited child gets sqrt(k P total) walks at least
            if visits[g, j] > 0 and visits[g, j] < math.sqrt(rules[FORCED_K] * prior[g, j] * total):
                return j
    fpu = value[g, node] - (rules[FPU_ROOT] if at_root else rules[FPU]) * math.sqrt(mass)
    scale = math.sqrt(total) if total > 0 else 1.0
    best, chosen = -np.inf, f
    for j in range(f, f + n):
        N = visits[g, j]
        q = wsum[g, j] / N if N > 0 else fpu
        score = q + rules[C_PUCT] * prior[g, j] * scale / (1.0 + N)
        if score > best:
            best, chosen = score, j
    return chosen


@njit(cache=True)
def _back_up(tree, g, path, depth, v):
    """``v`` is for the side to move at the leaf; each node on the path gets it from its chooser's side,
    and its virtual loss back."""
    wsum = tree[4]
    for d in range(depth - 1, -1, -1):
        v = -v
        wsum[g, path[d]] += v + 1.0


@njit(cache=True)
def _walk(board, tree, g, rules, forced, scratch, out, row):
    """One walk of game ``g`` from its root with virtual loss. Returns 1 if it ended at a leaf for the net
    (its planes and legal moves written to row ``row`` of ``out``), 0 at a terminal position (backed
    up at once), -1 on a leaf already waiting for the net (the walk is taken back)."""
    color0, parent0, nxt0, libs0, stones0, pos, history, recent = board
    move, first, count, visits, wsum, prior, prior_raw, value, status, top = tree
    color, parent, nxt, libs, stones, hist, snap, mark, path = scratch
    planes, masks, leaf_game, leaf_node, leaf_path, leaf_depth = out
    NN = recent.shape[2]
    N = int(math.sqrt(NN))
    W = N + 2
    color[:] = color0[g]
    parent[:] = parent0[g]
    nxt[:] = nxt0[g]
    libs[:] = libs0[g]
    stones[:] = stones0[g]
    h, c, passes, moves, nh = pos[g, HASH], pos[g, TO_MOVE], pos[g, PASSES], pos[g, MOVES], pos[g, NHIST]
    hist[:nh] = history[g, :nh]
    snap[0] = recent[g, 0]
    node, depth = 0, 0
    while status[g, node] == EXPANDED:
        i = _select_child(tree, g, node, rules, depth == 0, forced)
        visits[g, i] += 1
        wsum[g, i] -= 1.0  # virtual loss
        path[depth] = i
        depth += 1
        m = move[g, i]
        if m == NN:
            passes += 1
        else:
            v = (m // N + 1) * W + m % N + 1
            h, _ = _play(color, parent, nxt, libs, stones, W, v, c, h, _ZOBRIST, mark)
            hist[nh] = h
            nh += 1
            passes = 0
        for p in range(NN):
            snap[depth, p] = color[(p // N + 1) * W + p % N + 1]
        c = 3 - c
        moves += 1
        node = i
    if status[g, node] == PENDING:
        for d in range(depth):
            visits[g, path[d]] -= 1
            wsum[g, path[d]] += 1.0
        return -1
    if status[g, node] == FRESH and (passes >= 2 or moves >= rules[MAX_MOVES]):
        black, white = _area(color, N, W)
        margin = black - white - rules[KOMI]
        status[g, node] = TERMINAL
        value[g, node] = 0.0 if margin == 0 else (1.0 if (margin > 0) == (c == BLACK) else -1.0)
    if status[g, node] == TERMINAL:
        _back_up(tree, g, path, depth, value[g, node])
        return 0
    status[g, node] = PENDING
    # Leela Zero's planes: the side to move's stones now and 1..7 moves ago, the opponent's, the colour
    for t in range(HISTORY):
        for p in range(NN):
            s = snap[depth - t, p] if t <= depth else recent[g, t - depth, p]
            planes[row, t, p] = 1.0 if s == c else 0.0
            planes[row, HISTORY + t, p] = 1.0 if s == 3 - c else 0.0
    for p in range(NN):
        planes[row, 2 * HISTORY, p] = 1.0 if c == BLACK else 0.0
        planes[row, 2 * HISTORY + 1, p] = 0.0 if c == BLACK else 1.0
        masks[row, p] = _is_legal(color, parent, nxt, libs, W, (p // N + 1) * W + p % N + 1, c, h, _ZOBRIST,
                                  hist, nh)
    masks[row, NN] = True
    leaf_game[row], leaf_node[row], leaf_depth[row] = g, node, depth
    leaf_path[row, :depth] = path[:depth]
    return 1


@njit(cache=True)
def _select(board, tree, rules, goal, batch, forced, out, collisions):
    """Leaves of every game short of its goal: ``min(batch, goal - root visits)`` walks' worth (at most
    twice as many tries), or the root alone while it is new. Returns how many rows of ``out`` it filled."""
    color0 = board[0]
    status, visits, first, count = tree[8], tree[3], tree[1], tree[2]
    V = color0.shape[1]
    H = board[6].shape[1]
    NN = board[7].shape[2]
    scratch = (np.empty(V, np.int8), np.empty(V, np.int16), np.empty(V, np.int16), np.empty(V, np.int16),
               np.empty(V, np.int16), np.empty(H, np.int64), np.empty((H + 1, NN), np.int8),
               np.zeros(V, np.int64), np.empty(H + 1, np.int64))
    rows = 0
    for g in range(color0.shape[0]):
        if goal[g] <= 0 or status[g, 0] == TERMINAL:
            continue
        if status[g, 0] == FRESH:
            k = 1
        else:
            done = 0
            for j in range(first[g, 0], first[g, 0] + count[g, 0]):
                done += visits[g, j]
            k = min(batch[g], goal[g] - done)
        found, tries = 0, 0
        while found < k and tries < 2 * k:
            tries += 1
            r = _walk(board, tree, g, rules, forced[g], scratch, out, rows)
            if r == 1:
                rows += 1
                found += 1
            elif r < 0:
                collisions[g] += 1
    return rows


@njit(cache=True)
def _expand_and_back_up(tree, out, rows, priors, values):
    """Gives each leaf its children (the moves with a prior above 0, renormalised in order; the pass
    alone if none) and backs its value up. Returns False if a tree ran out of rows."""
    move, first, count, visits, wsum, prior, prior_raw, value, status, top = tree
    planes, masks, leaf_game, leaf_node, leaf_path, leaf_depth = out
    capacity = move.shape[1]
    P1 = priors.shape[1]
    for r in range(rows):
        g, node = leaf_game[r], leaf_node[r]
        n, total = 0, 0.0
        for m in range(P1):
            if priors[r, m] > 0:
                n += 1
                total += priors[r, m]
        f = top[g]
        if f + max(n, 1) > capacity:
            return False
        if n == 0:  # nothing legal but the game is not over: the pass
            move[g, f], prior_raw[g, f] = P1 - 1, 1.0
            n = 1
        else:
            j = f
            for m in range(P1):
                if priors[r, m] > 0:
                    move[g, j], prior_raw[g, j] = m, priors[r, m] / total
                    j += 1
        for j in range(f, f + n):
            prior[g, j] = prior_raw[g, j]
            first[g, j], count[g, j], visits[g, j], wsum[g, j] = 0, 0, 0, 0.0
            value[g, j], status[g, j] = 0.0, FRESH
        first[g, node], count[g, node] = f, n
        top[g] = f + n
        value[g, node], status[g, node] = values[r], EXPANDED
        _back_up(tree, g, leaf_path[r], leaf_depth[r], values[r])
    return True


# -- moving the root ----------------------------------------------------------------------------------

@njit(cache=True)
def _keep_subtree(tree, g, child, order):
    """Makes ``child``'s subtree game ``g``'s whole tree, its rows renumbered from 0 in breadth-first
    order (a node's children stay one block), every prior back to the net's."""
    move, first, count, visits, wsum, prior, prior_raw, value, status, top = tree
    order[0] = child
    n, i = 1, 0
    while i < n:
        o = order[i]
        if status[g, o] == EXPANDED:
            for t in range(count[g, o]):
                order[n + t] = first[g, o] + t
            n += count[g, o]
        i += 1
    rows = order[:n]
    # gathered into copies first: a row may be read after its number was given to another
    move[g, :n] = move[g, rows]
    count[g, :n] = count[g, rows]
    visits[g, :n] = visits[g, rows]
    wsum[g, :n] = wsum[g, rows]
    prior_raw[g, :n] = prior_raw[g, rows]
    prior[g, :n] = prior_raw[g, :n]
    value[g, :n] = value[g, rows]
    status[g, :n] = status[g, rows]
    block = 1
    for i in range(n):
        if status[g, i] == EXPANDED:
            first[g, i] = block
            block += count[g, i]
    top[g] = n


@njit(cache=True)
def _play_root(board, tree, g, m, order):
    """Plays move ``m`` in game ``g`` (legal: a child of the root or checked by the caller) and moves the
    root to it, keeping its subtree if it was searched."""
    color, parent, nxt, libs, stones, pos, history, recent = board
    move, first, count, visits, wsum, prior, prior_raw, value, status, top = tree
    NN = recent.shape[2]
    N = int(math.sqrt(NN))
    W = N + 2
    child = -1
    if status[g, 0] == EXPANDED:
        for j in range(first[g, 0], first[g, 0] + count[g, 0]):
            if move[g, j] == m and visits[g, j] > 0 and status[g, j] != PENDING:
                child = j
    if child >= 0:
        _keep_subtree(tree, g, child, order)
    else:
        top[g] = 1
        move[g, 0], first[g, 0], count[g, 0], visits[g, 0], wsum[g, 0] = m, 0, 0, 0, 0.0
        value[g, 0], status[g, 0] = 0.0, FRESH
    for t in range(HISTORY - 1, 0, -1):
        recent[g, t] = recent[g, t - 1]
    c = pos[g, TO_MOVE]
    if m == NN:
        pos[g, PASSES] += 1
    else:
        v = (m // N + 1) * W + m % N + 1
        mark = np.zeros(W * W, np.int64)
        pos[g, HASH], _ = _play(color[g], parent[g], nxt[g], libs[g], stones[g], W, v, c, pos[g, HASH], _ZOBRIST,
                                mark)
        history[g, pos[g, NHIST]] = pos[g, HASH]
        pos[g, NHIST] += 1
        pos[g, PASSES] = 0
    for p in range(NN):
        recent[g, 0, p] = color[g, (p // N + 1) * W + p % N + 1]
    pos[g, TO_MOVE] = 3 - c
    pos[g, MOVES] += 1


# -- the forest -----------------------------------------------------------------------------------------

class Forest:
    """The positions and search trees of ``games`` games on a ``size`` board.

    ``goal[g]``: the root visits at which game ``g``'s search is done (0: not searching); ``batch[g]``:
    leaves per round (virtual loss spreads them); ``forced[g]``: forced playouts at its root. ``round``
    runs one select / evaluate / back-up step for all of them.
    """

    def __init__(self, size, games, capacity, komi=7.5, max_moves=None, c_puct=1.5, fpu_reduction=0.25,
                 fpu_root_reduction=None, forced_k=2.0):
        N = size
        W = N + 2
        self.size, self.games, self.capacity = N, games, capacity
        self.max_moves = max_moves or 2 * N * N
        self.rules = np.array([c_puct, fpu_reduction, fpu_reduction if fpu_root_reduction is None
                               else fpu_root_reduction, komi, self.max_moves, forced_k], np.float64)
        H = self.max_moves + 2
        self.color = np.empty((games, W * W), np.int8)
        self.parent = np.empty((games, W * W), np.int16)
        self.nxt = np.empty((games, W * W), np.int16)
        self.libs = np.empty((games, W * W), np.int16)
        self.stones = np.empty((games, W * W), np.int16)
        self.pos = np.empty((games, 5), np.int64)
        self.history = np.empty((games, H), np.int64)
        self.recent = np.empty((games, HISTORY, N * N), np.int8)
        self.board = (self.color, self.parent, self.nxt, self.libs, self.stones, self.pos, self.history, self.recent)
        C = capacity
        # (move, first, count, visits, wsum, prior, prior_raw, value, status, top): the compiled functions
        # unpack it in this order
        self.tree = (np.zeros((games, C), np.int16), np.zeros((games, C), np.int32), np.zeros((games, C), np.int32),
                     np.zeros((games, C), np.int32), np.zeros((games, C)), np.zeros((games, C)), np.zeros((games, C)),
                     np.zeros((games, C)), np.zeros((games, C), np.int8), np.ones(games, np.int64))
        self.goal = np.zeros(games, np.int64)
        self.batch = np.ones(games, np.int64)
        self.forced = np.zeros(games, np.bool_)
        self.collisions = np.zeros(games, np.int64)
        self._out = None
        self._order = np.empty(C, np.int64)
        for g in range(games):
            self.new_game(g)

    # -- positions ----------------------------------------------------------------------------------
    def new_game(self, g):
        """Empties game ``g``'s board and tree (Black to move)."""
        W = self.size + 2
        inner = np.zeros((W, W), bool)
        inner[1:-1, 1:-1] = True
        self.color[g] = np.where(inner.ravel(), EMPTY, EDGE)
        self.parent[g] = self.nxt[g] = np.arange(W * W)
        self.libs[g] = self.stones[g] = 0
        self.pos[g] = (0, BLACK, 0, 0, 1)
        self.history[g] = 0
        self.recent[g] = 0
        self._reset_tree(g)
        self.goal[g] = 0

    def set_board(self, g, board):
        """Game ``g`` takes ``board``'s position (a ``Board``), with a fresh tree."""
        if board.size != self.size:
            raise ValueError(f"a {board.size}x{board.size} board in a {self.size}x{self.size} forest")
        if board.nhist > self.history.shape[1]:
            raise ValueError("the game is longer than the forest's move limit")
        self.color[g], self.parent[g], self.nxt[g] = board.color, board.parent, board.nxt
        self.libs[g], self.stones[g] = board.libs, board.stones
        self.pos[g] = (board.hash, board.to_move, board.passes, board.move_number, board.nhist)
        self.history[g] = 0
        self.history[g, :board.nhist] = board.history[:board.nhist]
        past = (board.stones_array(),) + board.past[:HISTORY - 1]
        self.recent[g] = 0
        for t, stones in enumerate(past):
            self.recent[g, t] = stones.ravel()
        self._reset_tree(g)

    def _reset_tree(self, g):
        for a in self.tree[:-1]:
            a[g, 0] = 0
        self.tree[0][g, 0] = -1
        self.tree[9][g] = 1

    def play(self, g, move):
        """Plays ``move`` in game ``g``; the root moves to it, keeping its subtree if it was searched."""
        _play_root(self.board, self.tree, g, int(move), self._order)

    def to_move(self, g):
        return int(self.pos[g, TO_MOVE])

    def passes(self, g):
        return int(self.pos[g, PASSES])

    def moves(self, g):
        return int(self.pos[g, MOVES])

    def game_over(self, g):
        return self.pos[g, PASSES] >= 2 or self.pos[g, MOVES] >= self.max_moves

    def area(self, g):
        """(black area, white area), Tromp-Taylor, of game ``g``'s position."""
        return _area(self.color[g], self.size, self.size + 2)

    def area_map(self, g):
        """(N*N,) int8 Tromp-Taylor owner of each point of game ``g``: +1 Black's, -1 White's, 0 neither."""
        out = np.zeros(self.size * self.size, np.int8)
        _owner_map(self.color[g], self.size, self.size + 2, out)
        return out

    def stones_array(self, g):
        """Game ``g``'s stones as an (N, N) int8 array, row 0 at the bottom."""
        return self.recent[g, 0].reshape(self.size, self.size).copy()

    # -- the root -----------------------------------------------------------------------------------------
    def root(self, g):
        """(moves, visits, wsum, priors as searched, raw priors) of game ``g``'s root children (views)."""
        move, first, count, visits, wsum, prior, prior_raw = self.tree[:7]
        f, n = first[g, 0], count[g, 0]
        return move[g, f:f + n], visits[g, f:f + n], wsum[g, f:f + n], prior[g, f:f + n], prior_raw[g, f:f + n]

    def expanded(self, g):
        return self.tree[8][g, 0] == EXPANDED

    def root_visits(self, g):
        return int(self.root(g)[1].sum())

    def root_value(self, g):
        """The root's value for its side to move: the mean over its walks, or the net's before any."""
        _, visits, wsum, _, _ = self.root(g)
        n = visits.sum()
        return float(wsum.sum() / n) if n else float(self.tree[7][g, 0])

    def policy_target(self, g):
        """Game ``g``'s root visit counts as a distribution over all N*N+1 moves, with the forced playouts
        taken out (``prune_forced``, with this forest's c_puct and k) if its root had them."""
        moves, visits, wsum, prior, _ = self.root(g)
        counts = visits.astype(np.float64)
        if self.forced[g]:
            counts = prune_forced(visits, wsum, prior, self.rules[C_PUCT], self.rules[FORCED_K])
        out = np.zeros(self.size * self.size + 1)
        out[moves] = counts / counts.sum()
        return out

    def add_noise(self, g, noise, fraction):
        """Mixes ``noise`` (one entry per root child) into game ``g``'s root priors."""
        _, _, _, prior, prior_raw = self.root(g)
        prior[:] = (1 - fraction) * prior_raw + fraction * noise

    # -- searching ------------------------------------------------------------------------------------------
    def _buffers(self, rows):
        if self._out is None or len(self._out[0]) < rows:
            N2, H = self.size * self.size, self.history.shape[1]
            self._out = (np.empty((rows, PLANES, N2), np.float32), np.empty((rows, N2 + 1), np.bool_),
                         np.empty(rows, np.int64), np.empty(rows, np.int64), np.empty((rows, H + 1), np.int64),
                         np.empty(rows, np.int64))
        return self._out

    def searching(self):
        """Games whose search has not reached its goal."""
        done = np.array([self.root_visits(g) if self.expanded(g) else -1 for g in range(self.games)])
        return np.flatnonzero((self.goal > 0) & (done < self.goal))

    def round(self, evaluate):
        """Walks every searching game to its next leaves, evaluates them with ``evaluate(planes, masks)``
        -> (priors, values) in one call and backs them up. Returns the number of leaves evaluated (0 does
        not mean no progress: walks ending at terminal positions are backed up without the net)."""
        out = self._buffers(int(np.sum(np.where(self.goal > 0, self.batch, 0))) or 1)
        rows = _select(self.board, self.tree, self.rules, self.goal, self.batch, self.forced, out, self.collisions)
        if rows == 0:
            return 0
        N = self.size
        planes = out[0][:rows].reshape(rows, PLANES, N, N)
        priors, values = evaluate(planes, out[1][:rows])[:2]
        if not _expand_and_back_up(self.tree, out, rows, np.ascontiguousarray(priors, np.float64),
                                   np.ascontiguousarray(values, np.float64)):
            raise RuntimeError("search tree full: raise Forest's capacity")
        return rows


def capacity_for(size, visits, batch=1):
    """Tree rows that a search to ``visits`` root visits (with ``batch`` leaves per round) never exceeds:
    each evaluated leaf adds at most one row per move."""
    return (visits + batch + 2) * (size * size + 1)


def prune_forced(visits, wsum, prior, c_puct=1.5, forced_k=2.0):
    """The root's visit counts with the forced playouts taken out (KataGo's policy target pruning): each
    child but the most visited loses up to ``sqrt(k P total)`` visits as long as its PUCT score would
    stay below the best child's; a child left with a single visit gets none."""
    visits = visits.astype(np.float64)
    total = visits.sum()
    if total == 0:
        return visits
    best = int(np.argmax(visits))
    scale = math.sqrt(total)
    q = np.where(visits > 0, wsum / np.maximum(visits, 1), 0.0)
    best_score = q[best] + c_puct * prior[best] * scale / (1 + visits[best])
    out = visits.copy()
    for i in np.flatnonzero(visits > 0):
        if i == best:
            continue
        forced = math.sqrt(forced_k * prior[i] * total)
        n = visits[i]
        while n > 1 and visits[i] - n + 1 <= forced and q[i] + c_puct * prior[i] * scale / n < best_score:
            n -= 1  # n - 1 visits: its score with them, c P sqrt(total) / (1 + n - 1)
        out[i] = 0 if n <= 1 else n
    return out
