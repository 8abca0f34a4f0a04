"""The GTP engine driven by GTP scripts, through the real ``freenet go gtp`` command."""

import io
import queue
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import freenet as fn
from freenet.go.board import WHITE
from freenet.go.gtp import Engine, clean
from freenet.go.net import new_net, save_net

from test_go_status import DEAD_STONE


@pytest.fixture(autouse=True)
def one_thread():
    """The nets here are tiny: one thread (a busy shared machine makes a thread pool slower)."""
    before = fn.get_num_threads()
    fn.set_num_threads(1)
    yield
    fn.set_num_threads(before)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("gtp") / "net7.safetensors"
    save_net(new_net(size=7, blocks=1, filters=8, seed=1), str(path))
    return str(path)


def gtp(args, script, timeout=120):
    proc = subprocess.run([sys.executable, "-m", "freenet", "go", "gtp", *args], input=script, text=True,
                          capture_output=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    replies = proc.stdout.split("\n\n")
    assert replies[-1] == ""
    return replies[:-1]


def test_gtp_script_with_a_net(model):
    script = "\n".join([
        "1 protocol_version", "2 name", "version", "known_command genmove", "known_command frobnicate",
        "list_commands", "boardsize 9", "boardsize 7", "komi 5.5", "play b d4", "play w d4", "play black c3",
        "genmove white", "showboard", "heatmap", "heatmap 3", "heatmap average", "undo", "final_score",
        "time_settings 0 5 1", "time_left b 5 1", "genmove b",
        "\x01garbage \t with tabs", "play", "play b", "play x d4", "play b z99", "komi abc", "boardsize 30",
        "7", "# only a comment", "", "   ", "99 quit", "name"])
    r = gtp(["--model", model, "--playouts", "16", "--resign", "0"], script)
    assert r[0] == "=1 2" and r[1] == "=2 freenet" and r[2].startswith("= ")
    assert r[3] == "= true" and r[4] == "= false"
    assert "heatmap" in r[5] and "lz-analyze" in r[5] and "genmove" in r[5]
    assert r[6] == "? unacceptable size"  # the net plays 7x7
    assert r[7:10] == ["=", "=", "="]
    assert r[10] == "? illegal move"  # occupied
    assert r[11] == "="
    move = r[12][2:]
    assert move.lower() == "pass" or move[0] in "ABCDEFG"
    assert "X" in r[13] and "O" in r[13]
    rows = r[14].split("\n")[1:]
    assert len(rows) == 7 + 2 and rows[7].startswith("pass: ") and rows[8].startswith("winrate: ")
    grid = [list(map(int, row.split())) for row in rows[:7]]
    assert grid[7 - 4][3] == 0 and grid[7 - 3][2] == 0  # D4 and C3 are occupied: 0 as in Leela Zero
    total = sum(map(sum, grid)) + int(rows[7].split()[1])
    assert 900 <= total <= 1000  # the policy x 1000, truncated per point
    assert r[15].startswith("= \n") and r[16].startswith("= \n")
    assert r[17] == "=" and r[18] in ("= B+1.5", "= W+5.5", "= 0") or r[18].startswith("= ")
    assert r[19] == "=" and r[20] == "="
    assert r[21].startswith("= ")
    assert r[22] == "? unknown command"
    assert r[23:28] == ["? syntax error"] * 5
    assert r[28] == "? unacceptable size"
    assert r[29] == "?7 no command"
    assert r[30] == "=99"  # quit; nothing after it is read
    assert len(r) == 31


def test_gtp_without_a_net_plays_a_plain_search():
    r = gtp(["--size", "5", "--playouts", "50"], "boardsize 5\nkomi 0.5\ngenmove b\ngenmove w\nheatmap\nquit\n")
    assert r[0] == "=" and r[1] == "="
    assert r[2][2:4] in {f"{c}{n}" for c in "ABCDE" for n in "12345"} or r[2] == "= pass"
    assert r[3].startswith("= ")
    assert r[4].startswith("? ")  # heatmap needs a net


def reader(proc):
    """A queue that a thread fills with the engine's output lines (None at the end)."""
    lines = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def read_until(lines, predicate, timeout=60):
    got, deadline = [], time.time() + timeout
    while time.time() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.time()))
        except queue.Empty:
            break
        if line is None:
            break
        got.append(line)
        if predicate(line):
            return got
    raise AssertionError(f"timed out; read {len(got)} lines, the last: {got[-1][:300] if got else None!r}")


