"""freenet.save / freenet.load of nested objects, as PyTorch checkpoints use them: round trips, resuming
training from a loaded checkpoint, the flat format left as it was, and malformed files."""

import json
import math
import struct

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import given, settings
from hypothesis import strategies as st

import freenet as fn
from freenet import FreenetError, nn, optim
from freenet.nn import functional as F
from freenet.optim import lr_scheduler


def same(a, b, where="obj"):
    """Asserts that a and b are equal with the same types all the way down (NaN equals NaN)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} vs {list(b)}"
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, (fn.Tensor, np.ndarray, np.generic)):
        x, y = (a._data, b._data) if isinstance(a, fn.Tensor) else (np.asarray(a), np.asarray(b))
        assert x.dtype == y.dtype and x.shape == y.shape, where
        np.testing.assert_array_equal(x, y, err_msg=where)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b)), where


def round_trip(obj, path, **kwargs):
    fn.save(obj, path, **kwargs)
    return fn.load(path)


# -- round trips ---------------------------------------------------------------------------------

def _trained(steps=3):
    """A small model, optimizer and schedulers after a few steps with hand-made gradients."""
    fn.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    opt = optim.RMSprop([{"params": model[0].parameters()}, {"params": model[1].parameters(), "lr": 0.003}],
                        lr=0.01, momentum=0.9, centered=True)
    plateau = lr_scheduler.ReduceLROnPlateau(opt, patience=0)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        for p in model.parameters():
            p.grad = fn.tensor(rng.standard_normal(p.shape).astype(np.float32))
        opt.step()
        plateau.step(1.0)
    return model, opt, plateau


def test_a_pytorch_style_checkpoint_round_trips(tmp_path):
    model, opt, plateau = _trained()
    cycle_opt = optim.Adam([nn.Parameter(fn.zeros(2))])
    one_cycle = lr_scheduler.OneCycleLR(cycle_opt, max_lr=0.1, total_steps=10)
    checkpoint = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
                  "scheduler": plateau.state_dict(), "one_cycle": one_cycle.state_dict(),
                  "adam": cycle_opt.state_dict(), "best_accuracy": 0.875, "done": False, "note": None,
                  "args": {"lr": 0.01, "layers": [3, 4, 2], "name": "mlp ✓", "seed": (0, 1)}}
    back = round_trip(checkpoint, tmp_path / "ck.safetensors")
    same(back, {**checkpoint, "model": dict(checkpoint["model"])})  # an OrderedDict comes back as a dict
    assert list(back["optimizer"]["state"]) == [0, 1, 2, 3]  # int keys stay ints
    assert back["scheduler"]["mode_worse"] == math.inf and back["one_cycle"]["_schedule_phases"][0]["start_lr"]
    model.load_state_dict(back["model"])
    opt.load_state_dict(back["optimizer"])
    plateau.load_state_dict(back["scheduler"])


@pytest.mark.parametrize("obj", [
    fn.ones(2, 3),
    np.arange(6, dtype=np.int32).reshape(2, 3),
    [fn.zeros(2), np.ones(1, np.uint8), np.array([True, False])],
    (1, 2.5, "x", None, True, -0.0),
    {"nested": {"deeper": {"deepest": [{"t": fn.tensor([1.0, 2.0], dtype=fn.float64)}]}}},
    {0: "zero", 1: [1], "mixed": {5: fn.ones(1), "5": np.zeros(1)}},
    {"floats": [math.nan, math.inf, -math.inf, 5e-324, 1.7976931348623157e308, 0.1]},
    {"ints": [0, -1, 2 ** 63, -(2 ** 100)], "bools": [True, False], "empty": [[], (), {}]},
    {"numpy": [np.float64(0.5), np.int64(-3), np.bool_(True), np.float32(1.5)]},
    {"text": ["", "é ✓ 𝄞", "\ud800", "quote \" and \\ and \n"]},
    {"w": [1.0, 2.0], 3: np.ones(2)},  # what the flat format refused
    [("w", np.ones(2)), ("b", np.zeros(1))],
    {},
    {"__metadata__": [1], "a.b": fn.ones(1), "a": {"b": fn.zeros(1)}},  # names that need care in the file
    "just a string",
    None,
])
def test_round_trip(tmp_path, obj):
    same(round_trip(obj, tmp_path / "x.safetensors"), obj)


scalars = (st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats(allow_nan=True)
           | st.text(max_size=8))
arrays = st.sampled_from([np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_]).map(
    lambda dt: np.arange(6).reshape(2, 3).astype(dt))
trees = st.recursive(scalars | arrays | arrays.map(fn.from_numpy), lambda children: (
    st.lists(children, max_size=4) | st.lists(children, max_size=4).map(tuple)
    | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5), children, max_size=4)), max_leaves=20)


@settings(max_examples=60, deadline=None)
@given(obj=trees)
def test_round_trip_of_random_trees(tmp_path_factory, obj):
    path = tmp_path_factory.mktemp("tree") / "x.safetensors"
    back = round_trip(obj, path)
    if isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, (fn.Tensor, np.ndarray))
                                     for k, v in obj.items()):
        obj = {k: v if isinstance(v, fn.Tensor) else fn.from_numpy(v) for k, v in sorted(obj.items())}  # flat
    same(back, obj)


def test_loaded_arrays_own_their_memory_and_sharing_is_kept(tmp_path):
    t = fn.ones(3)
    a = np.zeros(2)
    back = round_trip({"x": t, "again": t, "a": a, "list": [a, t]}, tmp_path / "x.safetensors")
    assert back["x"] is back["again"] is back["list"][1] and back["a"] is back["list"][0]
    assert isinstance(back["x"], fn.Tensor) and not back["x"].requires_grad
    back["x"]._data[0] = 5.0
    back["a"][0] = 5.0
    assert back["a"].flags.writeable and t._data[0] == 1.0 and a[0] == 0.0
    names = sorted(safetensors.numpy.load_file(str(tmp_path / "x.safetensors")))
    assert names == ["a", "x"]  # one copy each, under the first path met


def test_tensors_are_readable_by_safetensors_under_their_paths(tmp_path):
    path = tmp_path / "ck.safetensors"
    fn.save({"model": {"0.weight": np.ones((2, 2), np.float32)}, "optimizer": {"state": {0: {"exp_avg": fn.zeros(2)}}},
             "epoch": 1, "a.b": fn.ones(1), "a": {"b": fn.zeros(1)}}, path)
    plain = safetensors.numpy.load_file(str(path))
    assert sorted(plain) == ["a.b", "a.b#2", "model.0.weight", "optimizer.state.0.exp_avg"]
    assert plain["model.0.weight"].tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_metadata_with_a_tree(tmp_path):
    path = tmp_path / "ck.safetensors"
    fn.save({"epoch": 2, "w": fn.ones(1)}, path, metadata={"run": "a"})
    assert fn.load_metadata(path) == {"run": "a"}  # the structure is not part of the user's metadata
    assert fn.load(path, map_location="cpu", weights_only=True)["epoch"] == 2  # PyTorch's arguments are accepted
    with pytest.raises(FreenetError, match="'freenet.tree' is reserved"):
        fn.save({"w": fn.ones(1)}, path, metadata={"freenet.tree": "{}"})


# -- the flat format is unchanged ------------------------------------------------------------------

def test_a_dict_of_tensors_is_written_and_read_as_before(tmp_path):
    state = {"b": fn.ones(2), "a": np.arange(3, dtype=np.int64), "s": np.float32(2.0)}
    path = tmp_path / "flat.safetensors"
    fn.save(state, path, metadata={"k": "v"})
    expected = safetensors.numpy.save({k: np.asarray(v._data if isinstance(v, fn.Tensor) else v)
                                       for k, v in state.items()}, metadata={"k": "v"})
    assert path.read_bytes() == expected  # the same bytes as before nested objects existed
    back = fn.load(path)
    assert list(back) == ["a", "b", "s"] and all(isinstance(v, fn.Tensor) for v in back.values())
    assert back["s"].shape == () and back["a"].tolist() == [0, 1, 2]
    # files written by other safetensors writers (or an older freenet) load the same way
    safetensors.numpy.save_file({"w": np.eye(2, dtype=np.float32)}, str(path), metadata={"format": "np"})
    back = fn.load(path)
    assert list(back) == ["w"] and back["w"].tolist() == [[1.0, 0.0], [0.0, 1.0]]


# -- resuming training ---------------------------------------------------------------------------

def test_an_optimizer_resumed_from_a_loaded_checkpoint_takes_the_same_steps(tmp_path):
    def grads(step):
        rng = np.random.default_rng(100 + step)
        return [rng.standard_normal(s).astype(np.float32) for s in [(4, 3), (4,), (2, 4), (2,)]]

    def make():
        fn.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
        opt = optim.RMSprop(model.parameters(), lr=0.01, momentum=0.9, centered=True, weight_decay=1e-3)
        sched = lr_scheduler.MultiStepLR(opt, milestones=[4, 6], gamma=0.5)
        return model, opt, sched

    def train(model, opt, sched, steps):
        for step in steps:
            for p, g in zip(model.parameters(), grads(step)):
                p.grad = fn.tensor(g)
            opt.step()
            sched.step()

    model, opt, sched = make()
    train(model, opt, sched, range(3))
    path = tmp_path / "ck.safetensors"
    fn.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "epoch": 3}, path)
    train(model, opt, sched, range(3, 8))

    model2, opt2, sched2 = make()
    checkpoint = fn.load(path)
    model2.load_state_dict(checkpoint["model"])
    opt2.load_state_dict(checkpoint["optimizer"])
    sched2.load_state_dict(checkpoint["scheduler"])
    train(model2, opt2, sched2, range(checkpoint["epoch"], 8))
    for p, q in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(p._data, q._data)
    assert sched2.get_last_lr() == sched.get_last_lr() == [0.0025]


def test_a_pytorch_script_with_renamed_imports(tmp_path):
    import freenet as torch  # the script below is PyTorch's, but for this line

    def script(resume_from=None, epochs=6):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        torch.nn.init.orthogonal_(model[0].weight, gain=torch.nn.init.calculate_gain("tanh"))
        torch.nn.init.trunc_normal_(model[2].weight, std=0.02)
        opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
        start = 0
        if resume_from is not None:
            checkpoint = torch.load(resume_from, map_location="cpu", weights_only=True)
            model.load_state_dict(checkpoint["model"])
            opt.load_state_dict(checkpoint["optimizer"])
            sched.load_state_dict(checkpoint["scheduler"])
            start = checkpoint["epoch"] + 1
        x = torch.tensor(np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4))
        y = (x * x).sum(1, keepdim=True)
        losses = []
        for epoch in range(start, epochs):
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if epoch == 2:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(), "epoch": epoch}, tmp_path / "ck.pt")
        return model, losses

    model, losses = script()
    resumed, resumed_losses = script(resume_from=tmp_path / "ck.pt")
    assert resumed_losses == losses[3:] and losses[-1] < losses[0]
    for p, q in zip(model.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(p._data, q._data)


# -- what save refuses ---------------------------------------------------------------------------

def _nested_lists(depth):
    obj = []
    for _ in range(depth - 1):
        obj = [obj]
    return obj


def _contains_itself():
    obj = {"a": [1]}
    obj["a"].append(obj)
    return obj


@pytest.mark.parametrize("obj, problem", [
    ({"a": {1, 2}}, r"obj\['a'\] has type set"),
    ({"a": [b"bytes"]}, r"obj\['a'\]\[0\] has type bytes"),
    ({"a": {1.5: 1}}, r"obj\['a'\] has a key 1.5 of type float; keys must be str or int"),
    ({True: 1}, "key True of type bool"),
    ({(1, 2): 1}, "key .* of type tuple"),
    ({"opt": {"w": np.ones(2, np.float16)}}, "'opt.w' has dtype float16"),
    (_contains_itself(), r"obj\['a'\]\[1\] contains itself"),
    (_nested_lists(101), "nested more than 100 deep"),
    ({"n": 10 ** 5000}, "cannot write the structure as JSON"),
])
def test_save_refuses(tmp_path, obj, problem):
    with pytest.raises(FreenetError, match=problem):
        fn.save(obj, tmp_path / "x.safetensors")
    assert not list(tmp_path.iterdir())


def test_the_depth_limit_allows_100_levels(tmp_path):
    same(round_trip(_nested_lists(100), tmp_path / "x.safetensors"), _nested_lists(100))


# -- malformed files -----------------------------------------------------------------------------

def tree_file(path, tree, arrays=None):
    """A safetensors file whose metadata holds ``tree`` (a str, or JSON-able data) as the structure."""
    text = tree if isinstance(tree, str) else json.dumps(tree)
    path.write_bytes(safetensors.numpy.save(arrays or {}, metadata={"freenet.tree": text}))
    return path


def root(node):
    return {"version": 1, "root": node}


W = {"w": np.ones(2, np.float32)}
MALFORMED = [
    ("{not json", None, "not valid JSON"),
    ('{"version": 1, "root": NaN}', None, "NaN is not a number JSON allows"),
    ('{"version": 1, "root": {"list": [], "list": []}}', None, "the key 'list' appears twice"),
    ("[" * 100000 + "]" * 100000, None, "JSON nested 100000 deep"),
    ([1, 2], None, r'must be a JSON object \{"version"'),
    ({"root": 1}, None, r'must be a JSON object \{"version"'),
    ({"version": 2, "root": 1}, None, "has version 2; this freenet reads version 1"),
    ({"version": True, "root": 1}, None, "has version True"),
    (root({"list": [1, {"set": []}]}), None, r"node of unknown kind 'set' at obj\[1\]"),
    (root({"list": [], "tuple": []}), None, "malformed node"),
    (root([1, 2]), None, r"malformed node \[1, 2\] at obj"),
    (root({"list": {"a": 1}}), None, "list node whose content is not a JSON list"),
    (root({"dict": [["a", 1, 2]]}), None, "dict entry .* not a \\[key, value\\] pair"),
    (root({"dict": [[True, 1]]}), None, "not a \\[key, value\\] pair with a str or int key"),
    (root({"dict": [[1.5, 1]]}), None, "str or int key"),
    (root({"dict": [["a", 1], ["a", 2]]}), None, "repeats the dict key 'a'"),
    (root({"dict": [["x", {"dict": [[0, {"tensor": "missing"}]]}]]}), W,
     r"refers to a tensor 'missing' that the file does not hold at obj\['x'\]\[0\]"),
    (root({"tensor": 3}), W, "refers to a tensor 3"),
    (root({"list": []}), W, r"does not mention the tensors \['w'\]"),
    (root({"numpy_scalar": "w"}), W, r"NumPy scalar 'w' of shape \(2,\)"),
    (root({"float": "NaN"}), None, "float node 'NaN', not 'nan', 'inf' or '-inf'"),
    (root(1), None, None),  # a plain number is a whole object
]


def _deep(depth):
    node = 1
    for _ in range(depth):
        node = {"list": [node]}
    return root(node)


MALFORMED += [(_deep(101), None, "nests containers more than 100 deep"), (_deep(100), None, None),
              ('{"version": 1, "root": ' + "9" * 5000 + "}", None, "not valid JSON")]


@pytest.mark.parametrize("tree, arrays, problem", MALFORMED, ids=[f"{i}-{problem or 'loads'}"[:40]
                                                             for i, (_, _, problem) in enumerate(MALFORMED)])
def test_malformed_trees_raise_freenet_errors(tmp_path, tree, arrays, problem):
    path = tree_file(tmp_path / "bad.safetensors", tree, arrays)
    if problem is None:
        fn.load(path)
        return
    with pytest.raises(FreenetError, match=problem) as e:
        fn.load(path)
    assert str(path) in str(e.value) and "freenet.tree" in str(e.value)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_damaged_tree_files_load_or_raise_freenet_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "ck.safetensors"
    fn.save({"model": {"w": np.arange(4, dtype=np.float32)}, "optimizer": {"state": {0: {"step": 3}}},
             "epoch": 2, "lrs": [0.1, (0.2, None)], "best": math.inf}, path)
    content = bytearray(path.read_bytes())
    n = struct.unpack("<Q", content[:8])[0]
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(8, 8 + n - 1))  # inside the JSON header, where the structure is
        content[i] = data.draw(st.sampled_from(b'{}[]",:0123456789aeflnrstu\\ '))
    path.write_bytes(bytes(content))
    try:
        fn.load(path)
    except FreenetError as e:
        assert str(path) in str(e)
