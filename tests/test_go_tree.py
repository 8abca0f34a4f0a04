"""The compiled array search (freenet.go.tree) against the readable one (freenet.go.mcts): the same
evaluator must see the same positions and the trees end with the same visits; forced playouts,
policy target pruning and the final-area map."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freenet.go import features
from freenet.go.board import BLACK, WHITE, Board
from freenet.go.mcts import MCTS, SearchConfig
from freenet.go.tree import Forest, capacity_for, prune_forced


class RecordingEvaluator:
    """Priors and values from a fixed random linear map of the input planes (so both searches get the
    same numbers for the same position); keeps every position it was asked about."""

    def __init__(self, size, seed=0):
        r = np.random.default_rng(seed)
        self.w = r.normal(size=(18 * size * size, size * size + 1)) * 0.3
        self.v = r.normal(size=18 * size * size) * 0.05
        self.seen = []

    def evaluate_planes(self, planes, masks):
        self.seen += [(p.copy(), m.copy()) for p, m in zip(planes, masks)]
        x = planes.reshape(len(planes), -1).astype(np.float64)
        logits = x @ self.w
        p = np.exp(logits - logits.max(1, keepdims=True)) * masks
        p /= p.sum(1, keepdims=True)
        return p, np.tanh(x @ self.v)

    def evaluate(self, boards):
        return self.evaluate_planes(features.batch_planes(boards), np.stack([b.legal_mask() for b in boards]))


def random_game(size, moves, seed):
    """A position after ``moves`` random legal moves (passes included now and then)."""
    b = Board(size)
    r = np.random.default_rng(seed)
    for _ in range(moves):
        legal = np.flatnonzero(b.legal_mask()[:-1])
        b.play(int(r.choice(legal)) if len(legal) and r.random() > 0.05 else b.pass_move)
        if b.game_over:
            break
    return b


def search_both(board, batch, playouts, seed, komi=7.5):
    ref_ev, arr_ev = RecordingEvaluator(board.size, seed), RecordingEvaluator(board.size, seed)
    ref = MCTS(ref_ev, SearchConfig(batch=batch, komi=komi))
    ref.set_board(board)
    forest = Forest(board.size, 1, capacity_for(board.size, 3 * playouts, batch), komi=komi)
    forest.set_board(0, board)
    forest.batch[0] = batch
    return ref, ref_ev, forest, arr_ev


def run_to(forest, evaluator, goal):
    forest.goal[0] = goal
    while not forest.expanded(0) or forest.root_visits(0) < goal:  # a round of terminal walks evaluates nothing
        forest.round(evaluator.evaluate_planes)


def assert_same_tree(ref, ref_ev, forest, arr_ev):
    moves, visits, wsum, _, prior_raw = forest.root(0)
    assert moves.tolist() == ref.root.moves.tolist()
    assert visits.tolist() == ref.root.N.astype(int).tolist()
    np.testing.assert_array_equal(wsum, ref.root.W)
    np.testing.assert_array_equal(prior_raw, ref.root.P_raw)
    assert len(arr_ev.seen) == len(ref_ev.seen)
    for (pa, ma), (pr, mr) in zip(arr_ev.seen, ref_ev.seen):  # the same leaves, in the same order
        np.testing.assert_array_equal(pa, pr)
        np.testing.assert_array_equal(ma, mr)


@settings(max_examples=12, deadline=None)
@given(size=st.sampled_from([5, 6, 7]), opening=st.integers(0, 40), batch=st.sampled_from([1, 3, 8]),
       playouts=st.integers(20, 160), seed=st.integers(0, 1000))
def test_same_visits_and_leaves_as_the_readable_search(size, opening, batch, playouts, seed):
    board = random_game(size, opening, seed)
    if board.game_over:
        return
    ref, ref_ev, forest, arr_ev = search_both(board, batch, playouts, seed)
    ref.run(playouts)
    run_to(forest, arr_ev, playouts)
    assert_same_tree(ref, ref_ev, forest, arr_ev)
    assert forest.collisions[0] == ref.collisions
    # tree reuse: play the most visited move in both and search again
    move = ref.choose(0)
    ref.advance(move)
    forest.play(0, move)
    assert forest.root_visits(0) == ref.root.visits
    if ref.root.board.game_over:
        return
    ref.run(playouts)
    run_to(forest, arr_ev, forest.root_visits(0) + playouts)
    assert_same_tree(ref, ref_ev, forest, arr_ev)


def test_the_forest_board_follows_the_rules():
    """Moves played in a forest row give the Board's position, hash, superko history and input planes."""
    board = random_game(7, 0, 0)
    forest = Forest(7, 2, capacity_for(7, 10))
    r = np.random.default_rng(3)
    for _ in range(60):
        legal = np.flatnonzero(board.legal_mask())
        move = int(r.choice(legal)) if r.random() > 0.05 else board.pass_move
        board.play(move)
        forest.play(1, move)
        if board.game_over:
            break
        assert forest.stones_array(1).tolist() == board.stones_array().tolist()
        assert forest.pos[1, 0] == board.hash and forest.to_move(1) == board.to_move
        assert forest.area(1) == board.area()
    # the root's planes and legal moves, as the net gets them
    ev = RecordingEvaluator(7)
    forest.set_board(0, board)
    forest.goal[0] = 1
    forest.round(ev.evaluate_planes)
    planes, mask = ev.seen[0]
    np.testing.assert_array_equal(planes, features.planes(board))
    np.testing.assert_array_equal(mask, board.legal_mask())


