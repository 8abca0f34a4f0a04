"""Hostile input to the GTP engine (``freenet go gtp``) and to the match runner's engine wrapper.

The engine reads bytes that need not be UTF-8, lines of any length, garbage mixed with real commands: it
answers each command line with exactly one GTP response block (``=``/``?`` ... blank line, the id echoed)
and goes on until ``quit`` or the end of the input. The match runner treats an engine that writes bytes
that are not UTF-8 as broken at once, not after its timeout.
"""

import io
import re
import sys
import threading
import time
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fuzz
from freenet.go.gtp import Engine
from freenet.go.match import EngineError, GtpClient, run_match
from freenet.go.net import new_net, save_net

FUZZ_LINE = 256  # the engine's line limit in the in-process fuzz test: overlong lines stay cheap to make


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets (conftest.py)


@pytest.fixture(scope="module")
def net():
    return new_net(size=7, blocks=1, filters=8, seed=1)


@pytest.fixture(scope="module")
def model(tmp_path_factory, net):
    path = tmp_path_factory.mktemp("gtp") / "net7.safetensors"
    save_net(net, str(path))
    return str(path)


def engine_for(net, size=None):
    """A fast engine: 4 playouts a move, small ownership estimates, never resigns."""
    return Engine(net, playouts=4, size=size, seed=0, resign=0, status_playouts=16, out=io.StringIO())


def drive(engine, data, timeout=60):
    """The engine's output for input ``data``, read as ``freenet go gtp`` reads its stdin (a strict UTF-8
    text stream over the bytes); a hang or an exception, in the engine or its reader thread, fails."""
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    box, thread_errors = {}, []
    hook = threading.excepthook
    threading.excepthook = lambda args: thread_errors.append(args.exc_value)

    def target():
        try:
            box["rc"] = engine.run(stream)
        except BaseException as e:  # noqa: BLE001 - reported below
            box["error"] = e

    try:
        runner = threading.Thread(target=target, daemon=True)
        runner.start()
        runner.join(timeout)
    finally:
        threading.excepthook = hook
    assert not runner.is_alive(), f"the engine hangs on {data[:200]!r}"
    if "error" in box:
        raise box["error"]
    assert not thread_errors, f"a thread died: {thread_errors[0]!r}"
    assert box["rc"] == 0
    return engine.out.getvalue()


def blocks(output):
    """The response blocks of GTP output: each starts with '=' or '?' and ends at a blank line."""
    assert output == "" or output.endswith("\n\n"), repr(output[-200:])
    replies = output.split("\n\n")[:-1]
    for reply in replies:
        assert reply[:1] in ("=", "?"), f"not a response block: {reply[:200]!r} in {output[:1000]!r}"
    return replies


def expected_replies(data, limit):
    """(id, too long) for each line of ``data`` that the engine must answer, preprocessed as GTP says
    (control characters dropped, '#' starts a comment, blank lines get no answer); nothing after 'quit'."""
    out = []
    for raw in data.split(b"\n"):
        if len(raw) > limit:
            out.append(("", True))
            continue
        text = "".join(c for c in raw.decode("utf-8", "replace") if c == "\t" or (ord(c) >= 32 and ord(c) != 127))
        words = text.split("#", 1)[0].split()
        if not words:
            continue
        ident = words.pop(0) if words[0].isascii() and words[0].isdigit() else ""
        out.append((ident, False))
        if words[:1] == ["quit"]:
            break
    return out


def check_replies(data, output, limit):
    replies = blocks(output)
    expected = expected_replies(data, limit)
    assert len(replies) == len(expected), f"{len(expected)} command lines, {len(replies)} replies: {output[:2000]!r}"
    for (ident, too_long), reply in zip(expected, replies):
        if too_long:
            assert reply.startswith("?") and reply.endswith("line too long"), reply
        else:
            assert re.match(rf"[=?]{ident}(\s|$)", reply), (ident, reply)
    return replies


# -- direct tests ------------------------------------------------------------------------------------

