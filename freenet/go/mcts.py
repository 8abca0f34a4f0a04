"""Monte-Carlo tree search with PUCT, as in AlphaGo Zero and Leela Zero.

Each node holds the statistics of its children in NumPy arrays (priors P, visits N, summed values W,
from the point of view of the player to move at the node). Selection picks the child maximising

    Q + c_puct * P * sqrt(visits of the node) / (1 + N)

where an unvisited child's Q is the node's own value less ``fpu_reduction * sqrt(prior mass visited)``
(first-play urgency, Leela Zero's rule). Leaves are evaluated in batches: ``select_leaves(k)`` walks
down ``k`` times, each walk adding a virtual loss along its path so that the next walks spread out;
``backup`` then gives each leaf the evaluator's priors and value. Several searches (one per game) can
pool their leaves into one batch, which is how self-play keeps the net busy (``run_many``).
At the root, self-play mixes Dirichlet noise into the priors; ``advance(move)`` keeps the subtree of
the move played (tree reuse); ``choose(temperature)`` picks a move from the visit counts.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np

from freenet import kernels
from freenet.go.board import BLACK, EMPTY


@dataclass
class SearchConfig:
    c_puct: float = 1.5
    fpu_reduction: float = 0.25
    fpu_root_reduction: float = None  # None: as fpu_reduction
    noise: bool = False  # Dirichlet noise at the root (self-play)
    dirichlet_alpha: float = None  # None: 0.03 * 361 / (N * N), AlphaGo Zero's 0.03 scaled by board area
    noise_fraction: float = 0.25
    batch: int = 8  # leaves evaluated together (virtual loss spreads them)
    komi: float = 7.5
    max_moves: int = None  # a game this long is scored as it stands; None: 2 * N * N

    def as_dict(self):
        return asdict(self)


def ordered_sum(x):
    """The sum of ``x`` added left to right, as the compiled search (``tree``) adds: ``np.sum`` adds in
    pairs, whose rounding differs, and the two searches must choose the same children."""
    return float(np.cumsum(x)[-1]) if len(x) else 0.0


def choose_move(moves, visits, priors, temperature, rng):
    """A move from a root's children: the most visited (ties: the higher prior) at temperature 0, else
    drawn with probability proportional to visits ** (1 / temperature); the highest prior if none
    was visited."""
    visits = np.asarray(visits, np.float64)
    if visits.sum() == 0:
        return int(moves[int(np.argmax(priors))])
    if temperature <= 1e-3:
        best = np.flatnonzero(visits == visits.max())
        return int(moves[best[np.argmax(priors[best])]])
    w = kernels.power(visits / visits.max(), 1.0 / temperature)  # not NumPy's power, whose bits depend on the CPU
    return int(moves[rng.choice(len(visits), p=w / w.sum())])


class Node:
    __slots__ = ("board", "parent", "index", "moves", "P", "P_raw", "N", "W", "children", "value", "pending",
                 "terminal")

    def __init__(self, board, parent=None, index=-1):
        self.board = board
        self.parent = parent
        self.index = index  # position among the parent's children
        self.moves = None  # legal moves (point numbers), once expanded
        self.P = self.P_raw = self.N = self.W = None
        self.children = None
        self.value = 0.0  # the evaluator's value for the side to move here
        self.pending = False
        self.terminal = None  # value for the side to move if the game is over here

    @property
    def expanded(self):
        return self.moves is not None

    @property
    def visits(self):
        return 0 if self.N is None else int(self.N.sum())

    def child(self, move):
        """The child reached by ``move``, or None if it was never created."""
        if self.moves is None:
            return None
        i = np.searchsorted(self.moves, move)
        if i < len(self.moves) and self.moves[i] == move and self.children[i] is not None:
            return self.children[i]
        return None


class MCTS:
    """A search tree over one game. ``evaluator.evaluate(boards)`` returns (priors, values)."""

    def __init__(self, evaluator, config=None, rng=None):
        self.evaluator = evaluator
        self.config = config or SearchConfig()
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.root = None
        self.collisions = 0

    # -- the root -----------------------------------------------------------------------------------
    def set_board(self, board):
        self.root = Node(board.copy())

    def advance(self, move):
        """Moves the root down to ``move`` (keeping its subtree), or to a fresh node if it was not searched."""
        child = self.root.child(move)
        if child is None or child.pending:
            board = self.root.board.copy()
            board.play(move)
            child = Node(board)
        child.parent = None
        child.index = -1
        self.root = child

    def max_moves(self, board):
        return self.config.max_moves or 2 * board.size * board.size

    def _terminal_value(self, board):
        """Value for the side to move if the game is over (or too long), else None."""
        if not board.game_over and board.move_number < self.max_moves(board):
            return None
        winner = board.winner(self.config.komi)
        if winner == EMPTY:
            return 0.0
        return 1.0 if winner == board.to_move else -1.0

    def _expand(self, node, priors, value):
        mask = priors > 0
        moves = np.flatnonzero(mask)
        if len(moves) == 0:  # nothing legal but the game is not over: only the pass (the evaluator zeroed it)
            moves = np.array([node.board.pass_move])
            priors = np.zeros_like(priors)
            priors[-1] = 1.0
        node.moves = moves
        node.P_raw = priors[moves].astype(np.float64)
        node.P_raw /= ordered_sum(node.P_raw)
        node.P = node.P_raw
        node.N = np.zeros(len(moves))
        node.W = np.zeros(len(moves))
        node.children = [None] * len(moves)
        node.value = float(value)
        node.pending = False

    def add_noise(self):
        """Mixes fresh Dirichlet noise into the root's priors (the root must be expanded)."""
        root = self.root
        n = len(root.moves)
        alpha = self.config.dirichlet_alpha or 0.03 * 361 / root.board.size ** 2
        noise = self.rng.dirichlet(np.full(n, alpha))
        eps = self.config.noise_fraction
        root.P = (1 - eps) * root.P_raw + eps * noise

    # -- one walk -------------------------------------------------------------------------------
    def _select_child(self, node):
        N, W, P = node.N, node.W, node.P
        total = N.sum()
        visited = N > 0
        reduction = self.config.fpu_reduction
        if node is self.root and self.config.fpu_root_reduction is not None:
            reduction = self.config.fpu_root_reduction
        fpu = node.value - reduction * math.sqrt(ordered_sum(P[visited]))
        q = np.where(visited, W / np.where(visited, N, 1), fpu)
        u = self.config.c_puct * P * (math.sqrt(total) if total > 0 else 1.0) / (1 + N)
        return int(np.argmax(q + u))

    def _walk(self):
        """Goes down from the root with virtual loss; returns the path (list of (node, child index)) and
        the leaf, or None on a collision with a leaf already waiting for its evaluation."""
        node = self.root
        path = []
        while node.expanded and node.terminal is None:
            i = self._select_child(node)
            node.N[i] += 1
            node.W[i] -= 1.0  # virtual loss, taken back in backup
            path.append((node, i))
            child = node.children[i]
            if child is None:
                board = node.board.copy()
                board.play(int(node.moves[i]))
                child = node.children[i] = Node(board, node, i)
            node = child
        if node.pending:
            self._undo(path)
            self.collisions += 1
            return None
        return path, node

    def _undo(self, path):
        for node, i in path:
            node.N[i] -= 1
            node.W[i] += 1.0

    def select_leaves(self, k):
        """Up to ``k`` leaves needing the evaluator (marked pending); terminal leaves are backed up at once.
        Returns a list of (path, leaf)."""
        leaves = []
        tries = 0
        while len(leaves) < k and tries < 2 * k:
            tries += 1
            walked = self._walk()
            if walked is None:
                continue
            path, leaf = walked
            if leaf.terminal is None:
                leaf.terminal = self._terminal_value(leaf.board)
            if leaf.terminal is not None:
                self._backup(path, leaf.terminal)
                continue
            leaf.pending = True
            leaves.append((path, leaf))
        return leaves

    def _backup(self, path, value):
        """``value`` is for the side to move at the leaf; each edge gets it from its chooser's side."""
        for node, i in reversed(path):
            value = -value
            node.W[i] += value + 1.0  # the real value, and the virtual loss back
        return value

    def backup(self, leaves, priors, values):
        for (path, leaf), p, v in zip(leaves, priors, values):
            self._expand(leaf, p, v)
            self._backup(path, v)

    # -- whole searches -------------------------------------------------------------------------
    def ensure_root(self):
        """Evaluates the root if it is new."""
        if not self.root.expanded:
            if self._terminal_value(self.root.board) is not None:
                return False
            p, v = self.evaluator.evaluate([self.root.board])
            self._expand(self.root, p[0], v[0])
        return True

    def run(self, playouts, should_stop=None):
        """Runs ``playouts`` walks from the root (in batches of ``config.batch``)."""
        run_many([self], playouts, should_stop=should_stop)

    # -- reading the result -----------------------------------------------------------------------
    def visit_policy(self):
        """Root visit counts over all N*N+1 moves, normalised (the self-play training target)."""
        root = self.root
        out = np.zeros(root.board.pass_move + 1)
        if root.expanded and root.N.sum() > 0:
            out[root.moves] = root.N / root.N.sum()
        return out

    def choose(self, temperature=0.0):
        """A move from the root's visit counts (``choose_move``); the pass if the root was never searched."""
        root = self.root
        if not root.expanded:
            return root.board.pass_move
        return choose_move(root.moves, root.N, root.P_raw, temperature, self.rng)

    def root_value(self):
        """The root's value for the side to move there (average over the search)."""
        root = self.root
        if not root.expanded:
            t = self._terminal_value(root.board)
            return 0.0 if t is None else t
        n = root.N.sum()
        return float(root.W.sum() / n) if n else root.value

    def candidates(self, max_count=None):
        """[(move, visits, winrate for the side to move, prior, pv)] for visited root moves, most visited first."""
        root = self.root
        if not root.expanded:
            return []
        order = sorted(np.flatnonzero(root.N > 0), key=lambda i: (-root.N[i], -root.P_raw[i]))
        out = []
        for i in order[:max_count]:
            q = root.W[i] / root.N[i]
            out.append((int(root.moves[i]), int(root.N[i]), (q + 1) / 2, float(root.P_raw[i]), self.pv(root, i)))
        return out

    def pv(self, node, i, depth=12):
        moves = [int(node.moves[i])]
        child = node.children[i]
        while child is not None and child.expanded and child.N.sum() > 0 and len(moves) < depth:
            j = int(np.argmax(child.N))
            moves.append(int(child.moves[j]))
            child = child.children[j]
        return moves


