"""Every workload of the suite: its name, what it measures, how to build one step for a framework.

A workload's ``make(fw)`` returns a callable that runs one step (one conv call, one training step, one
inference batch, one tiny graph) on framework ``fw`` (see ``peers.Framework``), or raises
``Unavailable`` with the reason. Inputs are fixed random arrays made with NumPy, so every framework
gets the same numbers. ``cost`` (``costs.Cost``) is the work per step; ``items`` what one step
processes (images, positions) for throughput figures.

``size="tiny"`` shrinks every workload (same code, smaller shapes) for the tests.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from benchmarks import costs, models, spec
from benchmarks.peers import Unavailable

GROUPS = ("kernel", "network", "engine")


@dataclass
class Workload:
    name: str
    group: str                 # kernel | network | engine
    title: str
    make: Callable             # framework -> step()
    cost: Optional[costs.Cost] = None
    items: int = 1             # images or positions per step
    train: bool = False        # a training step: also probed for peak memory and time to first step
    quick: bool = False        # part of --quick
    layout_matters: bool = True  # conv/net: worth timing torch channels_last as well
    freenet_layouts: bool = False  # conv kernels: time freenet with channels-last inputs as well
    meta: dict = field(default_factory=dict)

    def gflops(self, seconds):
        return None if self.cost is None or not self.cost.flops else self.cost.flops / seconds / 1e9


# ---------------------------------------------------------------------------------------------- frameworks

def _lib(fw):
    """(framework module, nn, functional, optim) for freenet or torch, else Unavailable."""
    if fw.lib == "freenet":
        import freenet
        from freenet import nn, optim
        from freenet.nn import functional as F
        return freenet, nn, F, optim
    if fw.lib == "torch":
        import torch
        from torch import nn, optim
        from torch.nn import functional as F
        return torch, nn, F, optim
    raise Unavailable(f"the suite has no {fw.lib} implementation of this workload")


def _tensor(fw, array, requires_grad=False, weight=False):
    """A framework tensor holding ``array`` (on the framework's device, in its memory format). freenet's
    channels-last variant lays out activations (not a ``weight``: its kernels take OIHW filters)."""
    T = _lib(fw)[0]
    if fw.lib == "freenet":
        if fw.channels_last and array.ndim == 4 and not weight:  # NHWC memory under the NCHW shape
            array = np.ascontiguousarray(array.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        return T.tensor(array, requires_grad=requires_grad)
    t = T.tensor(array, device=fw.device)
    if fw.channels_last and t.ndim == 4:
        t = t.contiguous(memory_format=T.channels_last)
    return t.requires_grad_(requires_grad)


def _model(fw, build):
    T, nn, _, _ = _lib(fw)
    T.manual_seed(0)
    model = build(nn)
    if fw.lib == "torch":
        model = model.to(fw.device)
        if fw.channels_last:
            model = model.to(memory_format=T.channels_last)
    return model


def _synced(fw, step):
    """On a GPU, a step is only done when the device is: wait for it, so that timings are real."""
    if fw.lib == "torch" and fw.device != "cpu":
        import torch

        def synced():
            step()
            torch.cuda.synchronize()
        return synced
    return step


def _no_layout(fw, what):
    if fw.channels_last:
        raise Unavailable(f"channels_last does not apply to {what}")


# ---------------------------------------------------------------------------------------------- kernels

def conv_step(n, c, h, k, backward):
    def make(fw):
        T, _, F, _ = _lib(fw)
        rng = np.random.default_rng(0)
        x = _tensor(fw, rng.standard_normal((n, c, h, h), dtype=np.float32), backward)
        w = _tensor(fw, (rng.standard_normal((k, c, 3, 3), dtype=np.float32) / np.sqrt(9 * c)).astype(np.float32),
                    backward, weight=True)
        b = _tensor(fw, rng.standard_normal(k, dtype=np.float32), backward)
        gy = _tensor(fw, rng.standard_normal((n, k, h, h), dtype=np.float32))
        if fw.lib == "torch" and fw.channels_last:
            w = w.detach().contiguous(memory_format=T.channels_last).requires_grad_(backward)

        if not backward:
            def step():
                F.conv2d(x, w, b, padding=1)
        else:
            def step():
                x.grad = w.grad = b.grad = None
                F.conv2d(x, w, b, padding=1).backward(gy)
        return _synced(fw, step)
    return make


# ---------------------------------------------------------------------------------------------- networks

def mnist_train_step(batch):
    def make(fw):
        _, nn, F, optim = _lib(fw)
        rng = np.random.default_rng(0)
        x = _tensor(fw, rng.random((batch, 1, 28, 28), dtype=np.float32))
        y = _tensor(fw, rng.integers(0, 10, batch))
        model = _model(fw, models.mnist_cnn)
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return _synced(fw, step)
    return make


def _go_inputs(fw, batch, board):
    rng = np.random.default_rng(0)
    x = (rng.random((batch, spec.GO_PLANES, board, board)) < 0.3).astype(np.float32)
    logits = rng.standard_normal((batch, board * board + 1)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    z = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), (batch, 1))
    return _tensor(fw, x), _tensor(fw, probs.astype(np.float32)), _tensor(fw, z)


def _freenet_go_net(net):
    """freenet's own GoNet for the spec ``net`` (the same parameters as ``models.go_net``, tested)."""
    from freenet.go.net import new_net
    return new_net(net["board"], net["blocks"], net["filters"], net.get("value_hidden"))


def go_train_step(net, batch):
    """One SGD step. freenet: its ``GoNet``, the net ``freenet go train`` trains (same architecture as
    ``models.go_net``; its blocks end in one fused batch norm + residual add + ReLU)."""
    def make(fw):
        _, nn, F, optim = _lib(fw)
        x, pi, z = _go_inputs(fw, batch, net["board"])
        if fw.lib == "freenet":
            model = _freenet_go_net(net)
            z = z.reshape(-1)  # GoNet's value is (B,)
        else:
            model = _model(fw, lambda nn: models.go_net(nn, **net))
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)

        def step():
            policy, value = model(x)
            loss = F.cross_entropy(policy, pi) + F.mse_loss(value, z)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return _synced(fw, step)
    return make