@pytest.mark.fuzz
def test_a_line_that_is_not_utf8_is_answered_and_the_engine_goes_on(net):
    data = b"1 name\n2 na\xffme\n\xc3\x28\xfe\n3 play b d\x804\n4 name\n\xff\xff\xffquit\nquit\n"
    replies = blocks(drive(engine_for(net), data))
    assert replies == ["=1 freenet", "?2 unknown command", "? unknown command", "?3 syntax error", "=4 freenet",
                       "? unknown command", "="]
    # a stream of bytes without a text layer (io.BytesIO) works too
    engine = engine_for(net)
    assert engine.run(io.BytesIO(b"n\xe9ame\nname")) == 0
    assert blocks(engine.out.getvalue()) == ["? unknown command", "= freenet"]


@pytest.mark.fuzz
def test_an_overlong_line_is_refused_without_being_held(net):
    engine = engine_for(net)
    data = b"7 name " + b"x" * 200_000 + b"\nname\n" + b"y" * 70_000  # the last one ends at the end of input
    assert blocks(drive(engine, data)) == ["?7 line too long", "= freenet", "? line too long"]
    assert not engine.quit

    class Endless(io.RawIOBase):
        """A 32 MB line of 'x' made as it is read (never in memory at once), then 'name'."""
        line, tail = 32 << 20, b"\nname\n"

        def __init__(self):
            self.pos = 0

        def readable(self):
            return True

        def readinto(self, buf):
            n = min(len(buf), self.line + len(self.tail) - self.pos)
            data = b"x" * max(0, min(n, self.line - self.pos))
            data += self.tail[max(0, self.pos - self.line):][:n - len(data)]
            buf[:n] = data
            self.pos += n
            return n

    engine = engine_for(net)
    tracemalloc.start()
    try:
        assert engine.run(io.BufferedReader(Endless())) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert blocks(engine.out.getvalue()) == ["? line too long", "= freenet"]
    assert peak < 4 << 20, f"{peak:,} bytes held for one long line"


@pytest.mark.fuzz
def test_unknown_commands_blank_lines_and_ids(net):
    data = b"\n   \n\t\r\n# a comment\n\x00\x01\x7f\n12 frobnicate\nfrobnicate 1 2\n13\n 14 name \n15 name # why\n" \
           b"\xd9\xa3 name\n016 known_command\tquit\n"
    replies = blocks(drive(engine_for(net), data))
    assert replies == ["?12 unknown command", "? unknown command", "?13 no command", "=14 freenet", "=15 freenet",
                       "? unknown command", "=016 true"]  # an Arabic digit is no id


@pytest.mark.fuzz
def test_heatmap_all_is_one_response_block(net):
    engine = engine_for(net)
    reply = engine.handle("5 heatmap all")
    assert reply.startswith("=5 \n") and reply.endswith("\n\n") and "\n\n" not in reply[:-2]
    sections = reply[:-2].split("\n")[1:]
    assert [s for s in sections if s.startswith("symmetry")] == [f"symmetry {k}" for k in range(8)]
    assert len(sections) == 8 * (1 + 7 + 2)  # per symmetry: its name, 7 rows, pass, winrate
    assert blocks(drive(engine_for(net), b"heatmap all\nname\n"))[1] == "= freenet"


@pytest.mark.fuzz
def test_a_command_that_raises_is_answered_and_the_engine_goes_on(net):
    engine = engine_for(net)

    def broken(args, ident):
        raise RuntimeError("boom\n\nwith a blank line " + "z" * 1000)

    engine.cmd_showboard = broken
    reply = engine.handle("5 showboard")
    assert reply.startswith("?5 internal error: RuntimeError: boom with a blank line zzz") and len(reply) < 400
    assert reply.endswith("\n\n") and "\n" not in reply[:-2]
    assert engine.handle("name") == "= freenet\n\n"

    # lz-analyze fails after its '=' line is out: the block is still ended, once
    engine = engine_for(net)

    def failing(*args, **kwargs):
        raise MemoryError()

    engine._analyze = failing
    assert blocks(drive(engine, b"1 lz-analyze b 10\n2 name\n")) == ["=1", "=2 freenet"]


