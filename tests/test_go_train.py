"""Self-play, game files, SGF records, the training loops: determinism and resuming."""

import os
import shutil

import numpy as np
import pytest

import freenet as fn
from freenet.checkpoint import Checkpointer
from freenet.cli import main
from freenet.errors import FreenetError
from freenet.go import symmetry
from freenet.go.board import BLACK, WHITE, Board
from freenet.go.features import planes
from freenet.go.net import Evaluator, load_net, new_net
from freenet.go.selfplay import SelfPlayConfig, load_games, play_games, save_games
from freenet.go.sgf import game_to_sgf, read_sgf
from freenet.go.train import ReplayBuffer, TrainConfig, game_positions, selfplay_loop, supervised_loop
from freenet.kernels import settings

TINY = dict(size=5, blocks=1, filters=4)
SP = dict(playouts=8, parallel=3, batch=4)


@pytest.fixture(autouse=True)
def one_thread():
    """The nets here are tiny: one thread (a busy shared machine makes a thread pool slower)."""
    before = fn.get_num_threads()
    fn.set_num_threads(1)
    yield
    fn.set_num_threads(before)


def tiny_games(seed, games=3):
    ev = Evaluator(new_net(**TINY, seed=seed), symmetry_mode="random", rng=np.random.default_rng(seed))
    return play_games(ev, games, SelfPlayConfig(size=5, **SP), seed=seed)


def test_selfplay_is_deterministic_and_files_round_trip(tmp_path):
    a, b = tiny_games(1), tiny_games(1)
    assert [r.moves for r in a] == [r.moves for r in b]
    assert all(np.array_equal(x, y) for r, s in zip(a, b) for x, y in zip(r.policies, s.policies))
    for r in a:
        assert len(r.moves) == len(r.policies) > 0 and r.winner in (0, 1, 2)
        board = Board(5)
        for (colour, point), policy in zip(r.moves, r.policies):
            assert colour == board.to_move and abs(float(np.sum(policy, dtype=np.float64)) - 1) < 1e-2
            assert policy[point] > 0 or r.moves.index((colour, point)) >= 5  # played moves were searched
            board.play(point)
    path = tmp_path / "games.npz"
    save_games(str(path), a)
    again = load_games(str(path))
    assert [r.moves for r in again] == [r.moves for r in a] and [r.winner for r in again] == [r.winner for r in a]
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(FreenetError):
        load_games(str(tmp_path / "bad.npz"))


def test_katago_settings_in_selfplay_and_their_targets(tmp_path):
    """Playout cap randomization keeps only full searches as training positions; played-out games carry
    their final area, resigned ones none; ownership and score targets are for the side to move."""
    config = SelfPlayConfig(size=5, playouts=16, cheap_playouts=4, full_fraction=0.3, forced_playouts=True,
                            parallel=3, batch=6, resign=0.3, no_resign_fraction=0.5)
    ev = Evaluator(new_net(**TINY, seed=2, ownership=True, score=True), symmetry_mode="random",
                   rng=np.random.default_rng(2))
    records = play_games(ev, 6, config, seed=2)
    full = [p is not None for r in records for p in r.policies]
    assert 0 < sum(full) < len(full)  # some full searches, some cheap ones
    path = tmp_path / "games.npz"
    save_games(str(path), records)
    again = load_games(str(path))
    for r, s in zip(records, again):
        assert [p is None for p in r.policies] == [p is None for p in s.policies]
        assert (r.ownership is None) == (s.ownership is None) == r.resigned
        np.testing.assert_allclose(r.values, s.values, atol=1e-3)
    played = next(r for r in records if not r.resigned)
    board = Board(5)
    for colour, point in played.moves:
        board.play(point, colour)
    assert played.ownership.sum() == board.area()[0] - board.area()[1]
    arrays = game_positions(played)
    full = [t for t, p in enumerate(played.policies) if p is not None]
    assert len(arrays["value"]) == len(full) and (arrays["aux"] == 1).all()
    sign = np.array([1 if played.moves[t][0] == BLACK else -1 for t in full])
    np.testing.assert_array_equal(arrays["ownership"], played.ownership[None, :] * sign[:, None])
    np.testing.assert_allclose(arrays["score"], played.score / 25 * sign)
    mixed = game_positions(played, value_q_weight=0.5)["value"]
    np.testing.assert_allclose(mixed, 0.5 * arrays["value"] + 0.5 * np.array(played.values, np.float32)[full],
                               atol=1e-6)
    if any(r.resigned for r in records):
        assert (game_positions(next(r for r in records if r.resigned))["aux"] == 0).all()


