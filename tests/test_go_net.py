"""Input planes, the 8 symmetries, the policy/value net and its file, and ``freenet go init``."""

import numpy as np
import pytest

import freenet as fn
from freenet.errors import FreenetError
from freenet.go import features, symmetry
from freenet.go.board import BLACK, Board
from freenet.go.lz_weights import export_lz
from freenet.go.net import Evaluator, GoNet, NetConfig, NetOutput, load_net, new_net, save_net


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
        points = p[:size * size]
        seen = symmetry.transform_planes(points.reshape(size, size), s).ravel()
        assert np.array_equal(symmetry.untransform_points(seen, s), points)


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
            m.running_mean._data[...] = rng.standard_normal(m.num_features) * 0.3
            m.running_var._data[...] = rng.random(m.num_features) * 2 + 0.1
            m.weight._data[...] = rng.random(m.num_features) + 0.5
            m.bias._data[...] = rng.standard_normal(m.num_features) * 0.3
    return net.eval()


@pytest.mark.parametrize("size, blocks, filters, batch", [(5, 0, 4, 1), (7, 2, 8, 3), (9, 1, 64, 8),
                                                            (7, 1, 16, 11), (19, 1, 16, 2)])
def test_inference_path_matches_the_module(size, blocks, filters, batch):
    net = _trained_looking(new_net(size, blocks, filters, seed=size), seed=blocks)
    x = (np.random.default_rng(batch).random((batch, 18, size, size)) < 0.4).astype(np.float32)
    with fn.no_grad():
        p, v = net(fn.from_numpy(x))
    plan = net.inference()
    p2, v2, ownership, score = plan(x)
    assert ownership is None and score is None
    assert p2.dtype == np.float32 and p2.shape == p.shape and v2.shape == v.shape
    scale = 1 + np.abs(p.numpy()).max()
    assert np.abs(p2 - p.numpy()).max() <= 1e-5 * scale
    assert np.abs(v2 - v.numpy()).max() <= 1e-5
    # a snapshot: training the net afterwards does not change the plan
    next(net.parameters())._data[...] = 0
    p3 = plan(x).policy
    assert p3.tobytes() == p2.tobytes()
    with pytest.raises(FreenetError, match="expected input planes"):
        plan(x[:, :17])


ALL_OPTIONS = {"ownership": True, "score": True, "pooling": True}


@pytest.mark.parametrize("batch, options", [(8, {}), (64, {}), (8, ALL_OPTIONS)])  # 8: halves on their own threads
def test_inference_path_is_bitwise_identical_with_1_and_2_threads(batch, options):
    plan = _trained_looking(new_net(9, 2, 64, seed=1, **options), seed=2).inference()
    x = (np.random.default_rng(0).random((batch, 18, 9, 9)) < 0.4).astype(np.float32)
    fn.set_num_threads(1)
    one = plan(x)
    fn.set_num_threads(2)
    two = plan(x)
    assert [a is None for a in one] == [b is None for b in two] == [False, False] + [not options] * 2
    assert all(a.tobytes() == b.tobytes() for a, b in zip(one, two) if a is not None)


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


# -- the options: ownership and score heads, global pooling ------------------------------------------------

OPTION_SETS = [{"ownership": o, "score": s, "pooling": p} for o in (False, True) for s in (False, True)
               for p in (False, True)]


def _planes(batch, size, seed=0):
    return (np.random.default_rng(seed).random((batch, 18, size, size)) < 0.4).astype(np.float32)


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: "-".join(k for k, v in o.items() if v) or "none")
def test_options_shapes_and_inference_path(options):
    net = _trained_looking(new_net(5, 2, 8, seed=2, **options), seed=1)
    assert [b.pool_fc is not None for b in net.blocks] == [False, options["pooling"]]
    for batch in (1, 3):  # 3: the inference path's two halves, concatenated
        x = _planes(batch, 5, seed=batch)
        with fn.no_grad():
            out = net(fn.from_numpy(x))
        aux = options["ownership"] or options["score"]
        assert len(out) == (4 if aux else 2) and isinstance(out, NetOutput) == aux
        policy, value, ownership, score = out if aux else (*out, None, None)
        assert policy.shape == (batch, 26) and value.shape == (batch,)
        assert (ownership is None) != options["ownership"] and (score is None) != options["score"]
        if ownership is not None:
            assert ownership.shape == (batch, 25) and (np.abs(ownership.numpy()) <= 1).all()
        if score is not None:
            assert score.shape == (batch,)
        fast = net.inference()(x)
        assert isinstance(fast, NetOutput)
        for name, want in zip(NetOutput._fields, (policy, value, ownership, score)):
            got = getattr(fast, name)
            assert (got is None) == (want is None), name
            if got is not None:
                assert got.dtype == np.float32 and got.shape == want.shape
                assert np.allclose(got, want.numpy(), rtol=1e-4, atol=1e-5), name


