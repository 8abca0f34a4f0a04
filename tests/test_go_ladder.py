"""The strength ladder: matches recorded in ladder.json and resumed, Wilson intervals, Elo by maximum
likelihood (with bounds), the Markdown table, the plot's optional dependency, the CLI's errors."""

import json
import math
import os
import shutil
import sys

import pytest

from freenet.cli import main
from freenet.errors import FreenetError
from freenet.go import ladder
from freenet.go.match import wilson
from freenet.go.net import new_net, save_net

GNUGO = shutil.which("gnugo") or shutil.which("/usr/games/gnugo")
FAST = {"games": 2, "playouts": 8}


def make_run(path, generations=3, seconds_per_generation=360.0):
    """A run folder of tiny 5x5 nets as freenet go train leaves it (config.json, state.json, net-XXXX)."""
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps({"kind": "selfplay", "size": 5, "blocks": 1, "filters": 8}))
    for g in range(1, generations + 1):
        save_net(new_net(5, 1, 8, seed=g), str(path / ladder.net_file(g)))
    (path / "state.json").write_text(json.dumps({"generation": generations,
                                                  "seconds": generations * seconds_per_generation}))
    return str(path)


def entry(generation, opponent, games, wins, draws=0):
    return {"generation": generation, "net": ladder.net_file(generation), "cpu_hours": 0.5 * generation,
            "opponent": opponent, "games": games, "wins": wins, "draws": draws,
            "wilson95": list(wilson(wins + draws / 2, games))}


def test_evaluate_records_and_resumes(tmp_path):
    run = make_run(tmp_path / "run")
    logged = []
    assert ladder.evaluate(run, 1, ["previous"], log=logged.append, **FAST) == []
    assert any("no earlier ladder net" in line for line in logged)
    first = ladder.evaluate(run, 2, ["net-0001"], cpu_hours=0.25, log=None, **FAST)
    added = ladder.evaluate(run, 3, ["previous"], log=None, seed=7, **FAST)
    assert [e["opponent"] for e in first + added] == ["net-0001", "net-0002"]
    e = added[0]
    assert e["generation"] == 3 and e["net"] == "net-0003.safetensors" and e["games"] + e["no_result"] == 2
    assert e["cpu_hours"] == pytest.approx(3 * 360 / 3600)  # state.json's seconds x 1
    assert first[0]["cpu_hours"] == 0.25
    assert e["wilson95"] == pytest.approx(wilson(e["wins"] + e["draws"] / 2, e["games"]))
    assert e["winrate"] == pytest.approx((e["wins"] + e["draws"] / 2) / e["games"])
    assert e["seconds"] > 0
    data = json.loads((tmp_path / "run" / "ladder.json").read_text())
    assert data["entries"] == first + added and data["format"] == ladder.FORMAT
    assert {r["player"] for r in data["elo"]} == {"net-0001", "net-0002", "net-0003"}
    # a second call plays nothing and leaves the file alone
    before = (tmp_path / "run" / "ladder.json").read_bytes()
    assert ladder.evaluate(run, 3, ["previous", "net-0002"], log=None, **FAST) == []
    assert (tmp_path / "run" / "ladder.json").read_bytes() == before


def test_evaluate_errors(tmp_path):
    run = make_run(tmp_path / "run", generations=1)
    with pytest.raises(FreenetError, match="no run folder"):
        ladder.evaluate(str(tmp_path / "missing"), 1, ["gnugo-1"], log=None)
    with pytest.raises(FreenetError, match="net-0005.safetensors does not exist"):
        ladder.evaluate(run, 5, ["gnugo-1"], log=None)
    with pytest.raises(FreenetError, match="net-0004.safetensors does not exist"):
        ladder.evaluate(run, 1, ["net-0004"], log=None)
    with pytest.raises(FreenetError, match="unknown ladder opponent"):
        ladder.evaluate(run, 1, ["leelaz"], log=None)


