"""Input planes, the 8 symmetries, the policy/value net and its file, and ``freenet go init``."""

import numpy as np
import pytest

import freenet as fn
from freenet.errors import FreenetError
from freenet.go import features, symmetry
from freenet.go.board import BLACK, Board
from freenet.go.net import Evaluator, GoNet, NetConfig, load_net, new_net, save_net


@pytest.fixture(autouse=True)
def one_thread():
    """The nets here are tiny: one thread (a busy shared machine makes a thread pool slower)."""
    before = fn.get_num_threads()
    fn.set_num_threads(1)
    yield
    fn.set_num_threads(before)


def game(size, names):
    b = Board(size)
    for name in names:
        b.play(b.point(name))
    return b


def test_planes_follow_leela_zero():
    b = game(5, ["C3", "D4", "pass", "B2"])  # white to move
    x = features.planes(b)
    assert x.shape == (18, 5, 5) and x.dtype == np.float32
    assert b.to_move == BLACK
    # now: black C3 (black to move: planes 0-7 are black's)
    assert x[0].sum() == 1 and x[0][2, 2] == 1  # C3 = row 2, col 2
    assert x[8].sum() == 2 and x[8][3, 3] == 1 and x[8][1, 1] == 1  # white D4, B2
    assert x[1].sum() == 1 and x[9].sum() == 1  # one move ago: before B2
    assert x[2].sum() == 1 and x[10].sum() == 1  # two moves ago: after D4 (the pass repeats it)
    assert x[3].sum() == 1 and x[11].sum() == 0  # after C3 only
    assert x[4:8].sum() == 0 and x[12:16].sum() == 0  # before the game
    assert (x[16] == 1).all() and (x[17] == 0).all()
    b.play(b.point("A1"))
    y = features.planes(b)
    assert (y[17] == 1).all() and (y[16] == 0).all()
    assert y[0].sum() == 2 and y[8].sum() == 2  # white to move: planes 0-7 are white's


def test_symmetries_match_transformed_games():
    size = 7
    names = ["C3", "E5", "B6", "F2", "D4"]
    b = game(size, names)
    x = features.planes(b)
    tables = {tuple(symmetry.table(size, s)) for s in range(8)}
    assert len(tables) == 8 and tuple(range(size * size)) in tables
    for s in range(8):
        t = symmetry.table(size, s)
        inverse = np.argsort(t)
        # the game with every move mapped by the symmetry: point p goes to inverse[p]
        moved = Board(size)
        for name in names:
            moved.play(int(inverse[b.point(name)]))
        assert np.array_equal(symmetry.transform_planes(x, s), features.planes(moved))
        p = np.random.default_rng(s).random(size * size + 1)
        assert np.allclose(symmetry.untransform_policy(symmetry.transform_policy(p, s), s), p)


def test_net_shapes_file_and_average_symmetry(tmp_path):
    net = new_net(size=7, blocks=1, filters=8, seed=3)
    x = fn.from_numpy(np.random.default_rng(0).random((2, 18, 7, 7), dtype=np.float32))
    net.eval()
    with fn.no_grad():
        p, v = net(x)
    assert p.shape == (2, 50) and v.shape == (2,) and (np.abs(v.numpy()) <= 1).all()
    path = tmp_path / "net.safetensors"
    save_net(net, str(path))
    again = load_net(str(path))
    assert again.config == net.config
    with fn.no_grad():
        p2, v2 = again(x)
    assert np.array_equal(p.numpy(), p2.numpy()) and np.array_equal(v.numpy(), v2.numpy())
    # the average over the 8 symmetries is itself symmetric
    ev = Evaluator(again, symmetry_mode="average")
    b = game(7, ["C3", "E5"])
    mirrored = game(7, ["E3", "C5"])  # mirror x: C<->E
    pa, va = ev.evaluate([b, mirrored])
    assert abs(va[0] - va[1]) < 1e-5
    t = symmetry.table(7, 2)  # mirror x
    assert np.allclose(pa[0][:49][t], pa[1][:49], atol=1e-6)
    # illegal moves get no prior
    assert pa[0][b.point("C3")] == 0 and abs(pa[0].sum() - 1) < 1e-9