def test_pooling_every_third_block_from_the_second():
    net = new_net(5, 8, 4, pooling=True)
    assert [i + 1 for i, b in enumerate(net.blocks) if b.pool_fc is not None] == [2, 5, 8]
    assert all(b.pool_fc is None for b in new_net(5, 8, 4).blocks)


def test_pooling_bias_is_a_linear_map_of_the_mean_and_max():
    block = _trained_looking(new_net(5, 2, 6, seed=4, pooling=True), seed=3).blocks[1]
    x = fn.from_numpy(np.random.default_rng(0).standard_normal((2, 6, 5, 5)).astype(np.float32))
    with fn.no_grad():
        got = block(x).numpy()
        y = block.bn1(block.conv1(x), relu=True).numpy()
        w, b = block.pool_fc.weight.numpy(), block.pool_fc.bias.numpy()
        bias = y.mean(axis=(2, 3)) @ w[:, :6].T + y.max(axis=(2, 3)) @ w[:, 6:].T + b
        want = block.bn2(block.conv2(fn.from_numpy(y + bias[:, :, None, None])), residual=x, relu=True).numpy()
        without = block.bn2(block.conv2(fn.from_numpy(y)), residual=x, relu=True).numpy()
    assert np.allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.abs(got - without).max() > 1e-2  # the bias does change the block's output


def test_pooled_net_differs_from_the_same_weights_without_pooling():
    pooled = _trained_looking(new_net(5, 2, 8, seed=6, pooling=True), seed=6)
    plain = GoNet(NetConfig(5, 2, 8)).eval()
    plain.load_state_dict({k: v for k, v in pooled.state_dict().items() if "pool_fc" not in k})
    x = fn.from_numpy(_planes(2, 5))
    with fn.no_grad():
        p1 = pooled(x)[0]
        p2, v2 = plain(x)
        assert np.abs(p1.numpy() - p2.numpy()).max() > 1e-3
        pooled.blocks[1].pool_fc.weight._data[...] = 0
        pooled.blocks[1].pool_fc.bias._data[...] = 0
        p3, v3 = pooled(x)
    assert np.array_equal(p3.numpy(), p2.numpy()) and np.array_equal(v3.numpy(), v2.numpy())


def test_pooling_block_gradcheck_float64():
    block = new_net(5, 2, 3, seed=1, pooling=True).blocks[1].double()
    assert block.pool_fc is not None
    x = fn.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 5, 5))).requires_grad_()
    params = (block.pool_fc.weight, block.pool_fc.bias, block.conv1.weight)
    assert fn.gradcheck(lambda x, *_: block(x), x, *params)
    block.eval()
    assert fn.gradcheck(lambda x, *_: block(x), x, *params)


@pytest.mark.parametrize("options", [ALL_OPTIONS, {"pooling": True}, {"score": True}])
def test_options_file_round_trip(tmp_path, options):
    net = _trained_looking(new_net(5, 2, 4, seed=7, **options), seed=7)
    path = tmp_path / "net.safetensors"
    save_net(net, str(path))
    again = load_net(str(path))
    assert again.config == net.config and all(getattr(again.config, k) == v for k, v in options.items())
    x = _planes(2, 5)
    for a, b in zip(net.inference()(x), again.inference()(x)):
        assert (a is None and b is None) or a.tobytes() == b.tobytes()