@pytest.mark.fuzz
def test_absurd_arguments_are_refused(net):
    huge = b"9" * 5000
    data = b"\n".join([
        b"1 boardsize 100000", b"2 boardsize " + huge, b"3 boardsize \xc2\xb2", b"4 komi nan", b"5 komi 1e400",
        b"6 time_settings nan 1 1", b"7 time_settings -5 0 0", b"8 time_left b inf 0", b"9 time_settings 1 1 " + huge,
        b"10 loadsgf /nonexistent/game.sgf", b"11 loadsgf", b"12 genmove b " + huge, b"13 play b A" + huge,
        b"14 lz-analyze b interval 1" + b"0" * 400, b"15 lz-analyze b interval " + huge, b"16 undo", b"17 name"])
    replies = blocks(drive(engine_for(net), data))
    assert len(replies) == 17
    assert all(r.startswith(f"?{i + 1} ") for i, r in enumerate(replies[:13])), replies[:13]
    assert replies[13].startswith("=14") and replies[14].startswith("?15 ")  # the interval is capped
    assert replies[15] == "?16 cannot undo" and replies[16] == "=17 freenet"


# -- fuzz: random bytes mixed with real commands -----------------------------------------------------

VERTICES = [f"{c}{n}" for c in "ABCDEFGHJ" for n in range(1, 10)] + ["pass", "PASS", "z99", "A0", "D-1", "d4d4"]


def gtp_command():
    return st.one_of(
        st.sampled_from(["clear_board", "list_commands", "final_score", "showboard", "undo", "name", "quit",
                         "protocol_version", "heatmap all", "heatmap 3", "heatmap 9"]),
        st.builds("boardsize {}".format, st.sampled_from(["7", "5", "9", "19", "100000", "0", "-1", "x", "7 7", ""])),
        st.builds("komi {}".format, st.sampled_from(["6.5", "0", "-3", "nan", "inf", "1e400", "x", ""])),
        st.builds("play {} {}".format, st.sampled_from(["b", "w", "black", "WHITE", "x"]), st.sampled_from(VERTICES)),
        st.builds("genmove {}".format, st.sampled_from(["b", "w", "white", "q", ""])),
        st.builds("known_command {}".format, st.sampled_from(["genmove", "frobnicate", "quit", ""])),
        st.builds("final_status_list {}".format, st.sampled_from(["dead", "alive", "seki", "x", ""])),
    ).map(str.encode)


def gtp_line():
    command = gtp_command()
    return st.one_of(
        command,
        st.binary(max_size=40),  # garbage, newlines included
        st.tuples(st.integers(0, 10_000), command).map(lambda t: b"%d %s" % t),  # an id
        st.tuples(command, st.binary(max_size=8)).map(b"".join),  # a real command with bytes around it
        st.tuples(st.binary(max_size=8), command).map(b"".join),
        st.tuples(command, st.integers(FUZZ_LINE, 3 * FUZZ_LINE)).map(lambda t: t[0] + b" " + b"\xff" * t[1]),
    )


gtp_inputs = st.tuples(st.lists(gtp_line(), max_size=25), st.sampled_from([b"\n", b"\r\n", b"\n\n"]),
                       st.booleans()).map(lambda t: t[1].join(t[0]) + (t[1] if t[2] else b""))


@pytest.mark.fuzz
@fuzz.fuzz_settings()
@given(data=gtp_inputs, plain=st.booleans())
def test_fuzz_the_engine_in_process(net, data, plain):
    engine = engine_for(None, size=7) if plain else engine_for(net)
    engine.max_line = FUZZ_LINE
    check_replies(data, drive(engine, data), FUZZ_LINE)


@pytest.mark.fuzz
def test_fuzz_the_real_command(model, monkeypatch):
    """End to end through ``python -m freenet go gtp``, its stdin strict UTF-8 (as with PYTHONIOENCODING or a
    UTF-8 locale; the C locale's surrogateescape hid the reader's UnicodeDecodeError)."""
    import numpy as np

    monkeypatch.setenv("PYTHONIOENCODING", "utf-8")
    words = [b"name", b"boardsize 7", b"boardsize 100000", b"clear_board", b"play b d4", b"play w \xff4",
             b"genmove w", b"genmove b", b"undo", b"komi 0.5", b"final_score", b"final_status_list dead",
             b"showboard", b"heatmap all", b"list_commands", b"known_command undo", b"\xfe\xff", b"\x00\x1b[2J"]
    fixed = b"1 name\n\xff\xfe\n2 na\x00me\n3 name " + b"x" * 70_000 + b"\n4 boardsize 100000\n5 name"
    rng = np.random.default_rng(0)

    def line():
        return words[rng.integers(len(words))] if rng.random() < 0.7 else rng.bytes(int(rng.integers(0, 30)))

    inputs = [fixed] + [b"\n".join(line() for _ in range(40)) for _ in range(fuzz.cases(2))]
    for i, data in enumerate(inputs):
        args = ["go", "gtp", "--playouts", "4", "--resign", "0"]
        args += ["--size", "7"] if i % 2 else ["--model", model]
        outcome, code, out, err = fuzz.run_cli(args, stdin=data)
        assert outcome == "ok", (outcome, code, err[-2000:], data[:300])
        replies = check_replies(data, out.decode("utf-8"), 64 * 1024)
        if i == 0:
            assert replies == ["=1 freenet", "? unknown command", "=2 freenet", "?3 line too long",
                               "?4 unacceptable size", "=5 freenet"]


