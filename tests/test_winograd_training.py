"""Training with Winograd convolutions follows the direct path's curve: the same steps from the same seed,
once with freenet's rule (Winograd on every 3x3 stride-1 conv with >= 8 input channels) and once with
``conv.WINO_TILE = 0`` (every conv direct). The two runs must differ in their bits (Winograd did run), and
their losses must stay within rounding noise of each other: no further apart than the direct path is
from itself when its initial weights move by one float32 ulp (short runs like these amplify any
rounding difference, so that is the scale to compare with), and far closer than a run from another
seed. The full-length
curves are measured by benchmarks/winograd_curves.py (docs/benchmarks.md)."""

import os

import numpy as np
import pytest

import freenet as fn
from freenet import optim
from freenet.data import DataLoader, MNIST
from freenet.go.net import new_net
from freenet.go.train import ReplayBuffer, make_optimizer, sgf_records
from freenet.kernels import conv
from freenet.nn import functional as F
from freenet.recipes import mnist

GAMES = os.path.join(os.path.dirname(__file__), "..", "docs", "go-match", "level1", "seed0")


@pytest.fixture
def path_switch():
    before = conv.WINO_TILE

    def use(path):
        conv.WINO_TILE = None if path == "winograd" else 0
    yield use
    conv.WINO_TILE = before


def _nudge(model):
    """Every parameter moved by one ulp: a perturbation as small as float32 rounding."""
    for p in model.parameters():
        a = p.numpy()
        a[...] = np.nextafter(a, np.float32(np.inf))


def _mnist_run(seed, nudge=False, steps=30):
    """Per-step losses and final weights of the MNIST CNN after ``steps`` SGD steps on the bundled sample
    (a learning rate at which the run is stable: at 0.05 its loss spikes amplify any rounding difference)."""
    fn.manual_seed(seed)
    model = mnist.build_model()
    if nudge:
        _nudge(model)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(MNIST(None, train=True), batch_size=64, shuffle=True, seed=0)
    losses = []
    for images, labels in loader:
        loss = F.cross_entropy(model(fn.from_numpy(mnist.standardize(images.numpy()))), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if len(losses) == steps:
            break
    return np.array(losses), np.concatenate([p.numpy().ravel() for p in model.parameters()])


def _go_run(seed, buffer, nudge=False, steps=20):
    """Per-step (policy + value) losses and final weights of a 9x9 2x16 net trained on real games."""
    net = new_net(9, 2, 16, seed=seed)
    if nudge:
        _nudge(net)
    opt = make_optimizer(net, 0.02, 0.9, 1e-4)
    rng = np.random.default_rng(0)
    losses = []
    net.train()
    for _ in range(steps):
        batch = buffer.sample(32, rng)
        x, p, z = batch["planes"], batch["policy"], batch["value"]
        logits, v = net(fn.from_numpy(x))
        loss = F.cross_entropy(logits, fn.from_numpy(p)) + F.mse_loss(v, fn.from_numpy(z))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses), np.concatenate([p.numpy().ravel() for p in net.parameters()])


RUNS = (("winograd", 0, False), ("direct", 0, False), ("direct", 0, True), ("winograd", 1, False))


def _assert_same_curve(runs):
    """Runs: RUNS' (losses, weights). The loss gaps are the largest over the steps."""
    (wino, w_wino), (direct, w_direct), (nudged, _), (other_seed, _) = runs
    assert not np.array_equal(w_wino, w_direct), "the direct run computed the same bits: no Winograd ran"
    path_gap = np.abs(wino - direct).max()
    ulp_gap = np.abs(direct - nudged).max()
    seed_gap = np.abs(wino - other_seed).max()
    assert path_gap <= max(10 * ulp_gap, 1e-4 * np.abs(wino).max()), (path_gap, ulp_gap)
    assert path_gap < 0.05 * seed_gap, (path_gap, seed_gap)


def test_mnist_losses_with_winograd_follow_the_direct_path(path_switch):
    runs = []
    for path, seed, nudge in RUNS:
        path_switch(path)
        runs.append(_mnist_run(seed, nudge))
    _assert_same_curve(runs)


def test_go_losses_with_winograd_follow_the_direct_path(path_switch):
    buffer = ReplayBuffer(9)
    buffer.add(sgf_records(GAMES, 9, log=lambda *a: None)[0])
    runs = []
    for path, seed, nudge in RUNS:
        path_switch(path)
        runs.append(_go_run(seed, buffer, nudge))
    _assert_same_curve(runs)


def test_direct_switch_takes_every_convolution_off_winograd(path_switch):
    g = conv._geometry((2, 16, 9, 9), (16, 16, 3, 3), 1, 1, 1, 1)
    path_switch("winograd")
    assert conv._winograd(g)
    path_switch("direct")
    assert not conv._winograd(g)
