"""Go rules: freenet.go.board against the slow reference implementation over random games, plus the
classic cases (capture, suicide, ko, superko, scoring)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from freenet.errors import FreenetError
from freenet.go.board import BLACK, EMPTY, WHITE, Board, IllegalMove
from freenet.go.reference import ReferenceBoard


def setup(size, black=(), white=()):
    """A board with the given stones (GTP names), Black to move, built by legal plays with passes between."""
    b = Board(size)
    for colour, names in ((BLACK, black), (WHITE, white)):
        for name in names:
            b.play(b.point(name), colour)
            b.passes = 0
    b.to_move = BLACK
    return b


@given(size=st.integers(5, 7), choices=st.lists(st.integers(0, 10**6), min_size=1, max_size=160))
def test_random_games_match_the_reference(size, choices):
    b, ref = Board(size), ReferenceBoard(size)
    for k, choice in enumerate(choices):
        mask = b.legal_mask()
        expected = [ref.is_legal(p) for p in range(size * size + 1)]
        assert mask.tolist() == expected, f"legality differs after {k} moves"
        assert b.stones_array().tolist() == ref.array()
        assert b.area() == ref.area()
        if b.game_over:
            break
        legal = np.flatnonzero(mask)
        # mostly stones: passes only when choice says so, so that games get crowded (captures, ko)
        stones = legal[:-1]
        point = int(stones[choice % len(stones)]) if len(stones) and choice % 13 else size * size
        b.play(point)
        ref.play(point)
        # the incremental liberty counts equal the flood-fill ones
        for r in range(size):
            for c in range(size):
                if (r, c) in ref.stones:
                    assert b.libs[b.parent[b.vertex(r * size + c)]] == len(ref.group(ref.stones, (r, c))[1])


@given(size=st.integers(5, 7), seed=st.integers(0, 2**31))
def test_copy_is_independent(size, seed):
    rng = np.random.default_rng(seed)
    b = Board(size)
    for _ in range(20):
        b.play(rng.choice(b.legal_moves()[:-1]))  # stones only, so the game goes on
    c = b.copy()
    before = b.stones_array()
    for _ in range(10):
        if c.game_over:
            break
        c.play(rng.choice(c.legal_moves()))
    assert (b.stones_array() == before).all()
    assert b.legal_mask().tolist() == [b.is_legal(p) for p in range(size * size + 1)]


def test_capture_and_suicide():
    b = setup(5, black=["B1"], white=["A1"])
    b.play(b.point("A2"))  # black captures A1
    assert b.at(b.point("A1")) == EMPTY
    assert not b.is_legal(b.point("A1"))  # white A1 would be suicide
    with pytest.raises(IllegalMove, match="suicide"):
        b.play(b.point("A1"))
    with pytest.raises(IllegalMove, match="occupied"):
        b.play(b.point("A2"))


def test_ko_and_superko():
    # a ko at B3/C3: black takes, white may not retake at once
    k = setup(5, black=["B2", "A3", "B4"], white=["C2", "D3", "C4", "B3"])
    assert k.at(k.point("B3")) == WHITE
    k.play(k.point("C3"))  # black captures B3
    assert k.at(k.point("B3")) == EMPTY
    assert not k.is_legal(k.point("B3"))  # white retaking repeats the position
    with pytest.raises(IllegalMove, match="superko"):
        k.play(k.point("B3"))
    k.play(k.point("E5"))  # ko threat elsewhere
    k.play(k.point("A5"))
    assert k.is_legal(k.point("B3"))


def test_two_passes_end_the_game_and_scoring():
    b = setup(5, black=["B1", "B2", "B3", "B4", "B5"], white=["D1", "D2", "D3", "D4", "D5"])
    assert b.area() == (10, 10)
    assert b.score(komi=0.5) == -0.5
    b.play(b.pass_move)
    b.play(b.pass_move)
    assert b.game_over and not b.legal_mask().any()
    with pytest.raises(IllegalMove):
        b.play(0)
    assert b.winner(0.5) == WHITE and b.winner(-0.5) == BLACK and b.winner(0) == EMPTY


def test_resignation_decides():
    b = Board(9)
    b.resign(BLACK)
    assert b.game_over and b.winner(7.5) == WHITE


def test_vertices_and_sizes():
    b = Board(19)
    assert b.point("A1") == 0 and b.point("T19") == 360 and b.point("pass") == 361 and b.point("j10") == 9 * 19 + 8
    assert b.name(b.point("Q16")) == "Q16"
    for bad in ["I5", "Z1", "A20", "A0", "", "D", "4D"]:
        with pytest.raises(FreenetError):
            b.point(bad)
    for size in [4, 20, "9", 9.0]:
        with pytest.raises(FreenetError):
            Board(size)
    assert Board(5).legal_mask().sum() == 26


def test_playouts_are_deterministic_and_finish():
    b = Board(9)
    results = {b.playout(seed) for seed in range(20)}
    assert all(-81 <= r <= 81 for r in results) and len(results) > 1
    assert b.playout(7) == b.playout(7)


def test_superko_beyond_simple_ko():
    """Random 5x5 games until three moves are found that would repeat a position older than the one
    before last (superko, not a simple ko recapture): freenet must forbid each of them too."""
    found = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        ref, b = ReferenceBoard(5), Board(5)
        recent = [frozenset(), frozenset()]
        for _ in range(250):
            for p in range(25):
                stones = ref.after(p)
                if stones is not None and frozenset(stones.items()) in ref.seen:
                    assert not b.is_legal(p)
                    found += frozenset(stones.items()) not in recent
            if ref.passes >= 2:
                break
            legal = [p for p in range(25) if ref.is_legal(p)]
            p = int(rng.choice(legal)) if legal and rng.random() > 0.05 else 25
            ref.play(p)
            b.play(p)
            recent = [recent[1], frozenset(ref.stones.items())]
        if found >= 3:
            return
    raise AssertionError(f"only {found} superko cases in 40 random games")
