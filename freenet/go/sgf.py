"""SGF game records through the ``sgfmill`` library: write finished games, read games for supervised
training. sgfmill numbers points (row, col) from the bottom-left corner, as freenet does."""

import os
import re

import numpy as np
from sgfmill import sgf, sgf_grammar

from freenet import validate
from freenet.go.board import BLACK, EMPTY, MAX_SIZE, MIN_SIZE, WHITE, Board, IllegalMove

_COLOUR = {BLACK: "b", WHITE: "w"}


def result_string(winner, score=None, resigned=False):
    """SGF's RE value: 'B+R', 'W+3.5', '0' (draw), '?' (unknown)."""
    if winner is None:
        return "?"
    if winner == EMPTY:
        return "0"
    side = "B" if winner == BLACK else "W"
    if resigned:
        return f"{side}+R"
    return f"{side}+{abs(score):g}" if score is not None else f"{side}+"


def game_to_sgf(size, komi, moves, result="?", black="", white="", comment=None):
    """SGF bytes of a game: ``moves`` is a list of (colour, point) with point size*size for a pass."""
    game = sgf.Sgf_game(size=size)
    root = game.get_root()
    root.set("KM", float(komi))
    root.set("RU", "Chinese")  # area scoring with positional superko: the nearest SGF rule set name
    root.set("RE", result)
    if black:
        root.set("PB", black)
    if white:
        root.set("PW", white)
    if comment:
        root.set("GC", comment)
    root.set("AP", ("freenet", "1"))
    for colour, point in moves:
        node = game.extend_main_sequence()
        node.set_move(_COLOUR[colour], None if point == size * size else divmod(point, size))
    return game.serialise()


def write_sgf(path, *args, **kwargs):
    data = game_to_sgf(*args, **kwargs)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def winner_of(result):
    """BLACK, WHITE, EMPTY (draw) or None (unknown) from an SGF RE value."""
    r = (result or "").strip().upper()
    if r.startswith("B+"):
        return BLACK
    if r.startswith("W+"):
        return WHITE
    if r in ("0", "DRAW", "JIGO"):
        return EMPTY
    return None


# What one SGF record may hold (``read_sgf``): a game with comments and variations has a few thousand nodes
# and nests variations a few dozen deep. sgfmill's parser is iterative but takes ~5 s per million nodes.
MAX_SGF_BYTES = 8 << 20
MAX_SGF_NODES = 100_000
MAX_SGF_DEPTH = 1000
_VALUE = re.compile(rb"\[[^\\\]]*(?:\\.[^\\\]]*)*\]", re.DOTALL)  # a property value, as sgfmill's tokeniser
_START = re.compile(rb"\(\s*;")  # where sgfmill starts reading (what comes before is ignored)


def _check_structure(data, name):
    """Refuses a record larger than sgfmill should parse: its first game tree (the one read) with more than
    MAX_SGF_NODES nodes or variations nested more than MAX_SGF_DEPTH deep. Counted without the property
    values, with NumPy (no Python loop over the bytes, no recursion)."""
    if len(data) > MAX_SGF_BYTES:
        validate.fail(name, f"{len(data):,} bytes, more than the {MAX_SGF_BYTES:,} an SGF record may have")
    start = _START.search(data)
    if not start:
        return  # no game: sgfmill says so
    skeleton = np.frombuffer(_VALUE.sub(b"", data[start.start():]), np.uint8)
    depth = np.cumsum((skeleton == ord("(")).astype(np.int64) - (skeleton == ord(")")))
    closed = np.flatnonzero(depth == 0)
    game = skeleton[:closed[0] + 1] if len(closed) else skeleton
    deepest = int(depth[:len(game)].max())
    if deepest > MAX_SGF_DEPTH:
        validate.fail(name, f"variations nested {deepest} deep, more than {MAX_SGF_DEPTH}")
    nodes = int(np.count_nonzero(game == ord(";")))
    if nodes > MAX_SGF_NODES:
        validate.fail(name, f"{nodes:,} nodes, more than the {MAX_SGF_NODES:,} a game record may have")


def _parse(data, name):
    """The sgfmill game of ``data``; a charset that Python cannot decode text with (CA[rot13], CA[klingon])
    is read as UTF-8 instead, as most SGF files are."""
    try:
        coarse = sgf_grammar.parse_sgf_game(data)
        encoding = (coarse.sequence[0].get("CA") or [b"ISO-8859-1"])[0].decode("ascii", "replace")
        try:
            b"a".decode(encoding)  # LookupError for unknown names and for codecs that are not text encodings
        except LookupError:
            return sgf.Sgf_game.from_coarse_game_tree(coarse, override_encoding="UTF-8")
        except ValueError:
            pass  # a text encoding in which "a" is not text (UTF-16): sgfmill's checks say what is wrong
        return sgf.Sgf_game.from_coarse_game_tree(coarse)
    except ValueError as e:
        validate.fail(name, f"not a valid SGF file ({e})")


def _handicap(root, name):
    """The root's HA value (0 without one); a value that is not a whole number is an error."""
    if not root.has_property("HA"):
        return 0
    raw = root.get_raw("HA").strip()
    if not re.fullmatch(rb"[+-]?\d{1,4}", raw):
        validate.fail(name, f"the handicap HA[{raw[:20].decode('ascii', 'replace')}] is not a whole number")
    return int(raw)


def read_sgf(data, name="<sgf>"):
    """(size, komi, moves, winner) of an SGF game (bytes, or str): the main line of the first game tree.
    Raises FileFormatError (a FreenetError) naming ``name`` for a malformed or oversized record, a game
    with setup stones or handicap, or an illegal move."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    data = bytes(data)
    _check_structure(data, name)
    game = _parse(data, name)
    size = game.get_size()
    if not MIN_SIZE <= size <= MAX_SIZE:
        validate.fail(name, f"board size {size} (freenet plays {MIN_SIZE} to {MAX_SIZE})")
    root = game.get_root()
    try:
        komi = float(game.get_komi())
    except ValueError:
        komi = 7.5
    if root.has_setup_stones() or _handicap(root, name) not in (0, 1):
        validate.fail(name, "handicap or setup stones are not supported")
    # RE's meaning is in its first ASCII characters ("B+R", "W+3.5", "0"): read raw, not through the charset's codec
    result = root.get_raw("RE")[:64].decode("ascii", "replace") if root.has_property("RE") else None
    board = Board(size)
    moves = []
    try:
        nodes = game.get_main_sequence()
    except ValueError as e:
        validate.fail(name, str(e))
    for i, node in enumerate(nodes[1:], 1):
        try:
            colour, move = node.get_move()
        except ValueError as e:
            validate.fail(name, f"move {i}: {str(e) or 'not a point on the board'}")
        if colour is None:
            if node.has_setup_stones():
                validate.fail(name, f"setup stones in move {i} are not supported")
            continue
        c = BLACK if colour == "b" else WHITE
        point = size * size if move is None else move[0] * size + move[1]
        if board.passes >= 2:
            board.passes = 0
        try:
            board.play(point, c)
        except IllegalMove as e:
            validate.fail(name, f"move {i} ({board.name(point)}) is illegal: {e}")
        moves.append((c, point))
    return size, komi, moves, winner_of(result)