def test_gnugo_missing_is_skipped(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run", generations=1)
    monkeypatch.setattr(ladder, "find_gnugo", lambda: None)
    logged = []
    assert ladder.evaluate(run, 1, ["gnugo-1"], log=logged.append, **FAST) == []
    assert any("GNU Go is not installed" in line for line in logged)


@pytest.mark.skipif(GNUGO is None, reason="gnugo not installed (Debian package gnugo)")
def test_evaluate_against_gnugo(tmp_path):
    run = make_run(tmp_path / "run", generations=1)
    (added,) = ladder.evaluate(run, 1, ["gnugo-1"], log=None, **FAST)
    assert added["opponent"] == "gnugo-1" and added["games"] == 2 and added["no_result"] == 0
    assert "| 1 | 0.10 |" in ladder.table(run)


def test_elo_on_synthetic_results():
    ratings = ladder.elo([entry(1, "gnugo-1", 20, 15)])  # 75%: 400 log10(3)
    assert ratings["gnugo-1"] == {"elo": 0.0, "bound": None}
    assert ratings["net-0001"]["elo"] == pytest.approx(400 * math.log10(3)) and ratings["net-0001"]["bound"] is None
    assert abs(ratings["net-0001"]["elo"] - 191) < 0.5
    draws = ladder.elo([entry(1, "gnugo-1", 20, 10, draws=10)])  # draws count half: 75% again
    assert draws["net-0001"]["elo"] == pytest.approx(400 * math.log10(3))
    chain = ladder.elo([entry(1, "gnugo-1", 40, 20), entry(2, "net-0001", 40, 30), entry(2, "gnugo-1", 40, 30)])
    assert chain["net-0001"]["elo"] == pytest.approx(0, abs=1e-6)
    assert chain["net-0002"]["elo"] == pytest.approx(400 * math.log10(3))
    # the joint fit: net-0002 against both, inconsistent scores, between the two single-opponent answers
    mixed = ladder.elo([entry(1, "gnugo-1", 20, 10), entry(2, "gnugo-1", 20, 15), entry(2, "net-0001", 20, 17)])
    assert 400 * math.log10(3) < mixed["net-0002"]["elo"] < 400 * math.log10(17 / 3)
    assert ladder.elo([entry(1, "gnugo-1", 20, 15)]) == ratings  # deterministic


def test_elo_bounds_when_a_net_wins_or_loses_everything():
    lo = wilson(20, 20)[0]
    top = ladder.elo([entry(1, "gnugo-1", 20, 20)])["net-0001"]
    assert top["bound"] == "lower" and top["elo"] == pytest.approx(400 * math.log10(lo / (1 - lo)))
    bottom = ladder.elo([entry(1, "gnugo-1", 20, 0)])["net-0001"]
    assert bottom["bound"] == "upper" and bottom["elo"] == pytest.approx(-top["elo"])
    # weak nets that lose every game to GNU Go but split their own games: a group placed as a bound
    group = ladder.elo([entry(1, "gnugo-1", 10, 0), entry(2, "gnugo-1", 10, 0), entry(2, "net-0001", 10, 5)])
    assert group["net-0001"]["bound"] == group["net-0002"]["bound"] == "upper"
    assert group["net-0001"]["elo"] == pytest.approx(group["net-0002"]["elo"]) and group["net-0001"]["elo"] < 0
    # no games linking a net to the anchor: no rating
    apart = ladder.elo([entry(1, "gnugo-1", 10, 5), entry(3, "net-0002", 10, 5)])
    assert apart["net-0003"]["elo"] is None and apart["net-0001"]["elo"] == pytest.approx(0, abs=1e-9)
    # without GNU Go the earliest net is the anchor
    nets = ladder.elo([entry(2, "net-0001", 20, 15)])
    assert nets["net-0001"]["elo"] == 0 and nets["net-0002"]["elo"] == pytest.approx(400 * math.log10(3))


def test_table(tmp_path):
    run = make_run(tmp_path / "run", generations=2)
    ladder.write_ladder(run, [entry(1, "gnugo-1", 20, 15), entry(1, "gnugo-10", 20, 0), entry(2, "gnugo-1", 20, 20),
                        entry(2, "net-0001", 20, 12)])
    text = ladder.table(run)
    lines = text.splitlines()
    assert lines[0] == "| generation | CPU-hours | gnugo-1 | gnugo-10 | earlier net | Elo (gnugo-1 = 0) |"
    assert lines[2].startswith("| 1 | 0.50 | 15/20 [0.53, 0.89] | 0/20 [0.00, 0.16] | - | ")
    # net-0002 won every game against GNU Go, but its games with net-0001 tie it to the anchor: an exact rating
    assert lines[3].startswith("| 2 | 1.00 | 20/20 [0.84, 1.00] | - | 12/20 [0.39, 0.78] vs net-0001 | ")
    assert lines[3].split("|")[-2].strip().isdigit()
    alone = ladder.elo([entry(1, "gnugo-1", 20, 15)])["net-0001"]["elo"]
    assert ladder.elo(ladder.read_ladder(run))["net-0001"]["elo"] != pytest.approx(alone)  # a joint fit


def test_corrupt_ladder_is_an_error_naming_the_file(tmp_path, capsys):
    run = make_run(tmp_path / "run", generations=1)
    path = os.path.join(run, "ladder.json")
    for text in ("{not json", json.dumps([1, 2]), json.dumps({"entries": [{"generation": "x"}]})):
        with open(path, "w") as f:
            f.write(text)
        with pytest.raises(FreenetError, match="ladder.json is corrupt"):
            ladder.read_ladder(run)
    assert main(["go", "ladder", "--dir", run, "--opponents", "", "--table"]) == 2
    assert path in capsys.readouterr().err


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["go", "ladder", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--opponents" in out and "ladder.json" in out and "Wilson" in out
    assert main(["go", "ladder", "--dir", str(tmp_path / "missing")]) == 2
    assert "freenet: error: no run folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["go", "ladder", "--dir", str(empty)]) == 2
    assert "no net-XXXX.safetensors" in capsys.readouterr().err
    run = make_run(tmp_path / "run", generations=2)
    assert main(["go", "ladder", "--dir", run, "--generation", "7"]) == 2
    assert "net-0007.safetensors does not exist" in capsys.readouterr().err
    ladder.write_ladder(run, [entry(1, "gnugo-1", 20, 15)])
    assert main(["go", "ladder", "--dir", run, "--opponents", "", "--table"]) == 0
    assert "| 1 | 0.50 | 15/20" in capsys.readouterr().out


def test_plot_needs_matplotlib(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run", generations=1)
    ladder.write_ladder(run, [entry(1, "gnugo-1", 20, 15)])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(FreenetError, match=r"plotting needs matplotlib: pip install matplotlib"):
        ladder.plot(run)
    before = (tmp_path / "run" / "ladder.json").read_bytes()
    assert main(["go", "ladder", "--dir", run, "--opponents", "gnugo-2", "--plot", str(tmp_path / "x.png")]) == 2
    assert (tmp_path / "run" / "ladder.json").read_bytes() == before  # refused before playing


def test_plot_png(tmp_path):
    pytest.importorskip("matplotlib")
    run = make_run(tmp_path / "run", generations=2)
    ladder.write_ladder(run, [entry(1, "gnugo-1", 20, 15), entry(2, "gnugo-1", 20, 20), entry(2, "net-0001", 20, 12)])
    path = ladder.plot(run, str(tmp_path / "ladder.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
