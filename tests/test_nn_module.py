"""freenet.nn: Module registration and state, containers, layers, init and gradient clipping."""

import copy
import math
from collections import OrderedDict

import numpy as np
import pytest

import freenet as fn
from freenet import FreenetError, nn
from freenet.nn import functional as F
from freenet.nn import init


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.act = nn.ReLU()
        self.scale = nn.Parameter(fn.ones(4))
        self.register_buffer("running", np.zeros(4, dtype=np.float32))
        self.register_buffer("scratch", fn.zeros(2), persistent=False)

    def forward(self, x):
        return self.act(self.fc(x)) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        return self.head(self.block(x))


# -- registration and traversal ------------------------------------------------------------------

def test_named_parameters_buffers_and_modules():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["block.scale", "block.fc.weight", "block.fc.bias",
                                                       "head.weight"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert [n for n, _ in net.named_buffers()] == ["block.running", "block.scratch"]
    assert isinstance(net.block.running, fn.Tensor)
    assert [n for n, _ in net.named_children()] == ["block", "head"]
    assert [n for n, _ in net.named_modules()] == ["", "block", "block.fc", "block.act", "head"]
    assert [type(m).__name__ for m in net.modules()] == ["Net", "Block", "Linear", "ReLU", "Linear"]
    assert net.head.bias is None
    assert [n for n, _ in net.named_parameters(recurse=False)] == []
    assert [n for n, _ in net.block.named_parameters(prefix="b")] == ["b.scale", "b.fc.weight", "b.fc.bias"]


def test_shared_parameters_and_modules_are_listed_once():
    net = nn.Module()
    layer = nn.Linear(2, 2)
    net.a, net.b = layer, layer
    net.tied = layer.weight
    assert [n for n, _ in net.named_parameters()] == ["tied", "a.bias"]  # a.weight is tied
    assert len(list(net.parameters())) == 2
    assert len(list(net.named_parameters(remove_duplicate=False))) == 5
    assert [n for n, _ in net.named_children()] == ["a"]
    # state_dict lists a shared tensor under every name, as PyTorch does
    assert list(net.state_dict()) == ["tied", "a.weight", "a.bias", "b.weight", "b.bias"]


def test_assignment_rules():
    m = nn.Module()
    m.w = nn.Parameter(fn.zeros(2))
    m.w = None  # a registered parameter may be set to None
    assert m.w is None and list(m.parameters()) == []
    m.w = nn.Parameter(fn.zeros(3))
    with pytest.raises(FreenetError, match="cannot assign a Tensor to parameter 'w'"):
        m.w = fn.zeros(3)
    m.sub = nn.ReLU()
    with pytest.raises(FreenetError, match="submodule 'sub'"):
        m.sub = 3
    m.register_buffer("buf", np.ones(2))
    m.buf = np.zeros(2)  # buffers accept arrays and stay Tensors
    assert isinstance(m.buf, fn.Tensor) and m.buf.tolist() == [0.0, 0.0]
    with pytest.raises(FreenetError, match="buffer 'buf' must be"):
        m.buf = "text"
    m.plain = fn.zeros(2)  # a plain Tensor attribute is not a parameter
    assert [n for n, _ in m.named_parameters()] == ["w"]
    with pytest.raises(FreenetError, match="cannot assign a ReLU to parameter 'w'"):
        m.w = nn.ReLU()
    m.sub = nn.Parameter(fn.zeros(1))  # a Parameter may replace a submodule (as in PyTorch)
    assert list(m.children()) == [] and [n for n, _ in m.named_parameters()] == ["w", "sub"]
    del m.w
    with pytest.raises(AttributeError, match="has no attribute 'w'"):
        m.w
    with pytest.raises(FreenetError, match="contain no '.'"):
        m.register_buffer("a.b", None)
    with pytest.raises(FreenetError, match="already exists"):
        m.register_parameter("plain", nn.Parameter(fn.zeros(1)))
    with pytest.raises(FreenetError, match="expected freenet.nn.Parameter"):
        m.register_parameter("q", fn.zeros(1))


def test_assigning_before_super_init_is_an_error():
    class Broken(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(fn.zeros(1))

    with pytest.raises(FreenetError, match=r"super\(\).__init__\(\)"):
        Broken()


def test_parameter_shares_a_tensor_and_copies_other_data():
    t = fn.zeros(3)
    p = nn.Parameter(t)
    assert p._data is t._data and p.is_leaf and p.requires_grad
    a = np.zeros(2, dtype=np.float32)
    q = nn.Parameter(a, requires_grad=False)
    assert q._data is not a and not q.requires_grad
    assert repr(nn.Parameter(fn.tensor([1.0]))) == "Parameter containing:\ntensor([1.], requires_grad=True)"
    assert type(p * 2) is fn.Tensor


def test_train_eval_propagates():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.block.train()
    assert net.block.fc.training and not net.training and not net.head.training
    with pytest.raises(FreenetError):
        net.train("yes")


def test_zero_grad_and_requires_grad():
    net = Net()
    net(fn.randn(5, 3)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(not p.grad._data.any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_forward_missing_and_call():
    with pytest.raises(FreenetError, match="has no forward"):
        nn.Module()(1)
    net = Net()
    x = fn.randn(2, 3)
    assert np.array_equal(net(x)._data, net.forward(x)._data)


def test_repr_nests_like_pytorch():
    net = Net()
    assert repr(net) == (
        "Net(\n"
        "  (block): Block(\n"
        "    (fc): Linear(in_features=3, out_features=4, bias=True)\n"
        "    (act): ReLU()\n"
        "  )\n"
        "  (head): Linear(in_features=4, out_features=2, bias=False)\n"
        ")")
    assert repr(nn.Sequential(nn.Flatten(), nn.GELU("tanh"), nn.Identity())) == (
        "Sequential(\n  (0): Flatten(start_dim=1, end_dim=-1)\n  (1): GELU(approximate='tanh')\n  (2): Identity()\n)")

    class Multi(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Tanh()

        def extra_repr(self):
            return "k=1"

    assert repr(Multi()) == "Multi(\n  k=1\n  (inner): Tanh()\n)"


def test_deepcopy_and_to_dtype():
    net = Net()
    twin = copy.deepcopy(net)
    x = fn.randn(2, 3)
    assert np.array_equal(net(x)._data, twin(x)._data)
    twin.block.fc.weight._data += 1
    assert not np.array_equal(net.block.fc.weight._data, twin.block.fc.weight._data)
    net.double()
    assert all(t.dtype == np.float64 for t in list(net.parameters()) + list(net.buffers()))
    assert net(x.double()).dtype == np.float64
    with pytest.raises(FreenetError):
        net.to(np.int32)


# -- state_dict ----------------------------------------------------------------------------------

def test_state_dict_names_copies_and_round_trip():
    fn.manual_seed(1)
    net = Net()
    state = net.state_dict()
    # PyTorch's order: each module's own parameters, then its buffers, then its children
    assert list(state) == ["block.scale", "block.running", "block.fc.weight", "block.fc.bias", "head.weight"]
    assert all(isinstance(v, fn.Tensor) and not v.requires_grad for v in state.values())
    snapshot = copy.deepcopy(state)
    state["block.fc.weight"][...] = 7  # the same memory, as in PyTorch
    assert (net.block.fc.weight.numpy() == 7).all()
    net.load_state_dict(snapshot)
    assert not (net.block.fc.weight.numpy() == 7).any()
    kept = net.state_dict(keep_vars=True)
    assert kept["head.weight"] is net.head.weight

    fn.manual_seed(2)
    other = Net()
    x = fn.randn(4, 3)
    assert not np.allclose(net(x)._data, other(x)._data)
    weight_array = other.block.fc.weight._data
    result = other.load_state_dict(net.state_dict())
    assert result == ([], []) and result.missing_keys == []
    assert other.block.fc.weight._data is weight_array  # copied into the existing arrays
    assert np.array_equal(net(x)._data, other(x)._data)
    # Tensors load too
    other.load_state_dict({k: fn.tensor(v) for k, v in net.state_dict().items()})


def test_load_state_dict_reports_every_problem_and_copies_nothing():
    net = Net()
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    bad = net.state_dict()
    del bad["block.scale"], bad["head.weight"]
    bad["extra"] = np.zeros(1, dtype=np.float32)
    bad["block.fc.weight"] = np.zeros((3, 4), dtype=np.float32)  # transposed shape
    bad["block.fc.bias"] = np.zeros(4, dtype=np.float64)  # wrong dtype
    bad["block.running"] = "zeros"  # not an array
    with pytest.raises(FreenetError) as info:
        net.load_state_dict(bad)
    message = str(info.value)
    assert "5 error(s)" in message and "Net" in message
    assert "missing keys: 'block.scale', 'head.weight'" in message
    assert "unexpected keys: 'extra'" in message
    assert "'block.fc.weight': shape (3, 4) in the state dict, (4, 3) in the model" in message
    assert "'block.fc.bias': dtype float64 in the state dict, float32 in the model" in message
    assert "'block.running': got a str" in message
    for k, v in net.state_dict().items():
        assert np.array_equal(v, before[k])


def test_load_state_dict_non_strict():
    net = Net()
    state = net.state_dict()
    del state["head.weight"]
    state["extra"] = np.zeros(1)
    result = net.load_state_dict(state, strict=False)
    assert result.missing_keys == ["head.weight"] and result.unexpected_keys == ["extra"]
    state["block.scale"] = np.zeros(5, dtype=np.float32)
    with pytest.raises(FreenetError, match="block.scale"):  # shapes are checked even when not strict
        net.load_state_dict(state, strict=False)
    with pytest.raises(FreenetError, match="expected a dict"):
        net.load_state_dict([1, 2])


def test_load_state_dict_from_torch():
    torch = pytest.importorskip("torch")
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    f = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    f.load_state_dict({k: v.detach() for k, v in t.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    expected = t(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(f(fn.tensor(x))._data, expected, rtol=1e-5, atol=1e-6)


# -- containers ----------------------------------------------------------------------------------

def test_sequential_behaviour():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3 and list(seq) == [a, b, c]
    assert seq[0] is a and seq[-1] is c
    tail = seq[1:]
    assert isinstance(tail, nn.Sequential) and list(tail) == [b, c]
    assert list(dict(tail.named_children())) == ["1", "2"]
    with pytest.raises(IndexError):
        seq[3]
    x = fn.randn(4, 2)
    np.testing.assert_array_equal(seq(x)._data, c(b(a(x)))._data)
    d = nn.Tanh()
    assert seq.append(d) is seq and seq[3] is d and len(seq) == 4
    del seq[1]
    assert list(seq) == [a, c, d] and [n for n, _ in seq.named_children()] == ["0", "1", "2"]
    seq[1] = b
    assert list(seq) == [a, b, d]
    named = nn.Sequential(OrderedDict([("fc", a), ("act", b)]))
    assert [n for n, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]
    assert named.fc is a
    with pytest.raises(FreenetError, match="not a Module"):
        nn.Sequential(a, "relu")
    with pytest.raises(FreenetError):
        seq.append(3)


@pytest.mark.parametrize("training", [True, False])
def test_sequential_fuses_batch_norm_and_relu_with_the_same_bits(training, monkeypatch):
    """In training, Sequential runs BatchNorm -> ReLU as one fused op: same output, running
    statistics and gradients, to the bit, as the two modules called one after another."""
    calls = []
    fused_op = F.batch_norm_relu
    monkeypatch.setattr(F, "batch_norm_relu", lambda *a, **k: calls.append(1) or fused_op(*a, **k))
    results = []
    for fused in (True, False):
        fn.manual_seed(5)
        conv, bn, relu = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        seq = nn.Sequential(conv, bn, relu, nn.Flatten(), nn.Linear(4 * 5 * 5, 2)).train(training)
        x = fn.tensor(np.random.default_rng(1).standard_normal((3, 3, 5, 5)).astype(np.float32))
        out = seq(x) if fused else seq[4](seq[3](relu(bn(conv(x)))))
        out.sum().backward()
        assert len(calls) == (1 if fused and training else 0)
        calls.clear()
        results.append([out._data, bn.running_mean._data.copy(), bn.running_var._data.copy()]
                       + [p.grad._data for p in seq.parameters()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("pool", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)])
def test_sequential_pools_before_relu_with_the_same_bits(pool, monkeypatch):
    """Sequential runs ReLU -> MaxPool2d as pool then ReLU: same output and gradient, to the bit,
    with negative windows, ties (at 0 after the ReLU, and exact), NaN and infinities."""
    relu_inputs = []
    relu_forward = nn.ReLU.forward
    monkeypatch.setattr(nn.ReLU, "forward", lambda self, x: relu_inputs.append(x.shape) or relu_forward(self, x))
    rng = np.random.default_rng(2)
    v = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    v[0, 0, :2, :2] = -1.0  # a window of negatives: all zeros after the ReLU
    v[0, 1, :2, :2] = 0.5   # exact ties
    v[1, 0, 0, 0], v[1, 1, 2, 2], v[1, 2, 4, 4] = np.nan, np.inf, -np.inf
    relu, maxpool = nn.ReLU(), nn.MaxPool2d(**pool)
    results = []
    for seq in (True, False):
        x = fn.tensor(v.copy(), requires_grad=True)
        out = nn.Sequential(relu, maxpool)(x) if seq else maxpool(relu(x))
        (out * fn.tensor(np.cos(np.arange(out._data.size, dtype=np.float32)).reshape(out.shape))).sum().backward()
        results.append((out._data, x.grad._data))
    assert relu_inputs == [results[0][0].shape, v.shape]  # Sequential: ReLU after the pool
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_batch_norm_module_residual_and_relu():
    bn = nn.BatchNorm2d(2)
    x, r = fn.randn(3, 2, 2, 2), fn.randn(3, 2, 2, 2)
    for training in (True, False):
        bn.train(training)
        plain = bn(x)
        np.testing.assert_allclose(bn(x, residual=r)._data, (plain + r)._data)
        np.testing.assert_allclose(bn(x, residual=r, relu=True)._data, (plain + r).relu()._data, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(bn(x, relu=True)._data, plain.relu()._data)


def test_module_list_behaviour():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(2)])
    layers.append(nn.Linear(2, 3))
    layers.extend([nn.ReLU(), nn.Tanh()])
    layers += [nn.Identity()]
    assert len(layers) == 6 and isinstance(layers[-1], nn.Identity)
    assert isinstance(layers[1:3], nn.ModuleList) and len(layers[1:3]) == 2

    class Owner(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = layers

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    owner = Owner()
    assert [n for n, _ in owner.named_parameters()][:3] == ["layers.0.weight", "layers.0.bias", "layers.1.weight"]
    assert owner(fn.randn(1, 2)).shape == (1, 3)
    del layers[0]
    assert [n for n, _ in layers.named_children()] == [str(i) for i in range(5)]
    layers.insert(0, nn.Sigmoid())
    assert isinstance(layers[0], nn.Sigmoid) and len(layers) == 6
    with pytest.raises(FreenetError, match="no forward"):
        layers(fn.zeros(1))
    with pytest.raises(FreenetError):
        layers.append("x")


# -- layers --------------------------------------------------------------------------------------

def test_linear_forward_and_backward_match_numpy():
    layer = nn.Linear(3, 2)
    x = fn.randn(4, 3, requires_grad=True)
    out = layer(x)
    W, b = layer.weight._data, layer.bias._data
    np.testing.assert_allclose(out._data, x._data @ W.T + b, rtol=1e-6)
    g = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    out.backward(g)
    np.testing.assert_allclose(layer.weight.grad._data, g.T @ x._data, rtol=1e-5)
    assert layer.weight.grad._data.flags.c_contiguous  # in the weight's memory order, for the optimizer
    np.testing.assert_allclose(layer.bias.grad._data, g.sum(0), rtol=1e-5)
    np.testing.assert_allclose(x.grad._data, g @ W, rtol=1e-5)
    x3 = fn.randn(2, 5, 3)
    np.testing.assert_allclose(layer(x3)._data, x3._data @ W.T + b, rtol=1e-5, atol=1e-6)
    assert layer(fn.randn(3)).shape == (2,)
    no_bias = nn.Linear(3, 2, bias=False)
    assert no_bias.bias is None and len(list(no_bias.parameters())) == 1
    with pytest.raises(FreenetError, match="in_features=3"):
        layer(fn.randn(4, 5))


def test_linear_gradcheck_float64():
    layer = nn.Linear(3, 2, dtype=np.float64)
    x = fn.randn(2, 4, 3, dtype=np.float64, requires_grad=True)
    assert fn.gradcheck(lambda x, w, b: nn.functional.linear(x, w, b), x, layer.weight, layer.bias)


def test_linear_init_is_seeded_and_pytorch_like():
    fn.manual_seed(123)
    a = nn.Linear(64, 32)
    fn.manual_seed(123)
    b = nn.Linear(64, 32)
    c = nn.Linear(64, 32)
    assert np.array_equal(a.weight._data, b.weight._data) and np.array_equal(a.bias._data, b.bias._data)
    assert not np.array_equal(b.weight._data, c.weight._data)
    d = nn.Linear(64, 32, generator=np.random.default_rng(5))
    e = nn.Linear(64, 32, generator=np.random.default_rng(5))
    assert np.array_equal(d.weight._data, e.weight._data)
    big = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)  # kaiming_uniform(a=sqrt(5)) gives U(-1/sqrt(in), 1/sqrt(in))
    assert big.weight.dtype == np.float32 and np.abs(big.weight._data).max() <= bound
    assert abs(big.weight._data.std() - bound / math.sqrt(3)) < 0.02 * bound
    assert np.abs(big.bias._data).max() <= bound


def test_activation_and_shape_modules():
    x = fn.randn(2, 3, 4)
    for module, function in [(nn.ReLU(), F.relu), (nn.Tanh(), F.tanh), (nn.Sigmoid(), F.sigmoid),
                             (nn.GELU(), F.gelu), (nn.LeakyReLU(0.2), lambda v: F.leaky_relu(v, 0.2))]:
        np.testing.assert_array_equal(module(x)._data, function(x)._data)
    np.testing.assert_allclose(nn.GELU("tanh")(x)._data, F.gelu(x, approximate="tanh")._data)
    with pytest.raises(FreenetError):
        nn.GELU("fast")
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Flatten(0, 1)(x).shape == (6, 4)
    assert nn.Identity(3, k=2)(x) is x


def test_loss_modules():
    logits, target = fn.randn(5, 3), fn.tensor([0, 2, 1, 1, 0])
    assert nn.CrossEntropyLoss()(logits, target).item() == F.cross_entropy(logits, target).item()
    assert nn.CrossEntropyLoss(reduction="sum", label_smoothing=0.1)(logits, target).item() == \
        F.cross_entropy(logits, target, reduction="sum", label_smoothing=0.1).item()
    assert nn.MSELoss()(logits, logits * 2).item() == F.mse_loss(logits, logits * 2).item()
    assert nn.NLLLoss()(logits.log_softmax(1), target).item() == F.nll_loss(logits.log_softmax(1), target).item()
    y = fn.rand(5, 3)
    assert nn.BCEWithLogitsLoss()(logits, y).item() == F.binary_cross_entropy_with_logits(logits, y).item()


# -- init ----------------------------------------------------------------------------------------

def test_calculate_gain_and_fans():
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("conv2d") == 1
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    with pytest.raises(FreenetError):
        init.calculate_gain("swish")
    with pytest.raises(FreenetError):
        init.calculate_gain("leaky_relu", "x")
    assert init.calculate_fan_in_and_fan_out(fn.empty(8, 3, 5, 5)) == (75, 200)
    assert init.calculate_fan_in_and_fan_out(fn.empty(4, 6)) == (6, 4)
    with pytest.raises(FreenetError, match="at least 2 dims"):
        init.xavier_uniform_(fn.empty(5))


@pytest.mark.parametrize("fill, std, bound", [
    (lambda t: init.kaiming_uniform_(t, nonlinearity="relu"), math.sqrt(2 / 200), math.sqrt(6 / 200)),
    (lambda t: init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu"), math.sqrt(2 / 300), math.sqrt(6 / 300)),
    (lambda t: init.kaiming_normal_(t, nonlinearity="relu"), math.sqrt(2 / 200), None),
    (lambda t: init.kaiming_normal_(t, a=0.1, mode="fan_out"), math.sqrt(2 / 1.01 / 300), None),
    (lambda t: init.xavier_uniform_(t), math.sqrt(2 / 500), math.sqrt(6 / 500)),
    (lambda t: init.xavier_normal_(t, gain=2.0), 2 * math.sqrt(2 / 500), None),
    (lambda t: init.uniform_(t, -3.0, 3.0), math.sqrt(3), 3.0),
    (lambda t: init.normal_(t, 0.0, 0.5), 0.5, None),
])
def test_init_statistics(fill, std, bound):
    t = fn.empty(300, 200)
    assert fill(t) is t
    assert abs(t._data.std() - std) < 0.02 * std
    assert abs(t._data.mean()) < 0.02 * std
    if bound is not None:
        assert np.abs(t._data).max() <= bound and np.abs(t._data).max() > 0.99 * bound


def test_init_seeding_dtypes_and_constants():
    fn.manual_seed(7)
    a = init.normal_(fn.empty(10), 1.0, 2.0)
    fn.manual_seed(7)
    b = init.normal_(fn.empty(10), 1.0, 2.0)
    assert np.array_equal(a._data, b._data)
    c = init.uniform_(fn.empty(10), generator=np.random.default_rng(0))
    d = init.uniform_(fn.empty(10), generator=np.random.default_rng(0))
    assert np.array_equal(c._data, d._data) and (c._data >= 0).all() and (c._data < 1).all()
    t64 = init.normal_(fn.empty(5, dtype=np.float64))
    assert t64.dtype == np.float64
    strided = fn.zeros(6, 4).T  # not C-contiguous: filled through a temporary
    init.uniform_(strided, 1.0, 2.0)
    assert (strided._data >= 1).all()
    p = nn.Parameter(fn.empty(2, 3))
    assert init.constant_(p, 0.5)._data.tolist() == [[0.5] * 3] * 2
    assert not init.zeros_(p)._data.any() and (init.ones_(p)._data == 1).all()
    assert p.requires_grad and p.is_leaf
    arr = np.empty(4, dtype=np.float32)  # raw arrays are filled too
    init.ones_(arr)
    assert (arr == 1).all()
    with pytest.raises(FreenetError, match="float"):
        init.normal_(fn.zeros(3, dtype=np.int64))
    init.kaiming_uniform_(fn.empty(0, 3))  # empty tensors are left alone


# -- clip_grad_norm_ ---------------------------------------------------------------------------------

def _with_grads(*grads):
    params = []
    for g in grads:
        p = nn.Parameter(fn.zeros(*np.shape(g)))
        p.grad = fn.tensor(np.asarray(g, dtype=np.float32))
        params.append(p)
    return params


def test_clip_grad_norm_values():
    params = _with_grads([3.0, 0.0], [[4.0]])
    total = nn.utils.clip_grad_norm_(params, 1.0)
    assert isinstance(total, fn.Tensor) and total.item() == pytest.approx(5.0)
    coef = 1.0 / (5.0 + 1e-6)
    np.testing.assert_allclose(params[0].grad._data, [3 * coef, 0.0], rtol=1e-6)
    np.testing.assert_allclose(params[1].grad._data, [[4 * coef]], rtol=1e-6)

    params = _with_grads([3.0, 0.0], [[4.0]])
    assert nn.utils.clip_grad_norm_(params, 10.0).item() == pytest.approx(5.0)
    assert params[0].grad._data.tolist() == [3.0, 0.0]  # under the limit: untouched

    params = _with_grads([3.0, -6.0], [[4.0]])
    assert nn.utils.clip_grad_norm_(params, 3.0, norm_type=math.inf).item() == 6.0
    np.testing.assert_allclose(params[0].grad._data, [1.5, -3.0], rtol=1e-6)
    params = _with_grads([1.0, -2.0], [[3.0]])
    assert nn.utils.clip_grad_norm_(params, 100.0, norm_type=1).item() == pytest.approx(6.0)

    lone = _with_grads([0.0, 2.0])[0]
    assert nn.utils.clip_grad_norm_(lone, 1.0).item() == pytest.approx(2.0)  # a single tensor works
    assert nn.utils.clip_grad_norm_([nn.Parameter(fn.zeros(2))], 1.0).item() == 0.0  # no grads
    with pytest.raises(FreenetError, match="nan"):
        nn.utils.clip_grad_norm_(_with_grads([np.nan]), 1.0, error_if_nonfinite=True)

    params = _with_grads([0.5, -3.0])
    nn.utils.clip_grad_value_(params, 1.0)
    assert params[0].grad._data.tolist() == [0.5, -1.0]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_matches_torch(norm_type):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(s).astype(np.float32) for s in [(4, 3), (3,), (2, 2, 2)]]
    ours = _with_grads(*grads)
    theirs = [torch.zeros(g.shape, requires_grad=True) for g in grads]
    for t, g in zip(theirs, grads):
        t.grad = torch.from_numpy(g.copy())
    total = nn.utils.clip_grad_norm_(ours, 0.5, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 0.5, norm_type)
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.grad._data, t.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_fold_batch_norm_matches_eval_mode():
    import freenet as fn
    from freenet import nn

    rng = np.random.default_rng(0)
    for layer, bn, x in ((nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), rng.standard_normal((2, 3, 5, 5))),
                         (nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4), rng.standard_normal((2, 3, 5, 5))),
                         (nn.Linear(6, 4), nn.BatchNorm1d(4), rng.standard_normal((3, 6)))):
        bn.running_mean._data[...] = rng.standard_normal(4)
        bn.running_var._data[...] = rng.random(4) + 0.2
        bn.weight._data[...] = rng.standard_normal(4)
        bn.bias._data[...] = rng.standard_normal(4)
        bn.eval()
        x = fn.tensor(x.astype(np.float32))
        with fn.no_grad():
            expected = bn(layer(x)).numpy()
        w, b = nn.fold_batch_norm(layer, bn)
        assert w.dtype == np.float32 and b.dtype == np.float32
        if isinstance(layer, nn.Conv2d):
            got = fn.nn.functional.conv2d(x, fn.tensor(w), fn.tensor(b), padding=layer.padding).numpy()
        else:
            got = x.numpy() @ w.T + b
        assert np.allclose(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(FreenetError, match="after a layer with 4 outputs"):
        nn.fold_batch_norm(nn.Linear(6, 4), nn.BatchNorm1d(5))
    with pytest.raises(FreenetError, match="no running statistics"):
        nn.fold_batch_norm(nn.Linear(6, 4), nn.BatchNorm1d(4, track_running_stats=False))
