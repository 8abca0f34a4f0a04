"""A GTP version 2 engine (``freenet go gtp``): the required commands, the usual extras, Leela Zero's
``heatmap`` and the ``lz-analyze`` / ``lz-genmove_analyze`` output that Lizzie reads.

``final_score`` and ``final_status_list`` remove the dead stones first, as a referee does (see
``freenet.go.status``): the ownership comes from the net's ownership head when it has one (the mean
over the 8 symmetries), else from heavy playouts. The search itself scores Tromp-Taylor, so ``genmove``
does not pass into a loss that only the dead stones hide: when the search chooses the pass but the
winner by Tromp-Taylor and the winner after removing the dead stones differ, it plays the most visited
(else the likeliest) other move that neither fills one of its own eyes, nor puts itself in atari, nor
makes the count without dead stones worse for it, if there is one; usually that takes dead stones off
the board. The search's move limit (2 N*N moves) ends it.

Input is cleaned as the GTP spec says (control characters dropped, tabs to spaces, ``#`` comments cut,
blank lines ignored, an optional numeric id echoed back). Every failure is a ``? message`` reply; no
command ends the engine except ``quit`` or the end of the input.

The input is hostile until proven otherwise: it is read as bytes and decoded line by line (a byte that is
not UTF-8 becomes U+FFFD, so the line is answered like any unknown text), a line longer than
``MAX_LINE`` bytes is answered ``? line too long`` and skipped without being held, at most
``INBOX_LINES`` lines are read ahead, and an exception inside a command becomes its ``?`` answer.
"""

import math
import queue
import sys
import threading
import time

import numpy as np

from freenet.errors import FreenetError
from freenet.go import symmetry
from freenet.go.board import BLACK, WHITE, Board, IllegalMove, _is_eye, check_size
from freenet.go.features import planes
from freenet.go.mcts import MCTS, SearchConfig, UniformEvaluator
from freenet.go.status import (dead_stones, final_status, ownership_by_playouts, score_with_dead_removed,
                               self_atari, winner_of_score)

MAX_LINE = 64 * 1024  # bytes of one command line; real GTP commands are far shorter
INBOX_LINES = 64  # lines read ahead of the engine: a controller that floods it waits instead of filling memory
MAX_MESSAGE = 200  # characters of an exception's text in a '?' answer
MAX_INTERVAL = 360_000  # centiseconds between lz-analyze lines (an hour): larger is an absurd request
MAX_ANALYZE_PLAYOUTS = 25_000  # lz-analyze stops here: the tree holds ~30 KB a playout on 19x19 (~750 MB)

COMMANDS = ["protocol_version", "name", "version", "known_command", "list_commands", "quit", "boardsize",
            "clear_board", "komi", "play", "genmove", "showboard", "undo", "final_score", "time_settings",
            "time_left", "final_status_list", "heatmap", "lz-analyze", "lz-genmove_analyze"]


class GtpError(Exception):
    """A command that fails: its message becomes the ``?`` reply."""


def parse_color(text):
    t = text.lower()
    if t in ("b", "black"):
        return BLACK
    if t in ("w", "white"):
        return WHITE
    raise GtpError("syntax error")


def clean(line):
    """A GTP input line as the spec says to preprocess it."""
    line = "".join(ch for ch in line if ch in "\t\n" or (ord(ch) >= 32 and ord(ch) != 127))
    line = line.replace("\t", " ").split("#", 1)[0]
    return line.strip()


def is_id(word):
    return word.isascii() and word.isdigit()  # str.isdigit alone takes '²' and other digits int() refuses