# -- the match runner: an engine that writes bytes that are not UTF-8 --------------------------------

GOOD_ENGINE = """import sys
for line in sys.stdin:
    word = line.split()[0] if line.split() else ''
    sys.stdout.write('= pass\\n\\n' if word == 'genmove' else '= B+0.5\\n\\n' if word == 'final_score' else '=\\n\\n')
    sys.stdout.flush()
    if word == 'quit':
        break
"""

# an engine that is fine until it has seen ``after`` commands, then writes the bytes of the file ``garbage``
BAD_ENGINE = """import sys
garbage = open({garbage!r}, 'rb').read()
seen = 0
for line in sys.stdin:
    seen += 1
    if seen > {after}:
        sys.stdout.buffer.write(garbage)
    else:
        sys.stdout.buffer.write(b'= pass\\n\\n' if line.startswith('genmove') else b'=\\n\\n')
    sys.stdout.flush()
"""


def engine_script(tmp_path, name, text):
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return f"{sys.executable} {path}"


def bad_engine(tmp_path, name, after, garbage):
    (tmp_path / f"{name}.out").write_bytes(garbage)
    return engine_script(tmp_path, name, BAD_ENGINE.format(after=after, garbage=str(tmp_path / f"{name}.out")))


@pytest.mark.fuzz
@pytest.mark.parametrize("garbage", [b"= \xff\xfe\n\n", b"\xe9chec\n= \n\n", b"= B+\xc3\n\n",
                                     b"= " + b"\xff" * 3_000_000 + b"\n\n"],
                         ids=["bad-byte", "banner", "cut-short", "overlong"])  # (an id of 3 MB would not fit in
                                                                              # the environment of the engine)
def test_an_engine_writing_bytes_that_are_not_utf8_is_an_error_at_once(tmp_path, garbage):
    bad = GtpClient(bad_engine(tmp_path, "bad", 0, garbage), "liar", timeout=60)
    try:
        start = time.monotonic()
        with pytest.raises(EngineError, match=r"^liar: .*(not UTF-8|longer than)"):
            bad.send("name")
        with pytest.raises(EngineError, match="^liar: "):  # and it stays broken
            bad.send("name")
        assert time.monotonic() - start < 10
    finally:
        bad.close()


@pytest.mark.fuzz
def test_a_match_with_such_an_engine_fails_fast_naming_it(tmp_path):
    good = engine_script(tmp_path, "good", GOOD_ENGINE)
    garbled = bad_engine(tmp_path, "garbled", 3, b"= \xff\n\n")  # at its first genmove or play
    logged = []
    start = time.monotonic()
    summary = run_match(garbled, good, 2, size=5, log=logged.append, timeout=60, names=("garbled", "good"))
    assert time.monotonic() - start < 20
    assert summary.games == 2 and summary.wins[0] == 0 and summary.wins[1] + summary.no_result == 2
    assert all(r.reason == "engine error" for r in summary.results)
    errors = [line for line in logged if line.startswith("garbled: ")]
    assert len(errors) == 2 and all("not UTF-8" in line for line in errors), logged
    # broken during the setup: the game has no result, again at once
    broken = bad_engine(tmp_path, "broken", 0, b"=\xff\n\n")
    start = time.monotonic()
    summary = run_match(broken, good, 1, size=5, log=None, timeout=60, names=("broken", "good"))
    assert time.monotonic() - start < 10
    assert summary.no_result == 1 and "broken: " in summary.results[0].reason
    assert "not UTF-8" in summary.results[0].reason
