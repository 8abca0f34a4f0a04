"""The match runner: GTP engines against each other, scoring, intervals, SGF, broken engines; GNU Go."""

import math
import os
import shutil
import sys

import pytest

from freenet.errors import FreenetError
from freenet.go.match import parse_score, run_match, wilson
from freenet.go.sgf import read_sgf

GNUGO = shutil.which("gnugo") or shutil.which("/usr/games/gnugo")
FREENET = f"{sys.executable} -m freenet go gtp --size 5 --playouts 24 --seed {{seed}}"


def test_scores_and_intervals():
    assert parse_score("B+3.5") == 3.5 and parse_score("W+0.5") == -0.5 and parse_score("0") == 0
    assert parse_score("W+Resign") == -math.inf and parse_score("B+R") == math.inf
    assert parse_score("??") is None and parse_score("B+x") is None
    lo, hi = wilson(50, 100)
    assert abs(lo - 0.404) < 0.002 and abs(hi - 0.596) < 0.002
    assert wilson(0, 10)[0] == 0 and wilson(10, 10)[1] == 1 and wilson(0, 0) == (0.0, 1.0)


def test_freenet_against_itself_with_sgf(tmp_path):
    logged = []
    summary = run_match(FREENET, FREENET, 2, size=5, komi=0.5, sgf_dir=str(tmp_path), log=logged.append)
    assert summary.games == 2 and sum(summary.wins) + summary.draws + summary.no_result == 2
    assert summary.no_result == 0 and len(logged) == 2
    files = sorted(os.listdir(tmp_path))
    assert files == ["game-0001.sgf", "game-0002.sgf"]
    size, komi, moves, winner = read_sgf((tmp_path / files[0]).read_bytes())
    assert size == 5 and komi == 0.5 and len(moves) == len(summary.results[0].moves)
    assert "interval" in summary.report()


def test_broken_engines_are_reported_not_fatal(tmp_path):
    with pytest.raises(FreenetError, match="cannot start"):
        run_match("/nonexistent/engine", FREENET, 1, size=5, log=None)
    # an engine that answers the setup and then dies
    script = tmp_path / "dies.py"
    script.write_text("import sys\nfor i, line in enumerate(sys.stdin):\n"
                      "    if line.startswith('genmove'):\n        sys.exit(1)\n"
                      "    print('=\\n', flush=True)\n")
    summary = run_match(f"{sys.executable} {script}", FREENET, 2, size=5, log=None, timeout=60)
    assert summary.wins == [0, 2] or summary.wins[1] >= 1
    reasons = {r.reason for r in summary.results}
    assert "engine error" in reasons


def test_final_score_disagreements_with_the_referee():
    from freenet.go.match import GameResult, MatchSummary

    agree = GameResult("a", "b", 1, 2.5, "score", "both engines", [], (2.5, 0.5), 1.5)
    differ = GameResult("b", "a", 2, -3.5, "score", "the referee", [], (-3.5, 4.5), -3.5)  # a (White) said B+4.5
    summary = MatchSummary(("a", "b"), results=[agree, differ])
    assert [MatchSummary.disagrees(r, "a") for r in (agree, differ)] == [False, True]
    assert [MatchSummary.disagrees(r, "b") for r in (agree, differ)] == [False, False]
    assert "a's final_score and the referee's name different winners in 1 of 2" in summary.report()


@pytest.mark.skipif(GNUGO is None, reason="gnugo not installed (Debian package gnugo)")
def test_short_match_against_gnugo(tmp_path):
    summary = run_match(f"{sys.executable} -m freenet go gtp --size 7 --playouts 64 --seed {{seed}}",
                        f"{GNUGO} --mode gtp --level 1", 2, size=7, komi=7.5, sgf_dir=str(tmp_path),
                        referee_command=f"{GNUGO} --mode gtp", log=None)
    assert summary.games == 2 and summary.no_result == 0
    assert all(r.reason in ("resign", "score", "move limit") for r in summary.results)
    assert len(os.listdir(tmp_path)) == 2
    for r in summary.results:  # a scored game has both engines' counts and the referee's
        assert (r.reason == "resign") == (r.referee_score is None)
        if r.referee_score is not None:
            assert None not in r.engine_scores
    scored = [r for r in summary.results if r.referee_score is not None]
    assert ("referee's name different winners" in summary.report()) == bool(scored)