def test_forced_playouts_and_pruning():
    board = Board(5)
    ev = RecordingEvaluator(5, 1)
    forest = Forest(5, 2, capacity_for(5, 400))
    for g in (0, 1):
        forest.set_board(g, board)
        forest.forced[g] = g == 1
        forest.goal[g] = 400
    while len(forest.searching()) or not forest.expanded(0):
        forest.round(ev.evaluate_planes)
    plain, forced = forest.root(0), forest.root(1)
    total = forced[1].sum()
    visited = forced[1] > 0
    # every visited child of the forced root reached sqrt(2 P total) visits (less the last walk's rounding)
    assert (forced[1][visited] >= np.floor(np.sqrt(2 * forced[3][visited] * total)) - 1).all()
    assert (forced[1] > 0).sum() >= (plain[1] > 0).sum()
    pruned = prune_forced(forced[1], forced[2], forced[3])
    best = np.argmax(forced[1])
    assert pruned[best] == forced[1][best] and (pruned <= forced[1]).all() and pruned.sum() < forced[1].sum()
    assert not ((pruned > 0) & (pruned < 2)).any()  # a child left with one visit is dropped
    # the policy target: pruned counts for the forced root, plain ones for the other
    target = np.zeros(26)
    target[forced[0]] = pruned / pruned.sum()
    np.testing.assert_array_equal(forest.policy_target(1), target)
    target = np.zeros(26)
    target[plain[0]] = plain[1] / plain[1].sum()
    np.testing.assert_array_equal(forest.policy_target(0), target)
    forest.rules[0], forest.rules[5] = 0.5, 4.0  # c_puct and k: the forest's own are used
    target = np.zeros(26)
    other = prune_forced(forced[1], forced[2], forced[3], c_puct=0.5, forced_k=4.0)
    target[forced[0]] = other / other.sum()
    assert not np.array_equal(other, pruned)
    np.testing.assert_array_equal(forest.policy_target(1), target)


def test_prune_forced_keeps_a_search_that_needed_no_forcing():
    visits = np.array([50.0, 30.0, 0.0])
    wsum = np.array([10.0, 6.0, 0.0])  # equal Q: the second child earned its visits by PUCT
    prior = np.array([0.5, 0.3, 0.2])
    np.testing.assert_array_equal(prune_forced(visits, wsum, prior), visits)


def test_area_map():
    b = Board(5)
    for name, colour in [("B1", BLACK), ("B2", BLACK), ("B3", BLACK), ("B4", BLACK), ("B5", BLACK),
                         ("D1", WHITE), ("D2", WHITE), ("D3", WHITE), ("D4", WHITE), ("D5", WHITE)]:
        b.play(b.point(name), colour)
    forest = Forest(5, 1, capacity_for(5, 1))
    forest.set_board(0, b)
    np.testing.assert_array_equal(forest.area_map(0), b.area_map())
    own = b.area_map().reshape(5, 5)
    assert (own[:, :2] == 1).all() and (own[:, 3:] == -1).all() and (own[:, 2] == 0).all()
    assert own.sum() == b.area()[0] - b.area()[1]


@pytest.mark.parametrize("size", [5, 9])
def test_capacity_is_never_exceeded(size):
    ev = RecordingEvaluator(size)
    forest = Forest(size, 1, capacity_for(size, 64, 8))
    forest.batch[0] = 8
    for _ in range(6):
        run_to(forest, ev, 64)  # the kept subtree counts towards the 64
        assert forest.tree[9][0] <= forest.capacity
        forest.play(0, int(forest.root(0)[0][np.argmax(forest.root(0)[1])]))
        if forest.game_over(0):
            break