def go_infer_step(net, batch):
    """PyTorch: the eager model in eval mode under no_grad. freenet: ``GoNet.inference()``, the path its
    tree search uses (batch norm folded, filters transformed once, no autograd), same architecture."""
    def make(fw):
        T, nn, F, optim = _lib(fw)
        if fw.lib == "freenet":
            planes = _go_inputs(fw, batch, net["board"])[0].numpy()
            plan = _freenet_go_net(net).inference()
            return lambda: plan(planes)
        x, _, _ = _go_inputs(fw, batch, net["board"])
        model = _model(fw, lambda nn: models.go_net(nn, **net))
        model.eval()

        def step():
            with T.no_grad():
                policy, value = model(x)
            return policy, value
        return _synced(fw, step)
    return make


def char_gpt_train_step(gpt, batch):
    """One AdamW step of ``models.char_gpt`` (the same model on both sides): (batch, block) random int64
    tokens, next-token cross-entropy over the (batch*block, vocab) logits against random targets."""
    def make(fw):
        _, nn, F, optim = _lib(fw)
        rng = np.random.default_rng(0)
        x = _tensor(fw, rng.integers(0, gpt["vocab"], (batch, gpt["block"])))
        y = _tensor(fw, rng.integers(0, gpt["vocab"], batch * gpt["block"]))
        model = _model(fw, lambda nn: models.char_gpt(nn, **gpt))
        opt = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

        def step():
            loss = F.cross_entropy(model(x).view(-1, gpt["vocab"]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return _synced(fw, step)
    return make


# ---------------------------------------------------------------------------------------------- engine

def tiny_graph(fw):
    """Two ops on 1-element tensors, forward + backward: ``(a * b + a).sum().backward()``."""
    _no_layout(fw, "the engine workloads")
    a = _tensor(fw, np.array([1.5], dtype=np.float32), True)
    b = _tensor(fw, np.array([2.0], dtype=np.float32), True)

    def step():
        a.grad = b.grad = None
        (a * b + a).sum().backward()
    return _synced(fw, step)


def matmul64_graph(n=64):
    def make(fw):
        """``(x @ w).relu().sum()`` on 64x64 matrices, forward + backward."""
        _no_layout(fw, "the engine workloads")
        rng = np.random.default_rng(0)
        x = _tensor(fw, rng.standard_normal((n, n), dtype=np.float32), True)
        w = _tensor(fw, rng.standard_normal((n, n), dtype=np.float32), True)

        def step():
            x.grad = w.grad = None
            (x @ w).relu().sum().backward()
        return _synced(fw, step)
    return make


# ---------------------------------------------------------------------------------------------- the list

QUICK_CONVS = ("go9-b1", "go9-b256", "go19-b64")
TINY_NET = dict(board=5, blocks=1, filters=4, value_hidden=8)
TINY_GPT = dict(vocab=11, block=8, embed=16, heads=2, layers=1)


def all_workloads(size="full"):
    """name -> Workload, in the order the suite runs them. ``size="tiny"`` for the tests."""
    tiny = size == "tiny"
    out = {}

    def add(w):
        out[w.name] = w

    for name, (n, c, h, k, what) in spec.CONV_SHAPES.items():
        if tiny:
            n, c, h, k = 2, min(c, 3), 5, 4
        for backward in (False, True):
            part = "fwd+bwd" if backward else "fwd"
            add(Workload(f"conv/{name}/{part}", "kernel", f"conv 3x3 {name} (N={n} C={c} {h}x{h} K={k}) {part}: {what}",
                         conv_step(n, c, h, k, backward), costs.conv_cost(n, c, h, k, backward), items=n,
                         quick=name in QUICK_CONVS, freenet_layouts=True,
                         meta=dict(shape=[n, c, h, h, k], backward=backward)))

    mb = 4 if tiny else spec.MNIST_BATCH
    add(Workload(f"net/mnist-cnn/train-b{spec.MNIST_BATCH}", "network", f"mnist-cnn training step, batch {mb}",
                 mnist_train_step(mb), costs.mnist_cnn_cost(mb, train=True), items=mb, train=True, quick=True,
                 meta=dict(net="mnist-cnn", batch=mb, train=True)))
    for net_name, net in spec.GO_NETS.items():
        arch = TINY_NET if tiny else net
        batch = 4 if tiny else spec.GO_TRAIN_BATCH[net_name]
        add(Workload(f"net/{net_name}/train-b{spec.GO_TRAIN_BATCH[net_name]}", "network",
                     f"{net_name} training step, batch {batch}", go_train_step(arch, batch),
                     costs.go_net_cost(batch, True, **arch), items=batch, train=True, quick=net_name == "go9-6x64",
                     meta=dict(net=net_name, batch=batch, train=True)))
        for b in spec.GO_INFER_BATCHES:
            bb = min(b, 2) if tiny else b
            add(Workload(f"net/{net_name}/infer-b{b}", "network", f"{net_name} inference (eval; freenet's inference path), batch {bb}",
                         go_infer_step(arch, bb), costs.go_net_cost(bb, False, **arch), items=bb,
                         quick=net_name == "go9-6x64" or b == 1, meta=dict(net=net_name, batch=bb, train=False)))

    gpt = TINY_GPT if tiny else spec.CHAR_GPT
    gb = 2 if tiny else spec.CHAR_GPT_BATCH
    add(Workload(f"net/char-gpt/train-b{spec.CHAR_GPT_BATCH}", "network",
                 f"char-gpt training step (AdamW), batch {gb} x {gpt['block']} tokens", char_gpt_train_step(gpt, gb),
                 costs.char_gpt_cost(gb, True, **gpt), items=gb * gpt["block"], train=True, layout_matters=False,
                 meta=dict(net="char-gpt", batch=gb, train=True, items="tokens", **gpt)))

    add(Workload("engine/tiny-graph", "engine", "tiny graph: 2 ops on 1-element tensors, forward + backward",
                 tiny_graph, quick=True, layout_matters=False))
    add(Workload("engine/matmul64-relu-sum", "engine", "64x64 matmul + relu + sum, forward + backward",
                 matmul64_graph(8 if tiny else 64), quick=True, layout_matters=False))
    return out
