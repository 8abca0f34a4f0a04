"""Matches between GTP engines (``freenet go match``): alternating colours, scores agreed by both engines
(or decided by a referee engine, else by freenet's Tromp-Taylor count), wins with a 95% interval.

An engine command is split like a shell line. ``{seed}`` in it is replaced by a seed that changes every
game (and the engine is then started afresh for each game); without it the engine is started once and
``clear_board`` starts each game.

An engine's output is GTP text: a byte that is not UTF-8, a line longer than ``MAX_LINE`` bytes or an
answer longer than ``MAX_REPLY`` makes it an engine error at once (naming the engine), not a wait for the
timeout.
"""

import math
import os
import queue
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field

from freenet.errors import FreenetError
from freenet.go.board import BLACK, EMPTY, WHITE, Board, IllegalMove
from freenet.go.sgf import result_string, write_sgf


MAX_LINE = 1 << 20  # bytes of one line of an engine's output (a 19x19 heatmap line is ~80)
MAX_REPLY = 4 << 20  # characters of one answer (its lines without their line ends)
QUEUED_LINES = 1024  # output lines read ahead: an engine that floods its output waits instead of filling memory


class EngineError(Exception):
    """The engine died, timed out or answered nonsense."""


class GtpClient:
    """A GTP engine in a child process."""

    def __init__(self, command, name=None, timeout=600.0, stderr=None):
        self.command = command
        self.name = name or command
        self.timeout = timeout
        try:
            argv = shlex.split(command)
        except ValueError as e:
            raise FreenetError(f"cannot parse engine command {command!r}: {e}") from None
        if not argv:
            raise FreenetError("empty engine command")
        try:  # bytes both ways: the output is decoded line by line, so that bad bytes are an error we see
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=stderr if stderr is not None else subprocess.DEVNULL)
        except OSError as e:
            raise FreenetError(f"cannot start engine {command!r}: {e}") from None
        self.lines = queue.Queue(QUEUED_LINES)
        self.failure = None  # why the engine's output can no longer be read, once it cannot
        self.closed = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        """Puts each output line (text) in the queue, then None at its end or at the first bad line."""
        try:
            while True:
                line = self.proc.stdout.readline(MAX_LINE + 1)
                if not line:
                    break
                if len(line) > MAX_LINE and not line.endswith(b"\n"):
                    self.failure = f"wrote a line longer than {MAX_LINE:,} bytes"
                    break
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as e:
                    self.failure = f"wrote bytes that are not UTF-8 text ({e.reason}): {line[:60]!r}"
                    break
                if not self._put(text):
                    return
        except (OSError, ValueError) as e:  # the pipe was closed under us (close())
            self.failure = self.failure or f"its output cannot be read ({e})"
        self._put(None)

    def _put(self, item):
        while not self.closed.is_set():  # after close() nobody reads the queue: stop waiting for room
            try:
                self.lines.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _broken(self, command):
        return EngineError(f"{self.name}: {self.failure} (answering '{command}')")

    def send(self, command):
        """The reply's text; raises EngineError on a '?' reply, death or timeout."""
        ok, text = self.ask(command)
        if not ok:
            raise EngineError(f"{self.name}: '{command}' failed: {text}")
        return text

    def ask(self, command):
        """(succeeded, text) for one command."""
        if self.failure:  # it wrote nonsense before: whatever it says now cannot be trusted
            raise self._broken(command)
        try:
            self.proc.stdin.write((command + "\n").encode("utf-8"))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise EngineError(f"{self.name}: the engine has exited") from None
        deadline = time.monotonic() + self.timeout
        reply, size = [], 0
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise EngineError(f"{self.name}: no answer to '{command}' in {self.timeout:g} s") from None
            if line is None:
                if self.failure:
                    raise self._broken(command)
                raise EngineError(f"{self.name}: the engine exited during '{command}'")
            line = line.rstrip("\r\n")
            if not reply and not line.strip():
                continue  # stray blank lines before a reply
            if not reply and line[:1] not in "=?":
                continue  # lines some engines print before the reply
            if reply and not line.strip():
                break
            reply.append(line)
            size += len(line)
            if size > MAX_REPLY:
                self.failure = f"wrote an answer longer than {MAX_REPLY:,} characters"
                raise self._broken(command)
        first = reply[0]
        ok = first[0] == "="
        head = first[1:].lstrip("0123456789")
        text = "\n".join([head.strip()] + reply[1:]).strip()
        return ok, text

    def close(self):
        self.closed.set()
        try:
            if self.proc.poll() is None and self.failure:  # it writes nonsense: no 'quit' and 10 s of waiting
                self.proc.kill()
                self.proc.wait()
            if self.proc.poll() is None:
                try:
                    self.proc.stdin.write(b"quit\n")
                    self.proc.stdin.flush()
                except OSError:
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass


def parse_score(text):
    """Black's margin from a GTP final_score ('B+3.5', 'W+R', '0'): a float, +-inf for a resignation,
    None if unreadable."""
    t = text.strip().upper()
    if t in ("0", "DRAW", "JIGO"):
        return 0.0
    if len(t) >= 3 and t[0] in "BW" and t[1] == "+":
        sign = 1 if t[0] == "B" else -1
        value = t[2:]
        if value.startswith("R"):
            return sign * math.inf
        try:
            return sign * float(value)
        except ValueError:
            return None
    return None


@dataclass
class GameResult:
    black: str
    white: str
    winner: int  # BLACK, WHITE, EMPTY (draw) or None (no result)
    score: float  # Black's margin (inf for a resignation), None if unknown
    reason: str  # 'resign', 'score', 'illegal move', 'engine error', 'move limit'
    scored_by: str = ""
    moves: list = field(default_factory=list)
    engine_scores: tuple = (None, None)  # each engine's final_score of a scored game (Black's, White's)
    referee_score: float = None  # the referee's final_score of a scored game, when there is a referee


def wilson(wins, games, z=1.96):
    """95% Wilson score interval for a win rate (draws count half in ``wins``)."""
    if games == 0:
        return 0.0, 1.0
    p = wins / games
    d = 1 + z * z / games
    centre = (p + z * z / (2 * games)) / d
    half = z * math.sqrt(p * (1 - p) / games + z * z / (4 * games * games)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def play_game(black, white, size=9, komi=7.5, max_moves=None, referee=None, log=None):
    """Plays one game between two started GtpClients; returns a GameResult."""
    board = Board(size)
    max_moves = max_moves or 3 * size * size
    for engine in (black, white):
        engine.send(f"boardsize {size}")
        engine.send("clear_board")
        engine.send(f"komi {komi:g}")
    engines = {BLACK: black, WHITE: white}
    names = {BLACK: black.name, WHITE: white.name}

    def result(winner, score, reason, scored_by="", engine_scores=(None, None), judged=None):
        return GameResult(names[BLACK], names[WHITE], winner, score, reason, scored_by, list(board.moves),
                          tuple(engine_scores), judged)

    while True:
        colour = board.to_move
        mover, other = engines[colour], engines[3 - colour]
        letter = "B" if colour == BLACK else "W"
        try:
            reply = mover.send(f"genmove {letter}").strip()
        except EngineError as e:
            if log:
                log(str(e))
            return result(3 - colour, -math.inf if colour == BLACK else math.inf, "engine error")
        if reply.lower() == "resign":
            return result(3 - colour, -math.inf if colour == BLACK else math.inf, "resign")
        try:
            point = board.point(reply)
            board.play(point, colour)
        except (FreenetError, IllegalMove) as e:
            if log:
                log(f"{mover.name} played {reply!r}: {e}; it loses the game")
            return result(3 - colour, -math.inf if colour == BLACK else math.inf, "illegal move")
        try:
            other.send(f"play {letter} {reply}")
        except EngineError as e:
            if log:
                log(f"{e}; the game has no result")
            return result(None, None, "engine error")
        if board.game_over or board.move_number >= max_moves:
            break
    reason = "score" if board.game_over else "move limit"
    # the score: both engines agree, or the referee, or freenet's count (Tromp-Taylor)
    scores = []
    for engine in (black, white):
        try:
            ok, text = engine.ask("final_score")
            scores.append(parse_score(text) if ok else None)
        except EngineError:
            scores.append(None)
    sign = [None if s is None else (s > 0) - (s < 0) for s in scores]
    judged = referee_score(referee, board, komi) if referee is not None else None  # asked every game: its
    # count is what an engine's final_score is measured against
    if sign[0] is not None and sign[0] == sign[1]:
        score, by = scores[0], "both engines"
    elif referee is not None:
        score, by = judged, "the referee"
    else:
        score, by = board.score(komi), "Tromp-Taylor (freenet)"
    if score is None:
        score, by = board.score(komi), "Tromp-Taylor (freenet; the referee failed)"
    winner = BLACK if score > 0 else WHITE if score < 0 else EMPTY
    return result(winner, score, reason, by, scores, judged)


def referee_score(referee, board, komi):
    try:
        referee.send(f"boardsize {board.size}")
        referee.send("clear_board")
        referee.send(f"komi {komi:g}")
        for colour, point in board.moves:
            referee.send(f"play {'B' if colour == BLACK else 'W'} {board.name(point)}")
        return parse_score(referee.send("final_score"))
    except EngineError:
        return None


class Player:
    """An engine command; started per game when it has '{seed}', else once."""

    def __init__(self, command, name, timeout, stderr=None):
        self.command, self.name, self.timeout, self.stderr = command, name, timeout, stderr
        self.per_game = "{seed}" in command
        self.client = None

    def start(self, seed):
        if self.client is not None and (self.per_game or self.client.proc.poll() is not None):
            self.client.close()
            self.client = None
        if self.client is None:
            self.client = GtpClient(self.command.replace("{seed}", str(seed)), self.name, self.timeout, self.stderr)
        return self.client

    def close(self):
        if self.client is not None:
            self.client.close()
            self.client = None


@dataclass
class MatchSummary:
    names: tuple
    games: int = 0
    wins: list = field(default_factory=lambda: [0, 0])  # of engine A (--black first) and B
    draws: int = 0
    no_result: int = 0
    as_black: list = field(default_factory=lambda: [0, 0])  # wins of A with black, with white
    results: list = field(default_factory=list)

    def interval(self):
        decided = self.games - self.no_result
        return wilson(self.wins[0] + self.draws / 2, decided)

    def report(self):
        a, b = self.names
        decided = self.games - self.no_result
        rate = (self.wins[0] + self.draws / 2) / decided if decided else 0.0
        lo, hi = self.interval()
        lines = [f"{a} vs {b}: {decided} games decided of {self.games}",
                 f"  {a}: {self.wins[0]} wins ({self.as_black[0]} with Black, {self.as_black[1]} with White)",
                 f"  {b}: {self.wins[1]} wins", f"  draws {self.draws}, no result {self.no_result}",
                 f"  {a} win rate {rate:.3f}, 95% interval [{lo:.3f}, {hi:.3f}] (Wilson)"]
        judged = [r for r in self.results if r.referee_score is not None]
        if judged:
            for name in self.names:
                differ = sum(self.disagrees(r, name) for r in judged)
                lines.append(f"  {name}'s final_score and the referee's name different winners in {differ} of "
                             f"{len(judged)} scored games")
        return "\n".join(lines)

    @staticmethod
    def disagrees(result, name):
        """Whether engine ``name``'s final_score of a scored game names another winner than the referee's."""
        own, judged = result.engine_scores[0 if result.black == name else 1], result.referee_score
        return own is None or (own > 0) - (own < 0) != (judged > 0) - (judged < 0)


def run_match(command_a, command_b, games, size=9, komi=7.5, sgf_dir=None, referee_command=None, seed=0,
              max_moves=None, timeout=600.0, log=print, names=None, stderr=None):
    """Plays ``games`` games, A taking Black in the even ones; returns a MatchSummary."""
    names = names or (_short(command_a), _short(command_b))
    if names[0] == names[1]:
        names = (names[0] + " (A)", names[1] + " (B)")
    players = [Player(command_a, names[0], timeout, stderr), Player(command_b, names[1], timeout, stderr)]
    referee = GtpClient(referee_command, "referee", timeout, stderr) if referee_command else None
    summary = MatchSummary(tuple(names))
    if sgf_dir:
        os.makedirs(sgf_dir, exist_ok=True)
    try:
        for g in range(games):
            a_black = g % 2 == 0
            clients = [p.start(seed + g) for p in players]
            black, white = (clients[0], clients[1]) if a_black else (clients[1], clients[0])
            try:
                res = play_game(black, white, size, komi, max_moves, referee, log)
            except EngineError as e:  # failed during setup
                res = GameResult(black.name, white.name, None, None, f"engine error: {e}")
            if res.reason.startswith("engine error"):  # a late or missing answer: start both afresh
                for p in players:
                    p.close()
            summary.games += 1
            summary.results.append(res)
            if res.winner is None:
                summary.no_result += 1
            elif res.winner == EMPTY:
                summary.draws += 1
            else:
                a_won = (res.winner == BLACK) == a_black
                summary.wins[0 if a_won else 1] += 1
                if a_won:
                    summary.as_black[0 if a_black else 1] += 1
            text = "no result" if res.winner is None else result_string(
                res.winner, res.score, resigned=res.score is not None and math.isinf(res.score))
            if log:
                log(f"game {g + 1}/{games}: {res.black} (B) vs {res.white} (W): {text} "
                    f"[{res.reason}{', ' + res.scored_by if res.scored_by else ''}; {len(res.moves)} moves]; "
                    f"{names[0]} {summary.wins[0]}-{summary.wins[1]} {names[1]}")
            if sgf_dir:
                write_sgf(os.path.join(sgf_dir, f"game-{g + 1:04d}.sgf"), size, komi, res.moves, text,
                          res.black, res.white, comment=f"{res.reason}; scored by {res.scored_by or '-'}")
    finally:
        for p in players:
            p.close()
        if referee is not None:
            referee.close()
    return summary


def _short(command):
    try:
        argv = shlex.split(command)
    except ValueError:
        return command
    prog = os.path.basename(argv[0]) if argv else command
    if prog.startswith("python") and "freenet" in argv:
        prog = "freenet"
    if prog == "freenet":
        model = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--model"), None)
        return f"freenet({os.path.basename(model)})" if model else "freenet(plain)"
    level = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--level"), None)
    return f"{prog}" + (f"-L{level}" if level else "")