def test_buffer_targets_and_symmetries():
    records = tiny_games(2, games=2)
    arrays = game_positions(records[0])
    policy, value = arrays["policy"], arrays["value"]
    assert len(value) == len(records[0].moves) and set(np.unique(value)) <= {-1.0, 0.0, 1.0}
    winner = records[0].winner
    assert value[0] == (1.0 if winner == BLACK else -1.0 if winner == WHITE else 0.0)  # Black moved first
    assert np.allclose(policy.sum(1), 1, atol=1e-6)
    buf = ReplayBuffer(5)
    buf.add(records)
    batch = buf.sample(64, np.random.default_rng(0))
    x, p, z = batch["planes"], batch["policy"], batch["value"]
    assert x.shape == (64, 18, 5, 5) and p.shape == (64, 26) and z.shape == (64,)
    # every sample is some position under some symmetry
    board = Board(5)
    first = planes(board)
    variants = [symmetry.transform_planes(first, s) for s in range(8)]
    assert any(np.array_equal(x[i], v) for i in range(64) for v in variants) or len(buf) > 64


KATAGO = dict(ownership=True, score=True, pooling=True, value_q_weight=0.25)
KATAGO_SP = dict(SP, cheap_playouts=4, forced_playouts=True, full_fraction=0.5)


def test_selfplay_shards_and_sgf_copies(tmp_path):
    """Games in shards are the games of shards played one by one; with ``sgf`` each game is also an SGF file."""
    from freenet.go.selfplay import load_games
    from freenet.go.sgf import read_sgf

    config = TrainConfig(**TINY, seed=4, games_per_generation=5, window=5, steps_per_generation=2, batch_size=16,
                         selfplay=dict(SP), shards=2, sgf=True)
    selfplay_loop(str(tmp_path), config, 1, progress=False, log=lambda *a: None)
    games = load_games(tmp_path / "games" / "gen-0001.npz")
    assert len(games) == 5
    sgfs = sorted((tmp_path / "sgf" / "gen-0001").glob("*.sgf"))
    assert len(sgfs) == 5
    assert [m for m in read_sgf(sgfs[4].read_bytes(), str(sgfs[4]))[2]] == list(games[4].moves)
    with pytest.raises(fn.FreenetError, match="--shards must be between 1 and the games"):
        selfplay_loop(str(tmp_path / "other"), TrainConfig(**TINY, games_per_generation=2, shards=3), 1,
                      progress=False, log=lambda *a: None)


