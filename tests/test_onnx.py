"""freenet.onnx.export: the MNIST CNN, Go nets and a strided ResNet run in onnxruntime as in freenet."""

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import freenet as fn  # noqa: E402
from freenet import nn  # noqa: E402
from freenet.cli import main  # noqa: E402
from freenet.errors import FreenetError  # noqa: E402
from freenet.go.net import load_net, new_net, save_net  # noqa: E402
from freenet.nn import functional as F  # noqa: E402
from freenet.onnx import export  # noqa: E402
from freenet.recipes.mnist import build_model  # noqa: E402


class Block(nn.Module):
    """A ResNet basic block: a strided 3x3 conv and a strided 1x1 shortcut when the shape changes."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.layers = nn.Sequential(Block(8, 8, 1), Block(8, 16, 2), Block(16, 32, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.layers(x)
        return self.fc(fn.flatten(self.pool(x), 1))


def random_statistics(model, seed=0):
    """Batch-norm running statistics away from (0, 1), so that the export has to carry them."""
    rng = np.random.default_rng(seed)
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.numpy()[...] = rng.normal(0, 0.5, b.shape)
        elif name.endswith("running_var"):
            b.numpy()[...] = rng.uniform(0.5, 2.0, b.shape)
    return model


def run_both(model, path, shape, batches=(1, 5)):
    """Largest |freenet - onnxruntime| over all outputs, at each batch size; also checks the names."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    worst = 0.0
    for batch in batches:
        x = rng.standard_normal((batch,) + shape).astype(np.float32)
        with fn.no_grad():
            expected = model(fn.tensor(x))
        expected = [expected] if isinstance(expected, fn.Tensor) else [e for e in expected if e is not None]
        got = session.run(None, {"input": x})
        assert len(got) == len(expected)
        for e, g in zip(expected, got):
            assert g.shape == e.shape and g.dtype == np.float32
            worst = max(worst, float(np.abs(g - e.numpy()).max()))
    return session, worst


def test_mnist_cnn(tmp_path):
    fn.manual_seed(0)
    model = build_model()
    assert model.training
    proto = export(model, fn.randn(2, 1, 28, 28), tmp_path / "mnist.onnx")
    assert model.training  # the mode is restored
    model.eval()
    session, worst = run_both(model, tmp_path / "mnist.onnx", (1, 28, 28))
    assert worst <= 1e-4
    assert [o.name for o in session.get_outputs()] == ["output"]
    assert session.get_inputs()[0].shape == ["batch", 1, 28, 28]
    names = {i.name for i in proto.graph.initializer}
    assert {"0.weight", "0.bias", "3.weight", "7.weight", "9.bias"} <= names
    assert {n.op_type for n in proto.graph.node} >= {"Conv", "MaxPool", "Relu", "MatMul", "Reshape"}


@pytest.mark.parametrize("options", [{}, dict(ownership=True, score=True, pooling=True)])
def test_go_net(tmp_path, options):
    net = random_statistics(new_net(9, 3, 16, **options)).eval()
    export(net, np.zeros((2, 18, 9, 9), np.float32), tmp_path / "go.onnx")
    session, worst = run_both(net, tmp_path / "go.onnx", (18, 9, 9))
    assert worst <= 1e-4
    expected = ["policy", "value", "ownership", "score"] if options else ["output0", "output1"]
    assert [o.name for o in session.get_outputs()] == expected
    onnx.checker.check_model(onnx.load(str(tmp_path / "go.onnx")))


def test_resnet_with_strided_shortcuts(tmp_path):
    fn.manual_seed(0)
    model = random_statistics(ResNet()).eval()
    proto = export(model, fn.randn(3, 3, 16, 16), tmp_path / "resnet.onnx")
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Conv") == 9 and "GlobalAveragePool" in ops and ops.count("Add") >= 3
    assert "layers.1.shortcut.0.weight" in {i.name for i in proto.graph.initializer}
    _, worst = run_both(model, tmp_path / "resnet.onnx", (3, 16, 16), batches=(2, 7))
    assert worst <= 1e-4


def test_command_writes_a_checked_model(tmp_path, capsys):
    net = random_statistics(new_net(5, 1, 8, ownership=True))
    save_net(net, str(tmp_path / "net.safetensors"))
    out = tmp_path / "net.onnx"
    assert main(["go", "export-onnx", str(tmp_path / "net.safetensors"), str(out)]) == 0
    assert "outputs policy, value, ownership" in capsys.readouterr().out
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["policy", "value", "ownership"]
    session, worst = run_both(load_net(str(tmp_path / "net.safetensors")), out, (18, 5, 5), batches=(3,))
    assert worst <= 1e-4

    assert main(["go", "export-onnx", str(tmp_path / "missing.safetensors"), str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("freenet: error: ") and "missing.safetensors: no such model file" in err
    with pytest.raises(SystemExit) as info:
        main(["go", "export-onnx", "--help"])
    assert info.value.code == 0 and "go export-onnx" in capsys.readouterr().out


def test_unsupported_op_is_named():
    class Sorts(nn.Module):
        def forward(self, x):
            return x.sort(dim=1).values

    with pytest.raises(FreenetError, match="onnx export: the op 'sort' is not supported"):
        export(Sorts(), fn.randn(2, 3))


def test_slices_elementwise_and_softmax(tmp_path):
    """Smaller ops of the table: basic indexing, scalars on either side, cat, log_softmax, amax."""
    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 6)

        def forward(self, x):
            h = self.fc(x[:, 1:5]).sigmoid() * 2.0 - 1
            h = fn.cat([h, 1 / (h.exp() + 1), x[:, ::2]], dim=1)
            return F.log_softmax(h, dim=1), h.amax(dim=1, keepdim=True), h[:, 0]

    fn.manual_seed(0)
    model = Small()
    export(model, fn.randn(2, 8), tmp_path / "small.onnx")
    _, worst = run_both(model, tmp_path / "small.onnx", (8,), batches=(1, 4))
    assert worst <= 1e-5


def test_tracer_is_off_outside_an_export():
    from freenet import errors

    export(nn.Linear(2, 2), fn.randn(1, 2))
    assert errors.tracer is None
    assert (fn.ones(2) + 1).tolist() == [2.0, 2.0]


def test_in_place_methods_are_followed(tmp_path):
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)

        def forward(self, x):
            y = self.fc(x)
            y.relu_()
            z = y.detach() * 3
            z += y
            return z

    fn.manual_seed(0)
    model = InPlace()
    export(model, fn.randn(2, 3), tmp_path / "inplace.onnx")
    _, worst = run_both(model, tmp_path / "inplace.onnx", (3,), batches=(1, 4))
    assert worst <= 1e-5

    class SetsItems(nn.Module):
        def forward(self, x):
            y = x * 2
            y[:, 0] = 1.0
            return y

    with pytest.raises(FreenetError, match="in-place op '__setitem__' is not supported"):
        export(SetsItems(), fn.randn(2, 3))