def _trained_looking(net, seed):
    """Batch norms with running statistics and affine weights far from their initial values."""
    rng = np.random.default_rng(seed)
    for m in net.modules():
        if isinstance(m, fn.nn.BatchNorm2d):
            m.running_mean.data[...] = rng.standard_normal(m.num_features) * 0.3
            m.running_var.data[...] = rng.random(m.num_features) * 2 + 0.1
            m.weight.data[...] = rng.random(m.num_features) + 0.5
            m.bias.data[...] = rng.standard_normal(m.num_features) * 0.3
    return net.eval()


@pytest.mark.parametrize("size, blocks, filters, batch", [(5, 0, 4, 1), (7, 2, 8, 3), (9, 1, 64, 8),
                                                            (7, 1, 16, 11), (19, 1, 16, 2)])
def test_inference_path_matches_the_module(size, blocks, filters, batch):
    net = _trained_looking(new_net(size, blocks, filters, seed=size), seed=blocks)
    x = (np.random.default_rng(batch).random((batch, 18, size, size)) < 0.4).astype(np.float32)
    with fn.no_grad():
        p, v = net(fn.from_numpy(x))
    plan = net.inference()
    p2, v2 = plan(x)
    assert p2.dtype == np.float32 and p2.shape == p.shape and v2.shape == v.shape
    scale = 1 + np.abs(p.numpy()).max()
    assert np.abs(p2 - p.numpy()).max() <= 1e-5 * scale
    assert np.abs(v2 - v.numpy()).max() <= 1e-5
    # a snapshot: training the net afterwards does not change the plan
    next(net.parameters()).data[...] = 0
    p3, _ = plan(x)
    assert p3.tobytes() == p2.tobytes()
    with pytest.raises(FreenetError, match="expected input planes"):
        plan(x[:, :17])


@pytest.mark.parametrize("batch", [8, 64])  # 8: halves of the batch on their own threads (SPLIT_PIXELS)
def test_inference_path_is_bitwise_identical_with_1_and_2_threads(batch):
    plan = _trained_looking(new_net(9, 2, 64, seed=1), seed=2).inference()
    x = (np.random.default_rng(0).random((batch, 18, 9, 9)) < 0.4).astype(np.float32)
    fn.set_num_threads(1)
    one = plan(x)
    fn.set_num_threads(2)
    two = plan(x)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(one, two))


def test_same_seed_same_net():
    a, b = new_net(9, 1, 8, seed=5), new_net(9, 1, 8, seed=5)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert np.array_equal(np.asarray(x), np.asarray(y)), k


def test_bad_configs_and_files(tmp_path):
    with pytest.raises(FreenetError):
        NetConfig(size=4)
    with pytest.raises(FreenetError):
        NetConfig(filters=0)
    with pytest.raises(FreenetError, match="no such"):
        load_net(str(tmp_path / "missing.safetensors"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(FreenetError):
        load_net(str(bad))
    other = tmp_path / "other.safetensors"
    fn.save({"w": fn.zeros(2)}, str(other))
    with pytest.raises(FreenetError, match="not a freenet Go net"):
        load_net(str(other))
    assert isinstance(GoNet(NetConfig(5, 0, 4)), GoNet)


def test_bench_functions_run():
    import shutil

    from freenet.go import bench
    python_rate, playout_rate = bench.rules_speed(5, seconds=0.2)
    assert python_rate > 100 and playout_rate > 1000
    net = new_net(5, 1, 4)
    assert bench.net_speed(net, 2, seconds=0.1, repeats=2) > 0
    assert bench.search_speed(net, 4, playouts=16) > 0
    assert bench.train_speed(net, 8, steps=1) > 0
    leelaz = shutil.which("leelaz") or shutil.which("/usr/games/leelaz")
    if leelaz:
        assert bench.leelaz_speed(new_net(19, 1, 8), leelaz, visits=20) > 0