def run_many(searches, playouts, should_stop=None):
    """Runs ``playouts`` walks in each search, pooling the leaves of all of them into one evaluator call
    per round (all searches must share one evaluator)."""
    if not searches:
        return
    evaluator = searches[0].evaluator
    active = [s for s in searches if s.ensure_root()]
    done = {id(s): 0 for s in active}
    while active:
        if should_stop is not None and should_stop():
            return
        batch = []
        for s in active:
            k = min(s.config.batch, playouts - done[id(s)])
            before = s.root.N.sum()
            leaves = s.select_leaves(k)
            batch.append((s, leaves))
            # terminal walks count at once; evaluated ones when backed up
            done[id(s)] += int(s.root.N.sum() - before) - len(leaves)
        boards = [leaf.board for _, leaves in batch for _, leaf in leaves]
        if boards:
            priors, values = evaluator.evaluate(boards)
        else:
            priors, values = np.zeros((0, 1)), np.zeros(0)
        at = 0
        still = []
        for s, leaves in batch:
            n = len(leaves)
            s.backup(leaves, priors[at:at + n], values[at:at + n])
            at += n
            done[id(s)] += n
            if done[id(s)] < playouts and (n > 0 or s.root.N.sum() > 0):
                still.append(s)
        active = still
        # a search whose every walk collided or hit terminals repeatedly still makes progress through N


class UniformEvaluator:
    """The evaluator of the plain search used when no net is given: uniform priors over the legal moves
    (the pass weighted down), and a value from random playouts (Tromp-Taylor score with ``komi``)."""

    def __init__(self, komi=7.5, playouts=2, pass_weight=0.1, seed=0):
        self.komi = komi
        self.playouts = playouts
        self.pass_weight = pass_weight
        self.seed = seed
        self.positions = self.batches = 0
        self.size = None

    def evaluate(self, boards):
        n = len(boards)
        if n == 0:
            return np.zeros((0, 1)), np.zeros(0)
        size = boards[0].size
        priors = np.zeros((n, size * size + 1))
        values = np.zeros(n)
        for i, b in enumerate(boards):
            mask = b.legal_mask().astype(np.float64)
            mask[-1] *= self.pass_weight
            priors[i] = mask / mask.sum()
            sign = 1 if b.to_move == BLACK else -1
            total = 0.0
            for _ in range(self.playouts):
                self.seed += 1
                s = b.playout(self.seed) - self.komi
                total += sign * (1.0 if s > 0 else -1.0 if s < 0 else 0.0)
            values[i] = total / self.playouts
        self.positions += n
        self.batches += 1
        return priors, values