def test_files_without_the_options_load_with_them_off(tmp_path):
    import json

    net = new_net(5, 1, 4, seed=2)
    old = tmp_path / "old.safetensors"
    meta = {"format": "freenet.go.net/1", "size": 5, "blocks": 1, "filters": 4, "value_hidden": 64}
    fn.save(net.state_dict(), str(old), metadata={"freenet.go": json.dumps(meta)})
    again = load_net(str(old))
    assert (again.config.ownership, again.config.score, again.config.pooling) == (False, False, False)
    assert again.config == net.config
    # flags that disagree with the tensors: an error naming the file, not a traceback from deep inside
    aux = new_net(5, 1, 4, seed=2, ownership=True)
    lying = tmp_path / "lying.safetensors"
    fn.save(aux.state_dict(), str(lying), metadata={"freenet.go": json.dumps(meta)})
    with pytest.raises(FreenetError, match="(?s)lying.safetensors.*ownership=False.*ownership_conv"):
        load_net(str(lying))
    missing = tmp_path / "missing_head.safetensors"
    fn.save(net.state_dict(), str(missing), metadata={"freenet.go": json.dumps({**meta, "score": True})})
    with pytest.raises(FreenetError, match="(?s)missing_head.safetensors.*score=True"):
        load_net(str(missing))
    odd = tmp_path / "odd.safetensors"
    fn.save(net.state_dict(), str(odd), metadata={"freenet.go": json.dumps({**meta, "pooling": "yes"})})
    with pytest.raises(FreenetError, match="odd.safetensors.*pooling"):
        load_net(str(odd))
    with pytest.raises(FreenetError, match="ownership"):
        NetConfig(5, ownership=1)


def _random_boards(size, count, seed):
    rng = np.random.default_rng(seed)
    boards = []
    for _ in range(count):
        b = Board(size)
        for _ in range(rng.integers(0, 12)):
            b.play(int(rng.choice(b.legal_moves())))
        boards.append(b)
    return boards


@pytest.mark.parametrize("mode", [0, 5, "random", "average"])
def test_evaluate_planes_is_evaluate_plus_ownership(mode):
    boards = _random_boards(5, 7, seed=1)
    planes = features.batch_planes(boards)
    masks = np.stack([b.legal_mask() for b in boards])
    for options in ({}, ALL_OPTIONS):
        net = _trained_looking(new_net(5, 2, 4, seed=3, **options), seed=3)
        a = Evaluator(net, mode, rng=np.random.default_rng(9), max_batch=4)
        b = Evaluator(net, mode, rng=np.random.default_rng(9), max_batch=4)
        p, v = a.evaluate(boards)
        p2, v2, ownership = b.evaluate_planes(planes, masks)
        assert p.tobytes() == p2.tobytes() and v.tobytes() == v2.tobytes()
        assert p2.dtype == v2.dtype == np.float64 and p2.shape == (7, 26) and v2.shape == (7,)
        assert (a.positions, a.batches) == (b.positions, b.batches) == (7, 2)
        assert (ownership is None) == (not options)
        if ownership is not None:
            assert ownership.dtype == np.float64 and ownership.shape == (7, 25)
    empty = Evaluator(new_net(5, 1, 4, ownership=True)).evaluate_planes(np.zeros((0, 18, 5, 5), np.float32),
                                                                        np.zeros((0, 26), bool))
    assert [x.shape for x in empty] == [(0, 26), (0,), (0, 25)]
    with pytest.raises(FreenetError, match="masks"):
        Evaluator(net).evaluate_planes(planes, masks[:, :25])


@pytest.mark.parametrize("mode", list(range(8)) + ["random", "average"])
def test_ownership_comes_back_on_the_boards_own_points(mode):
    """A net whose ownership is tanh(2 * [the side to move has a stone here] - 1), whatever the symmetry:
    any symmetry the evaluator fails to undo moves it off the stones."""
    net = new_net(5, 0, 4, seed=0, ownership=True)
    net.input_conv.weight._data[...] = 0
    net.input_conv.weight._data[0, 0, 1, 1] = np.sqrt(1 + net.input_bn.eps)  # the BN (x / sqrt(1 + eps)) undone
    net.ownership_conv.weight._data[...] = 0
    net.ownership_conv.weight._data[0, 0] = 2.0
    net.ownership_conv.bias._data[...] = -1.0
    boards = _random_boards(5, 16, seed=2)
    ev = Evaluator(net, mode, rng=np.random.default_rng(0))
    _, _, ownership = ev.evaluate_planes(features.batch_planes(boards), np.stack([b.legal_mask() for b in boards]))
    mine = np.stack([(b.stones_array() == b.to_move).ravel() for b in boards])
    assert mine.any(axis=1).sum() > 10 and not (mine == mine[:, ::-1]).all()
    assert np.allclose(ownership, np.tanh(2.0 * mine - 1), atol=1e-6)


@pytest.mark.parametrize("option", ["ownership", "score", "pooling"])
def test_leela_zero_export_refuses_the_options(tmp_path, option):
    with pytest.raises(FreenetError, match=f"Leela Zero.*{option}"):
        export_lz(new_net(5, 1, 4, **{option: True}), str(tmp_path / "w.txt"))
    assert not (tmp_path / "w.txt").exists()
