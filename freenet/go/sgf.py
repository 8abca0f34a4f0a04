"""SGF game records through the ``sgfmill`` library: write finished games, read games for supervised
training. sgfmill numbers points (row, col) from the bottom-left corner, as freenet does."""

import os

from sgfmill import sgf

from freenet.errors import FreenetError
from freenet.go.board import BLACK, EMPTY, WHITE, Board, IllegalMove

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


def read_sgf(data, name="<sgf>"):
    """(size, komi, moves, winner) of an SGF game (bytes, or str). Raises FreenetError for a malformed
    record, a game with setup stones or handicap, or an illegal move."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        game = sgf.Sgf_game.from_bytes(data)
    except ValueError as e:
        raise FreenetError(f"{name}: not a valid SGF file ({e})") from None
    size = game.get_size()
    if not 5 <= size <= 19:
        raise FreenetError(f"{name}: board size {size} (freenet plays 5 to 19)")
    root = game.get_root()
    try:
        komi = float(game.get_komi())
    except ValueError:
        komi = 7.5
    if root.has_setup_stones() or (root.has_property("HA") and str(root.get("HA")) not in ("0", "1")):
        raise FreenetError(f"{name}: handicap or setup stones are not supported")
    try:
        result = root.get("RE") if root.has_property("RE") else None
    except ValueError:
        result = None
    board = Board(size)
    moves = []
    try:
        nodes = game.get_main_sequence()
    except ValueError as e:
        raise FreenetError(f"{name}: {e}") from None
    for i, node in enumerate(nodes[1:], 1):
        try:
            colour, move = node.get_move()
        except ValueError as e:
            raise FreenetError(f"{name}: move {i}: {e}") from None
        if colour is None:
            if node.has_setup_stones():
                raise FreenetError(f"{name}: setup stones in move {i} are not supported")
            continue
        c = BLACK if colour == "b" else WHITE
        point = size * size if move is None else move[0] * size + move[1]
        if board.passes >= 2:
            board.passes = 0
        try:
            board.play(point, c)
        except IllegalMove as e:
            raise FreenetError(f"{name}: move {i} ({board.name(point)}) is illegal: {e}") from None
        moves.append((c, point))
    return size, komi, moves, winner_of(result)