def test_lz_analyze_streams_until_the_next_command(model):
    proc = subprocess.Popen([sys.executable, "-m", "freenet", "go", "gtp", "--model", model], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
    out = reader(proc)
    try:
        proc.stdin.write("play b d4\nlz-analyze 5\n")
        proc.stdin.flush()
        lines = read_until(out, lambda l: l.startswith("info move"))
        assert lines[:3] == ["=\n", "\n", "=\n"]  # the play, then lz-analyze's reply begins
        info = lines[-1].split(" info ")
        first = info[0].split()
        assert first[:2] == ["info", "move"] and first[3] == "visits" and first[5] == "winrate"
        assert "pv" in first and "order" in first and "prior" in first
        assert 0 <= int(first[6]) <= 10000
        proc.stdin.write("name\n")
        proc.stdin.flush()
        rest = read_until(out, lambda l: l.startswith("= freenet"))
        assert rest[-2] == "\n" and all(l.startswith("info move") for l in rest[:-2])  # blank line ends it
        proc.stdin.write("lz-genmove_analyze w 1\n")
        proc.stdin.flush()
        got = read_until(out, lambda l: l.startswith("play "))
        assert got[:2] == ["\n", "=\n"] and got[-2].startswith("info move")
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_engine_survives_random_garbage(model):
    from freenet.go.net import load_net
    engine = Engine(load_net(model), playouts=4, out=io.StringIO())
    rng = np.random.default_rng(0)
    words = ["play", "genmove", "b", "w", "pass", "A1", "G7", "H8", "undo", "boardsize", "7", "-3", "komi",
             "1e400", "nan", "heatmap", "9", "lz-analyze", "interval", "x", "final_score", "time_left", "clear_board",
             "final_status_list", "dead", "alive", "seki"]
    for _ in range(300):
        line = " ".join(rng.choice(words, size=rng.integers(1, 4)))
        reply = engine.handle(line)
        assert reply is None or reply[0] in "=?"
    assert not engine.quit
    assert clean("a\x00b\tc # d") == "ab c"


# DEAD_STONE: Black's area A-D holds a dead white stone (B4). Tromp-Taylor: W+0.5 (komi 0.5); without B4: B+6.5.
COLUMNS = "ABCDEFG"


def setup_position(engine, rows, without=()):
    """Plays the stones of ``rows`` (top row first) through GTP ``play`` commands."""
    for line in ("boardsize 7", "komi 0.5"):
        assert engine.handle(line) == "=\n\n"
    for i, row in enumerate(rows):
        for col, ch in enumerate(row):
            vertex = f"{COLUMNS[col]}{7 - i}"
            if ch in "XO" and vertex not in without:
                assert engine.handle(f"play {'b' if ch == 'X' else 'w'} {vertex}") == "=\n\n", vertex


def test_final_status_list_and_final_score_remove_dead_stones():
    engine = Engine(None, playouts=16, size=7, seed=0, out=io.StringIO())
    setup_position(engine, DEAD_STONE)
    assert engine.board.score(0.5) == -0.5  # Tromp-Taylor counts B4 for White
    assert engine.handle("final_status_list dead") == "= B4\n\n"
    alive = engine.handle("final_status_list alive")
    groups = alive[2:-2].split("\n")
    assert len(groups) == 2 and {len(g.split()) for g in groups} == {18, 17} and "B4" not in alive
    assert engine.handle("final_status_list seki") == "=\n\n"
    assert engine.handle("final_score") == "= B+6.5\n\n"
    assert engine.handle("12 final_status_list DEAD") == "=12 B4\n\n"
    for bad in ("final_status_list foo", "final_status_list", "final_status_list dead alive"):
        assert engine.handle(bad) == "? syntax error\n\n"
    assert engine.handle("known_command final_status_list") == "= true\n\n"
    assert "final_status_list" in engine.handle("list_commands").split()
    # B4 taken off through play: the same score by both counts
    engine.handle("play b C4")
    engine.handle("play w pass")
    engine.handle("play b B3")
    engine.handle("play w pass")
    engine.handle("play b B5")
    assert engine.handle("final_status_list dead") == "=\n\n"
    assert engine.handle("final_score") == "= B+6.5\n\n" and engine.board.score(0.5) == 6.5
    assert engine.handle("undo") == "=\n\n" and engine.handle("final_status_list dead") == "= B4\n\n"


# As DEAD_STONE with White's area filled to two eyes (F6, F2) and a smaller hole: fewer moves, so that
# the plain search finds the pass. Komi 2.5: Tromp-Taylor W+0.5 (B4 counted), without B4 B+4.5.
PASS_TRAP = [".X.XOOO",
             "XXXXO.O",
             "X.XXOOO",
             "XO.XOOO",
             "X.XXOOO",
             "XXXXO.O",
             ".X.XOOO"]


def test_genmove_does_not_pass_into_a_loss_hidden_by_dead_stones():
    """White to move after Black's pass: passing wins by Tromp-Taylor (B4 counted) and loses once B4 is
    removed, so White plays on instead of passing; where both counts agree, the pass stands."""
    def engine(without=()):
        e = Engine(None, playouts=256, size=7, seed=0, resign=0, out=io.StringIO())
        setup_position(e, PASS_TRAP, without)
        assert e.handle("komi 2.5") == "=\n\n" and e.handle("play b pass") == "=\n\n"
        return e

    plain = engine()
    assert plain.board.score(2.5) == -0.5 and plain.handle("final_score") == "= B+4.5\n\n"
    assert plain.think(WHITE) == plain.board.pass_move  # what the search alone plays
    guarded = engine()
    reply = guarded.handle("genmove w")
    assert reply in ("= B5\n\n", "= C4\n\n", "= B3\n\n")  # not the pass, nor White's eyes F6 and F2
    # a move after which the count without dead stones is worse is skipped (here B3, made to look so)
    picky = engine()
    picky.think(WHITE)
    b3 = picky.board.point("B3")
    real = picky._ownership
    picky._ownership = lambda board: np.ones(49) if board.at(b3) == WHITE else real(board)
    assert picky.pass_guard(picky.board.pass_move, WHITE) in (picky.board.point("B5"), picky.board.point("C4"))
    # the rule itself: no disagreement, no change
    agree = engine(without=("B4",))
    agree.think(WHITE)
    assert agree.board.score(2.5) == 4.5 and agree.handle("final_score") == "= B+4.5\n\n"
    assert agree.pass_guard(agree.board.pass_move, WHITE) == agree.board.pass_move
    assert agree.pass_guard(agree.board.point("C4"), WHITE) == agree.board.point("C4")


def test_final_status_uses_the_ownership_head_when_the_net_has_one():
    from freenet.go.net import new_net
    try:
        net = new_net(size=7, blocks=1, filters=8, seed=1, ownership=True)
    except TypeError:
        pytest.skip("this net.py has no ownership head")
    engine = Engine(net, playouts=4, seed=0, out=io.StringIO())
    setup_position(engine, DEAD_STONE)
    own = engine._net_ownership(engine.board)
    assert own is not None and own.shape == (49,) and np.all(np.abs(own) <= 1)
    assert np.array_equal(engine.ownership(engine.board), own)
    for command in ("final_status_list dead", "final_status_list alive", "final_score"):
        assert engine.handle(command).startswith("=")
    plain = Engine(new_net(size=7, blocks=1, filters=8, seed=1), playouts=4, seed=0, out=io.StringIO())
    assert plain._net_ownership(plain.board) is None
