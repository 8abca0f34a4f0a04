"""The code a user reads in README.md and docs/ runs as shown."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", (ROOT / path).read_text(), re.S)


def test_readme_example_runs():
    for block in python_blocks("README.md"):
        exec(compile(block, "README.md", "exec"), {})


def test_mnist_walkthrough_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    script = python_blocks("docs/mnist.md")[0].replace("range(5)", "range(1)")  # one epoch is enough here
    exec(compile(script, "docs/mnist.md", "exec"), {})
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", capsys.readouterr().out).group(1))
    assert accuracy > 0.8
    assert (tmp_path / "mnist-cnn.safetensors").is_file()


def test_scale_guide_loop_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(python_blocks("docs/scale.md")[0], "docs/scale.md", "exec"), {})
    assert float(re.search(r"last loss ([0-9.]+)", capsys.readouterr().out).group(1)) < 1.0
    assert (tmp_path / "mlp.safetensors").is_file()


def test_engine_guide_examples_run():
    for block in python_blocks("docs/engine.md"):
        exec(compile(block, "docs/engine.md", "exec"), {})


def test_docstring_examples_run():
    """Every ``>>>`` example in freenet's modules (freenet.kernels included) gives the output shown."""
    import doctest
    import importlib
    import pkgutil

    import freenet

    failed, tried = 0, 0
    for info in pkgutil.walk_packages(freenet.__path__, "freenet."):
        if info.name == "freenet.__main__":  # runs the command line on import
            continue
        module = importlib.import_module(info.name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        failed, tried = failed + result.failed, tried + result.attempted
    assert tried > 10 and failed == 0


def test_go_match_table_is_what_the_shipped_games_say():
    """docs/go-measurements.md's match rows are computed here from the shipped SGF games and JSON results, and the
    shipped net loads and matches its provenance record."""
    import json

    from freenet.go.match import wilson
    from freenet.go.net import load_net
    from freenet.go.sgf import read_sgf
    from freenet.provenance import check_weights, read_archive, read_record

    folder = ROOT / "docs" / "go-match"
    doc = (ROOT / "docs" / "go-measurements.md").read_text()
    for level in sorted(p.name for p in folder.iterdir() if p.is_dir()):
        games = wins = 0
        for summary in sorted((folder / level).glob("*.json")):
            results = json.loads(summary.read_text())["games_list"]
            sgfs = sorted((folder / level / summary.stem).glob("*.sgf"))
            assert len(sgfs) == len(results)
            for path, result in zip(sgfs, results):
                size, komi, moves, winner = read_sgf(path.read_bytes(), str(path))
                assert (size, komi) == (9, 7.5)
                assert {1: "B", 2: "W"}.get(winner) == result["winner"]
                freenet = "B" if result["black"].startswith("freenet") else "W"
                wins += result["winner"] == freenet
                games += 1
        lo, hi = wilson(wins, games)
        row = f"| {games} | {wins}" if level != "level1" else f"| **{games}** | **{wins}**"
        assert row in doc and f"{wins / games:.3f} [{lo:.3f}, {hi:.3f}]" in doc, (level, games, wins)
    net = folder / "net-9x9-6x64-gnugo5.safetensors"
    assert load_net(str(net)).config.size == 9
    record = read_record(str(net))
    assert check_weights(str(net), record)[2] and read_archive(str(net), record) is not None