def one_line(message):
    """An error's text fit for a '?' answer: one line (a blank line would end the answer early), bounded."""
    text = " ".join(str(message).split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


class LineTooLong:
    """Stands in the inbox for an input line longer than the limit; ``ident`` is its id, if one was read."""

    def __init__(self, ident):
        self.ident = ident


def read_lines(stream, limit=MAX_LINE):
    """The lines of ``stream`` as text, or a LineTooLong for a line of more than ``limit`` bytes (its
    first ``limit`` are read, the rest skipped in pieces). A text stream with a byte layer (sys.stdin) is
    read through that layer, so that a byte that is not UTF-8 cannot stop the reader: it becomes U+FFFD."""
    source = getattr(stream, "buffer", stream)
    while True:
        chunk = source.readline(limit + 1)
        if not chunk:
            return
        newline = b"\n" if isinstance(chunk, bytes) else "\n"
        text = chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else chunk
        if len(chunk) <= limit or chunk.endswith(newline):
            yield text
            continue
        while chunk and not chunk.endswith(newline):
            chunk = source.readline(limit + 1)
        words = clean(text).split()
        yield LineTooLong(words[0] if len(words) > 1 and is_id(words[0]) else "")  # a whole first word only


def format_score(score):
    if score == 0:
        return "0"
    return f"{'B' if score > 0 else 'W'}+{abs(score):g}"


class Engine:
    """The engine's state: the game, the search, the clock. ``net`` is a ``GoNet`` or None (plain search)."""

    def __init__(self, net=None, playouts=400, size=None, komi=7.5, seed=0, resign=0.05, batch=8,
                 analyze_batch=None, out=None, name="freenet", status_playouts=256):
        from freenet import __version__
        self.net = net
        self.version = __version__
        self.name = name
        self.playouts = playouts
        self.resign = resign
        self.seed = seed
        self.status_playouts = status_playouts  # playouts per ownership map (final_score, the pass guard)
        self._owner_cache = (None, None)  # (position key, ownership)
        self._owner_evaluator = None
        self.rng = np.random.default_rng(seed)
        self.out = out if out is not None else sys.stdout
        if net is not None:
            from freenet.go.net import Evaluator
            self.evaluator = Evaluator(net, symmetry_mode="random", rng=self.rng)
            size = net.config.size if size is None else size
            if size != net.config.size:
                raise FreenetError(f"the net plays {net.config.size}x{net.config.size}, not {size}x{size}")
        else:
            self.evaluator = UniformEvaluator(komi=komi, seed=seed)
        self.size = check_size(19 if size is None else size)
        self.komi = komi
        self.config = SearchConfig(komi=komi, batch=batch)
        self.search = MCTS(self.evaluator, self.config, self.rng)
        self.board = Board(self.size)
        self.main_time = self.byo_time = None
        self.byo_stones = 0
        self.time_left = {}
        self.quit = False
        self.inbox = None  # a queue of incoming lines while running from run(); lets lz-analyze stop
        self.max_line = MAX_LINE
        self._begun = False  # a streaming command (lz-analyze) has written its '=' line

    # -- the loop -----------------------------------------------------------------------------------
    def run(self, stream=None):
        """Reads commands from ``stream`` (stdin) until ``quit`` or the end of the input."""
        stream = sys.stdin if stream is None else stream
        self.inbox = queue.Queue(INBOX_LINES)
        finished = threading.Event()

        def deliver(item):
            while not finished.is_set():  # the engine may have quit: then stop waiting for room
                try:
                    self.inbox.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    pass
            return False

        def reader():
            try:
                for item in read_lines(stream, self.max_line):
                    if not deliver(item):
                        return
            except Exception as e:  # an unreadable input ends like an ended one: the engine must not wait on
                print(f"freenet go gtp: cannot read the input: {e}", file=sys.stderr)
            deliver(None)

        threading.Thread(target=reader, daemon=True).start()
        try:
            while not self.quit:
                item = self.inbox.get()
                if item is None:
                    break
                try:
                    if isinstance(item, LineTooLong):
                        self.write(f"?{item.ident} line too long\n\n")
                        continue
                    reply = self.handle(item)
                    if reply is not None:
                        self.write(reply)
                except (BrokenPipeError, OSError):  # the controller went away
                    break
        finally:
            finished.set()
        return 0

    def write(self, text):
        self.out.write(text)
        self.out.flush()

    def handle(self, line):
        """The full reply ('=id ...\\n\\n' or '?id ...\\n\\n') to one input line, or None for a blank line."""
        line = clean(line)
        if not line:
            return None
        parts = line.split()
        ident = ""
        if is_id(parts[0]):
            ident = parts.pop(0)
            if not parts:
                return f"?{ident} no command\n\n"
        command, args = parts[0], parts[1:]
        method = getattr(self, "cmd_" + command.replace("-", "_"), None) if command in COMMANDS else None
        if method is None:
            return f"?{ident} unknown command\n\n"
        self._begun = False
        try:
            result = method(args, ident)
        except (GtpError, FreenetError, ValueError, IndexError) as e:
            message = str(e) or type(e).__name__
        except Exception as e:  # a bug must not end the engine: report it as a failure
            self.search.root = None  # nor may a half-done search carry over into the next command
            message = f"internal error: {type(e).__name__}: {e}"
        else:
            if result is None:  # the command wrote its own reply (lz-analyze)
                return None
            return f"={ident} {result}\n\n" if result else f"={ident}\n\n"
        if self._begun:  # its '=' line is out: end that answer (one block per command), tell the log why
            print(f"freenet go gtp: {command} failed: {one_line(message)}", file=sys.stderr)
            self.write("\n")
            return None
        return f"?{ident} {one_line(message)}\n\n"

    # -- required commands ------------------------------------------------------------------------
    def cmd_protocol_version(self, args, ident):
        return "2"

    def cmd_name(self, args, ident):
        return self.name

    def cmd_version(self, args, ident):
        return self.version

    def cmd_known_command(self, args, ident):
        if len(args) != 1:
            raise GtpError("syntax error")
        return "true" if args[0] in COMMANDS else "false"

    def cmd_list_commands(self, args, ident):
        return "\n".join(COMMANDS)

    def cmd_quit(self, args, ident):
        self.quit = True
        return ""

    def cmd_boardsize(self, args, ident):
        if len(args) != 1 or not is_id(args[0]):
            raise GtpError("syntax error")
        n = int(args[0]) if len(args[0]) <= 4 else 0  # no int() of thousands of digits
        if not 5 <= n <= 19 or (self.net is not None and n != self.net.config.size):
            raise GtpError("unacceptable size")
        self.size = n
        self._new_game()
        return ""

    def cmd_clear_board(self, args, ident):
        self._new_game()
        return ""

    def _new_game(self):
        self.board = Board(self.size)
        self.search.root = None

    def cmd_komi(self, args, ident):
        try:
            komi = float(args[0])
        except (IndexError, ValueError):
            raise GtpError("syntax error") from None
        if not math.isfinite(komi):
            raise GtpError("syntax error")
        self.komi = self.config.komi = komi
        if isinstance(self.evaluator, UniformEvaluator):
            self.evaluator.komi = komi
        self.search.root = None
        return ""

    def cmd_play(self, args, ident):
        if len(args) != 2:
            raise GtpError("syntax error")
        color = parse_color(args[0])
        try:
            point = self.board.point(args[1])
        except FreenetError:
            raise GtpError("syntax error") from None
        self._play(point, color)
        return ""

    def _play(self, point, color):
        if self.board.passes >= 2:  # play goes on after two passes if the controller says so
            self.board.passes = 0
        self.board.resigned = None
        try:
            self.board.play(point, color)
        except IllegalMove:
            raise GtpError("illegal move") from None

    def cmd_genmove(self, args, ident):
        if len(args) != 1:
            raise GtpError("syntax error")
        color = parse_color(args[0])
        move = self.think(color)
        if move is None:
            self.board.resign(color)
            return "resign"
        move = self.pass_guard(move, color)
        self._play(move, color)
        return self.board.name(move)

    # -- extras ---------------------------------------------------------------------------------
    def cmd_showboard(self, args, ident):
        b = self.board
        last = f"last move: {b.name(b.moves[-1][1])}" if b.moves else "no moves yet"
        black, white = b.area()
        return (f"\n{b}\n{'Black' if b.to_move == BLACK else 'White'} to move, {last}, "
                f"area B {black} W {white}, komi {self.komi:g}")

    def cmd_undo(self, args, ident):
        if not self.board.moves:
            raise GtpError("cannot undo")
        moves = self.board.moves[:-1]
        b = Board(self.size)
        for color, point in moves:
            if b.passes >= 2:
                b.passes = 0
            b.play(point, color)
        self.board = b
        self.search.root = None
        return ""

    def cmd_final_score(self, args, ident):
        if self.board.resigned is not None:
            return "W+Resign" if self.board.resigned == BLACK else "B+Resign"
        return format_score(self.score_after_removal(self.board))

    def cmd_final_status_list(self, args, ident):
        if len(args) != 1 or args[0].lower() not in ("alive", "dead", "seki"):
            raise GtpError("syntax error")
        b = self.board
        groups = final_status(b, self.ownership(b))[args[0].lower()]
        return "\n".join(" ".join(b.name(p) for p in group) for group in groups)

    def cmd_time_settings(self, args, ident):
        try:
            main, byo, stones = float(args[0]), float(args[1]), int(args[2])
        except (IndexError, ValueError):
            raise GtpError("syntax error") from None
        if not (0 <= main < math.inf and 0 <= byo < math.inf and stones >= 0):  # NaN fails these too
            raise GtpError("syntax error")
        self.main_time, self.byo_time, self.byo_stones = main, byo, stones
        self.time_left = {}
        return ""

    def cmd_time_left(self, args, ident):
        try:
            color, seconds, stones = parse_color(args[0]), float(args[1]), int(args[2])
        except (IndexError, ValueError):
            raise GtpError("syntax error") from None
        if not (math.isfinite(seconds) and stones >= 0):
            raise GtpError("syntax error")
        self.time_left[color] = (seconds, stones)
        return ""

    def time_budget(self, color):
        """Seconds to think for this move, or None without a clock."""
        if self.main_time is None:
            return None
        seconds, stones = self.time_left.get(color, (self.main_time, 0))
        if self.main_time == 0 and self.byo_time == 0:
            return None  # no time limit
        if stones > 0:  # in byo-yomi: share the period among its stones
            return max(0.05, 0.8 * seconds / stones)
        moves_left = max(10, (self.size * self.size - self.board.move_number) // 2)
        return max(0.05, seconds / moves_left)

    # -- dead stones ----------------------------------------------------------------------------
    def ownership(self, board):
        """The ownership map of ``board`` in Black's sign (N*N,), cached for the last position asked."""
        key = (board.size, board.to_move, tuple(board.moves), self.status_playouts)
        if self._owner_cache[0] != key:
            self._owner_cache = (key, self._ownership(board))
        return self._owner_cache[1]

    def _ownership(self, board):
        own = self._net_ownership(board)
        return own if own is not None else ownership_by_playouts(board, self.status_playouts, seed=self.seed)

    def _net_ownership(self, board):
        """The net's ownership head averaged over the 8 symmetries, in Black's sign; None without one."""
        if self.net is None or not self.net.config.ownership:
            return None
        if self._owner_evaluator is None:
            from freenet.go.net import Evaluator
            self._owner_evaluator = Evaluator(self.net, symmetry_mode="average")
        own = self._owner_evaluator.evaluate_planes(planes(board)[None], board.legal_mask()[None])[2][0]
        return np.clip(own if board.to_move == BLACK else -own, -1.0, 1.0)  # the net's is the side to move's

    def score_after_removal(self, board, ownership=None):
        """Black's margin with komi once the dead stones are off the board (Chinese area scoring)."""
        ownership = self.ownership(board) if ownership is None else ownership
        return score_with_dead_removed(board, dead_stones(board, ownership), self.komi)

    def pass_guard(self, move, color, tries=8):
        """``move``, unless it is a pass that Tromp-Taylor and the count without dead stones score for
        different winners. Then, of the searched root's legal moves, most visited first (ties and unvisited:
        the likeliest), the first that fills none of ``color``'s eyes, is not a self-atari, and leaves the
        count without dead stones no worse for ``color`` (filling an eye space can kill a group without
        filling an eye); the pass if none of the first ``tries`` such moves is."""
        b = self.board
        root = self.search.root
        if (move != b.pass_move or root is None or not root.expanded or root.board.to_move != color
                or root.board.moves != b.moves or b.move_number >= (self.config.max_moves or 2 * b.size ** 2)):
            return move  # past the move limit the game is scored as it stands anyway
        now = self.score_after_removal(b)
        if winner_of_score(b.score(self.komi)) == winner_of_score(now):
            return move
        sign = 1 if color == BLACK else -1
        order = sorted(range(len(root.moves)), key=lambda i: (-root.N[i], -root.P_raw[i]))
        for i in order:
            m = int(root.moves[i])
            if m == b.pass_move:  # the root's moves are legal (superko included)
                continue
            if _is_eye(b.color, b.W, b.vertex(m), color) or self_atari(b, m, color):
                continue
            after = b.copy()
            after.play(m, color)
            if sign * self.score_after_removal(after, self._ownership(after)) >= sign * now:
                return m
            tries -= 1
            if tries == 0:
                break
        return move

    # -- thinking -------------------------------------------------------------------------------
    def _sync(self, color):
        """Points the search at the current position, keeping the tree when the game just went on."""
        b = self.board
        if b.to_move != color:
            b.to_move = color
        root = self.search.root
        if root is not None:
            done = root.board.moves
            extra = b.moves[len(done):]
            if b.moves[:len(done)] == done and len(extra) <= 2:
                try:
                    for c, point in extra:
                        if self.search.root.board.to_move != c:
                            raise IllegalMove("colours do not alternate")
                        self.search.advance(point)
                except IllegalMove:
                    self.search.root = None
            else:
                self.search.root = None
        root = self.search.root
        if root is None or root.board.moves != b.moves or root.board.to_move != b.to_move:
            self.search.set_board(b)
        if self.search.root.board.passes >= 2 and not self.search.root.expanded:
            self.search.root.board.passes = 0

    def think(self, color, should_stop=None, playouts=None):
        """Searches and returns the move to play for ``color``, or None to resign."""
        self._sync(color)
        playouts = self.playouts if playouts is None else playouts
        budget = self.time_budget(color)
        start = time.perf_counter()

        def stop():
            return ((budget is not None and time.perf_counter() - start > budget)
                    or (should_stop is not None and should_stop()))

        self.search.run(playouts, should_stop=stop)
        move = self.search.choose(0.0)
        winrate = (self.search.root_value() + 1) / 2
        if (self.resign > 0 and winrate < self.resign and self.search.root.visits >= min(playouts, 50)
                and self.board.move_number >= self.size * self.size // 4):
            return None
        return move

    # -- Leela Zero's commands ------------------------------------------------------------------
    def cmd_heatmap(self, args, ident):
        if self.net is None:
            raise GtpError("heatmap needs a net (--model)")
        from freenet.go.net import Evaluator
        ev = Evaluator(self.net)
        x = planes(self.board)[None]
        arg = args[0] if args else "0"
        if arg == "all":  # one answer: each symmetry's map under its name, no blank line between them
            return "".join(f"\nsymmetry {s}" + self._heatmap(*ev.raw_symmetric(x, [s])) for s in range(symmetry.COUNT))
        if arg in ("average", "avg"):
            ps, vs = zip(*(ev.raw_symmetric(x, [s]) for s in range(symmetry.COUNT)))
            p, v = np.mean(ps, axis=0), np.mean([(1 + w) / 2 for w in vs], axis=0) * 2 - 1
        else:
            if not arg.isdigit() or int(arg) >= symmetry.COUNT:
                raise GtpError("symmetry must be 0-7, average or all")
            p, v = ev.raw_symmetric(x, [int(arg)])
        return self._heatmap(p, v)

    def _heatmap(self, p, v):
        N = self.size
        stones = self.board.stones_array()
        lines = []
        for y in range(N - 1, -1, -1):
            lines.append("".join(f"{int(p[0, y * N + x] * 1000) if stones[y, x] == 0 else 0:3d} "
                                 for x in range(N)))
        lines.append(f"pass: {int(p[0, N * N] * 1000)}")
        lines.append(f"winrate: {(1 + float(v[0])) / 2:f}")
        return "\n" + "\n".join(lines)

    def _analyze_args(self, args):
        color, interval = None, 100  # centiseconds
        i = 0
        while i < len(args):
            a = args[i].lower()
            if a in ("b", "w", "black", "white") and color is None and i == 0:
                color = parse_color(a)
            elif a == "interval" and i + 1 < len(args):
                interval = int(args[i + 1])
                i += 1
            elif is_id(a):
                interval = int(a)
            elif a in ("minmoves", "maxmoves") and i + 1 < len(args):
                i += 1
            elif a in ("avoid", "allow"):  # avoid COLOR VERTICES UNTIL: accepted, not applied
                i += 3
            i += 1
        return color, min(max(interval, 1), MAX_INTERVAL)

    def _info_line(self):
        parts = []
        for order, (move, visits, winrate, prior, pv) in enumerate(self.search.candidates()):
            wr = int(round(winrate * 10000))
            lcb = max(0, int(round((winrate - 1.96 * 0.5 / math.sqrt(visits)) * 10000)))
            parts.append(f"info move {self.board.name(move)} visits {visits} winrate {wr} prior "
                         f"{int(round(prior * 10000))} lcb {lcb} order {order} pv "
                         + " ".join(self.board.name(m) for m in pv))
        return " ".join(parts)

    def _analyze(self, color, interval, ident, limit=None):
        """Searches, printing an info line every ``interval`` centiseconds, until a new command arrives
        (or, with ``limit``, until that many playouts are done)."""
        self._sync(color)
        last = time.perf_counter()
        done = 0
        while True:
            if self.inbox is not None and not self.inbox.empty():
                break
            if done >= (MAX_ANALYZE_PLAYOUTS if limit is None else limit):
                break
            if self.search.root.board.game_over:
                break
            self.search.run(self.config.batch)
            done += self.config.batch
            if time.perf_counter() - last >= interval / 100:
                self.write(self._info_line() + "\n")
                last = time.perf_counter()
            if self.inbox is None and limit is None and done >= self.playouts:
                break  # driven without a reader (tests): stop after the usual playouts
        line = self._info_line()
        if line:
            self.write(line + "\n")

    def cmd_lz_analyze(self, args, ident):
        color, interval = self._analyze_args(args)
        color = self.board.to_move if color is None else color
        self.write(f"={ident}\n")
        self._begun = True
        self._analyze(color, interval, ident)
        self.write("\n")
        return None

    def cmd_lz_genmove_analyze(self, args, ident):
        color, interval = self._analyze_args(args)
        if color is None:
            raise GtpError("syntax error")
        self.write(f"={ident}\n")
        self._begun = True
        self._analyze(color, interval, ident, limit=self.playouts)
        move = self.search.choose(0.0)
        winrate = (self.search.root_value() + 1) / 2
        if self.resign > 0 and winrate < self.resign and self.board.move_number >= self.size ** 2 // 4:
            self.board.resign(color)
            self.write("play resign\n\n")
        else:
            move = self.pass_guard(move, color)
            self._play(move, color)
            self.write(f"play {self.board.name(move)}\n\n")
        return None
