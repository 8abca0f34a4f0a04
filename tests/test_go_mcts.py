"""MCTS: PUCT with batched leaf evaluation, virtual loss, tree reuse, noise, temperature, terminals."""

import numpy as np

from freenet.go.board import BLACK, WHITE, Board
from freenet.go.mcts import MCTS, SearchConfig, UniformEvaluator, run_many


class CountingEvaluator:
    """Uniform priors over legal moves, value 0; records the batch sizes it was called with."""

    def __init__(self):
        self.sizes = []

    def evaluate(self, boards):
        self.sizes.append(len(boards))
        masks = np.stack([b.legal_mask() for b in boards]).astype(float)
        return masks / masks.sum(1, keepdims=True), np.zeros(len(boards))


def test_visits_add_up_and_leaves_are_batched():
    ev = CountingEvaluator()
    s = MCTS(ev, SearchConfig(batch=8))
    s.set_board(Board(7))
    s.run(200)
    assert s.root.visits == 200
    assert max(ev.sizes) == 8 and sum(ev.sizes) == 201  # the root, then 200 leaves 8 at a time
    assert abs(s.visit_policy().sum() - 1) < 1e-12
    # no virtual loss is left behind: every child's W is within [-N, N]
    assert (np.abs(s.root.W) <= s.root.N + 1e-9).all()


def test_many_games_share_one_batch():
    ev = CountingEvaluator()
    searches = [MCTS(ev, SearchConfig(batch=4), np.random.default_rng(i)) for i in range(5)]
    for s in searches:
        s.set_board(Board(5))
    run_many(searches, 40)
    assert all(s.root.visits == 40 for s in searches)
    assert max(ev.sizes) == 20  # 5 games x 4 leaves


def test_tree_reuse_keeps_the_subtree():
    s = MCTS(CountingEvaluator(), SearchConfig(batch=4))
    s.set_board(Board(5))
    s.run(100)
    move = s.choose(0)
    kept = s.root.child(move).visits
    s.advance(move)
    assert s.root.visits == kept and s.root.parent is None and s.root.board.move_number == 1
    s.advance(s.root.board.pass_move if s.root.child(s.root.board.pass_move) is None else 0)
    assert s.root.board.move_number == 2


def test_plain_search_saves_a_big_group():
    # White's five stones on row 3 have one liberty left (E3); Black to move takes them, else White extends.
    b = Board(5)
    for name, colour in [("A3", WHITE), ("B3", WHITE), ("C3", WHITE), ("D3", WHITE), ("A2", BLACK), ("B2", BLACK),
                         ("C2", BLACK), ("D2", BLACK), ("A4", BLACK), ("B4", BLACK), ("C4", BLACK), ("D4", BLACK)]:
        b.play(b.point(name), colour)
    b.to_move = BLACK
    s = MCTS(UniformEvaluator(komi=0.5, seed=1), SearchConfig(batch=8, komi=0.5))
    s.set_board(b)
    s.run(300)
    assert b.name(s.choose(0)) == "E3" and s.root_value() > 0.5


def test_pass_wins_when_the_opponent_passed_and_we_lead():
    b = Board(5)
    for name in ["B1", "C1", "B2", "C2", "B3", "C3", "B4", "C4", "B5", "C5"]:
        b.play(b.point(name))
    b.play(b.pass_move)  # black passes; white (12.5 - 10 with komi, area 10 v 15) leads
    assert b.to_move == WHITE and b.score(komi=0.5) < 0
    s = MCTS(CountingEvaluator(), SearchConfig(batch=4, komi=0.5))
    s.set_board(b)
    s.run(200)
    assert s.choose(0) == b.pass_move and s.root_value() > 0


def test_noise_temperature_and_determinism():
    def search(seed):
        s = MCTS(CountingEvaluator(), SearchConfig(batch=4, noise=True), np.random.default_rng(seed))
        s.set_board(Board(7))
        s.ensure_root()
        s.add_noise()
        s.run(64)
        return s

    a, b, c = search(1), search(1), search(2)
    assert np.array_equal(a.root.P, b.root.P) and not np.array_equal(a.root.P, c.root.P)
    assert abs(a.root.P.sum() - 1) < 1e-9 and not np.allclose(a.root.P, a.root.P_raw)
    assert np.array_equal(a.root.N, b.root.N)
    moves = {a.choose(1.0) for _ in range(30)}
    assert len(moves) > 1 and a.choose(0) == b.choose(0)