@pytest.mark.parametrize("katago", [False, True], ids=["alphago-zero", "katago-ideas"])
def test_selfplay_loop_resumes_to_the_same_net(tmp_path, katago):
    config = TrainConfig(**TINY, seed=4, games_per_generation=3, window=5, steps_per_generation=3, batch_size=16,
                         selfplay=dict(KATAGO_SP if katago else SP), **(KATAGO if katago else {}))
    straight = tmp_path / "straight"
    selfplay_loop(str(straight), config, 3, progress=False, log=lambda *a: None)
    resumed = tmp_path / "resumed"
    selfplay_loop(str(resumed), config, 2, progress=False, log=lambda *a: None)
    # an interruption after generation 3's self-play: its games are on disk, its training is not
    shutil.copy(straight / "games" / "gen-0003.npz", resumed / "games" / "gen-0003.npz")
    selfplay_loop(str(resumed), config, 3, progress=False, log=lambda *a: None)
    a, b = fn.load(str(straight / "net.safetensors")), fn.load(str(resumed / "net.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)

    ends = [Checkpointer(run / "checkpoints").latest() for run in (straight, resumed)]
    assert ends[0].state["run"]["generation"] == ends[1].state["run"]["generation"] == 3
    assert np.array_equal(ends[0].state["optimizer"]["state"]["0"]["momentum_buffer"],
                          ends[1].state["optimizer"]["state"]["0"]["momentum_buffer"])
    assert all(np.array_equal(ends[0].arrays[k], ends[1].arrays[k]) for k in ends[0].arrays)
    # the net moved away from its initial weights
    init = new_net(**TINY, seed=4).state_dict()
    assert not np.array_equal(np.asarray(init["policy_fc.weight"]), a["policy_fc.weight"].numpy())
    if katago:
        state = Checkpointer(resumed / "checkpoints").latest().state["run"]
        assert state["ownership_loss"] > 0 and state["score_loss"] > 0 and state["cpu_seconds"] > 0
        assert load_net(str(resumed / "net.safetensors")).config.pooling
        return
    other = TrainConfig(**TINY, seed=5, games_per_generation=3, window=5, steps_per_generation=3, batch_size=16,
                        selfplay=dict(SP))
    with pytest.raises(FreenetError, match="other settings"):
        selfplay_loop(str(resumed), other, 4, progress=False, log=lambda *a: None)
    old = settings.set_matmul_path("blas")
    try:
        with pytest.raises(FreenetError, match="trained with the freenet matmul path, not blas"):
            selfplay_loop(str(resumed), config, 4, progress=False, log=lambda *a: None)
    finally:
        settings.set_matmul_path(old)


def test_sgf_round_trip_and_bad_records():
    records = tiny_games(3, games=1)
    r = records[0]
    data = game_to_sgf(5, 7.5, r.moves, "B+R", "x", "y")
    size, komi, moves, winner = read_sgf(data)
    assert (size, komi, moves, winner) == (5, 7.5, r.moves, BLACK)
    assert read_sgf(data.decode("utf-8")) == (size, komi, moves, winner)  # text as well as bytes
    for bad in [b"", b"(;", b"not sgf", b"(;SZ[5];B[zz])", b"(;SZ[30];B[aa])", b"(;SZ[5]AB[aa];W[bb])",
                b"(;SZ[5];B[aa];W[aa])", bytes(range(256))]:
        with pytest.raises(FreenetError):
            read_sgf(bad, "bad.sgf")


def test_supervised_training_from_sgf_folder(tmp_path):
    folder = tmp_path / "sgf"
    folder.mkdir()
    for i, r in enumerate(tiny_games(5, games=3)):
        (folder / f"g{i}.sgf").write_bytes(game_to_sgf(5, 7.5, r.moves, "W+3.5" if i else "B+R"))
    (folder / "broken.sgf").write_bytes(b"(;SZ[5];B[aa")
    logged = []
    config = TrainConfig(**TINY, seed=1, steps_per_generation=4, batch_size=16, games_per_generation=0, window=0)
    state = supervised_loop(str(tmp_path / "run"), config, str(folder), 2, progress=False, log=logged.append)
    assert state["chunk"] == 2 and any("skipped" in line for line in logged)
    supervised_loop(str(tmp_path / "run2"), config, str(folder), 1, progress=False, log=lambda *a: None)
    supervised_loop(str(tmp_path / "run2"), config, str(folder), 2, progress=False, log=lambda *a: None)  # resumed
    a, b = fn.load(str(tmp_path / "run" / "net.safetensors")), fn.load(str(tmp_path / "run2" / "net.safetensors"))
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    with pytest.raises(FreenetError, match="no .sgf"):
        supervised_loop(str(tmp_path / "run3"), config, str(tmp_path / "run"), 1, progress=False)


def test_commands(tmp_path, capsys):
    net = tmp_path / "net.safetensors"
    assert main(["go", "init", "--size", "5", "--blocks", "1", "--filters", "4", "--out", str(net)]) == 0
    assert load_net(str(net)).config.size == 5
    out = tmp_path / "games.npz"
    assert main(["go", "selfplay", "--model", str(net), "--games", "2", "--out", str(out), "--playouts", "4",
                 "--parallel", "2", "--quiet", "--sgf-dir", str(tmp_path / "sgf")]) == 0
    assert len(load_games(str(out))) == 2 and len(os.listdir(tmp_path / "sgf")) == 2
    assert main(["go", "selfplay", "--size", "5", "--games", "1", "--out", str(tmp_path / "plain.npz"),
                 "--playouts", "8", "--quiet"]) == 0
    run = tmp_path / "run"
    args = ["go", "train", "--dir", str(run), "--generations", "1", "--size", "5", "--blocks", "1", "--filters", "4",
            "--games", "2", "--steps", "2", "--batch-size", "8", "--playouts", "4", "--parallel", "2", "--quiet"]
    assert main(args) == 0 and os.path.exists(run / "net-0001.safetensors")
    # a CPU budget already spent: no new generation
    assert main(args[:5] + ["3"] + args[6:] + ["--cpu-hours", "0"]) == 0
    assert not os.path.exists(run / "net-0002.safetensors")
    from freenet.provenance import read_record
    record = read_record(str(run / "net.safetensors"))  # the generation reached, not the one asked for
    assert record["recipe"]["params"]["generations"] == 1 and record["metrics"]["cpu_seconds"] > 0
    # KataGo's options and the ladder: generation 2 plays generation 1 (the previous ladder net)
    kata = tmp_path / "kata"
    args = ["go", "train", "--dir", str(kata), "--generations", "2", "--size", "5", "--blocks", "1", "--filters", "4",
            "--games", "2", "--steps", "2", "--batch-size", "8", "--playouts", "6", "--cheap-playouts", "2",
            "--forced-playouts", "--ownership", "--score", "--pooling", "--value-q-weight", "0.3", "--parallel", "2",
            "--ladder-every", "1", "--ladder-opponents", "previous", "--ladder-games", "2", "--ladder-playouts", "4",
            "--quiet"]
    assert main(args) == 0
    assert main(args + ["--value-q-weight", "2"]) == 2 and main(args + ["--full-fraction", "0"]) == 2
    from freenet.go import ladder
    entries = ladder.read_ladder(str(kata))
    assert [(e["generation"], e["opponent"], e["games"] + e["no_result"]) for e in entries] == [(2, "net-0001", 2)]
    assert load_net(str(kata / "net-0002.safetensors")).config.ownership
    assert main(["go", "train", "--dir", str(tmp_path / "sup"), "--sgf", str(tmp_path / "sgf"), "--generations",
                 "1", "--size", "5", "--blocks", "1", "--filters", "4", "--steps", "2", "--batch-size", "8",
                 "--quiet"]) == 0
    lz = tmp_path / "net.txt"
    assert main(["go", "export-lz", str(net), str(lz)]) == 0
    assert main(["go", "import-lz", str(lz), str(tmp_path / "back.safetensors")]) == 0
    assert main(["go", "import-lz", str(tmp_path / "missing.txt"), str(tmp_path / "x.safetensors")]) == 1
    assert "no such weight file" in capsys.readouterr().err
    capsys.readouterr()
    for command in ["init", "selfplay", "train", "gtp", "match", "ladder", "export-lz", "import-lz", "bench"]:
        with pytest.raises(SystemExit) as info:
            main(["go", command, "--help"])
        assert info.value.code == 0
        help_text = capsys.readouterr().out
        assert f"go {command}" in help_text and "%%" not in help_text, help_text


def test_a_killed_run_resumes_from_its_last_good_checkpoint(tmp_path):
    """SIGKILL during the second generation, a corrupted newest checkpoint: the run still ends with the
    weights of an uninterrupted one."""
    import signal
    import subprocess
    import sys
    import time

    config = TrainConfig(**TINY, seed=4, games_per_generation=3, window=5, steps_per_generation=150, batch_size=16,
                         selfplay=dict(SP))
    straight = tmp_path / "straight"
    selfplay_loop(str(straight), config, 3, progress=False, log=lambda *a: None)
    run = tmp_path / "run"
    script = (f"import sys; from freenet.go.train import TrainConfig, selfplay_loop; "
              f"selfplay_loop(sys.argv[1], TrainConfig(**{config.as_dict()!r}), 3, progress=False)")
    process = subprocess.Popen([sys.executable, "-c", script, str(run)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not Checkpointer(run / "checkpoints").paths():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    selfplay_loop(str(run), config, 2, progress=False, log=lambda *a: None)
    newest = Checkpointer(run / "checkpoints").paths()[-1]
    with open(newest, "r+b") as f:
        f.truncate(100)
    notes = []
    selfplay_loop(str(run), config, 3, progress=False, log=notes.append)
    assert any("skipping a bad checkpoint" in n for n in notes)
    a, b = fn.load(str(straight / "net.safetensors")), fn.load(str(run / "net.safetensors"))
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_auxiliary_losses_gradcheck_float64():
    """The ownership and score losses (masked to played-out games) have the gradients autograd says."""
    from freenet.go.train import losses

    net = new_net(5, 1, 3, seed=3, ownership=True, score=True, pooling=True).double()
    r = np.random.default_rng(0)
    batch = {"planes": (r.random((3, 18, 5, 5)) < 0.3).astype(np.float64),
             "policy": r.dirichlet(np.ones(26), 3), "value": np.array([1.0, -1.0, 0.5]),
             "ownership": r.choice([-1.0, 0.0, 1.0], (3, 25)), "score": np.array([0.2, -0.1, 0.0]),
             "aux": np.array([1.0, 0.0, 1.0])}
    params = (net.ownership_conv.weight, net.score_fc.weight, net.value_fc1.bias)
    assert fn.gradcheck(lambda *_: losses(net, batch)[0], *params)
    # a game that was resigned (aux 0) adds nothing to the ownership and score losses
    _, parts = losses(net, batch)
    other = dict(batch, ownership=batch["ownership"].copy(), score=batch["score"].copy())
    other["ownership"][1] *= -1
    other["score"][1] = 0.9
    _, again = losses(net, other)
    assert again == parts


def test_a_damaged_run_folder_is_named(tmp_path, capsys):
    """A truncated games file, a corrupt config.json, a net of another size: ``freenet: error: FILE ...``."""
    run = tmp_path / "run"
    args = ["go", "train", "--dir", str(run), "--generations", "1", "--size", "5", "--blocks", "1", "--filters", "4",
            "--games", "2", "--steps", "1", "--batch-size", "8", "--playouts", "4", "--parallel", "2", "--quiet"]
    assert main(args) == 0
    games = run / "games" / "gen-0001.npz"
    data = games.read_bytes()
    games.write_bytes(data[:len(data) // 2])
    (run / "games" / "gen-0002.npz").write_bytes(data[:len(data) // 2])  # as if generation 2's self-play was cut
    capsys.readouterr()
    assert main(args[:5] + ["2"] + args[6:]) == 1
    assert "gen-0002.npz" in capsys.readouterr().err
    (run / "config.json").write_text("{not json")
    assert main(args) == 1
    assert "config.json" in capsys.readouterr().err
    net = tmp_path / "net7.safetensors"
    assert main(["go", "init", "--size", "7", "--blocks", "1", "--filters", "4", "--out", str(net)]) == 0
    assert main(["go", "selfplay", "--model", str(net), "--size", "5", "--games", "1", "--out",
                 str(tmp_path / "g.npz")]) == 2
    assert "7x7" in capsys.readouterr().err
