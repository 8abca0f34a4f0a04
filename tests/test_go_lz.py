"""Leela Zero's v1 weight format: round trips, bad files, and agreement with Debian's leelaz itself."""

import gzip
import io
import re
import shutil
import subprocess

import numpy as np
import pytest

import freenet as fn
from freenet.errors import FreenetError
from freenet.go.gtp import Engine
from freenet.go.lz_weights import export_lz, import_lz
from freenet.go.net import new_net

LEELAZ = shutil.which("leelaz") or (shutil.which("/usr/games/leelaz"))


@pytest.fixture(autouse=True)
def one_thread():
    """The nets here are tiny: one thread (a busy shared machine makes a thread pool slower)."""
    before = fn.get_num_threads()
    fn.set_num_threads(1)
    yield
    fn.set_num_threads(before)


def random_net(size=19, blocks=1, filters=16, seed=0):
    """A net with random weights and batch-norm statistics, scaled so that its policy is peaked and its
    value is far from constant (a comparison of near-uniform outputs would prove little)."""
    net = new_net(size, blocks, filters, seed=seed)
    rng = np.random.default_rng(seed)
    for _, m in net.named_modules():
        if type(m).__name__ == "BatchNorm2d":
            c = m.num_features
            m.weight._data[...] = rng.uniform(0.5, 1.5, c)
            m.bias._data[...] = rng.normal(0, 0.2, c)
            m.running_mean._data[...] = rng.normal(0, 0.2, c)
            m.running_var._data[...] = rng.uniform(0.5, 2, c)
    net.value_bn.bias._data[...] = 1.0  # keep the heads' ReLUs alive
    net.policy_bn.bias._data[...] = 1.0
    net.policy_fc.weight._data[...] *= 3
    net.value_fc1.weight._data[...] *= 4
    net.value_fc2.weight._data[...] *= 4
    net.eval()
    return net


def outputs(net, x):
    with fn.no_grad():
        p, v = net(fn.from_numpy(x))
    return p.numpy(), v.numpy()


@pytest.mark.parametrize("size,gz", [(19, False), (9, True)])
def test_export_import_round_trip(tmp_path, size, gz):
    net = random_net(size, blocks=2, filters=8)
    path = tmp_path / ("w.txt.gz" if gz else "w.txt")
    note = export_lz(net, str(path))
    assert (note is None) == (size == 19)
    lines = (gzip.open(path, "rt") if gz else open(path)).read().split("\n")
    assert lines[0] == "1" and len(lines) - 1 == 19 + 8 * 2
    again = import_lz(str(path))
    assert again.config == net.config
    x = np.random.default_rng(1).random((3, 18, size, size)).astype(np.float32)
    (p1, v1), (p2, v2) = outputs(net, x), outputs(again, x)
    assert np.abs(p1 - p2).max() < 1e-3 and np.abs(v1 - v2).max() < 1e-5


def test_bad_weight_files(tmp_path):
    good = tmp_path / "good.txt"
    export_lz(random_net(9, 1, 4), str(good))
    text = good.read_text()
    lines = text.split("\n")
    cases = {
        "missing": None,
        "empty": "",
        "version": "2\n" + "\n".join(lines[1:]),
        "garbage": "hello world\n",
        "truncated-lines": "\n".join(lines[:10]) + "\n",
        "truncated-mid-line": text[: len(text) // 2],
        "not-a-number": "\n".join(lines[:3] + ["1.0 x 2.0"] + lines[4:]),
        "short-line": "\n".join(lines[:2] + [" ".join(lines[2].split()[:-1])] + lines[3:]),
        "nan": "\n".join(lines[:3] + [" ".join(["nan"] * len(lines[3].split()))] + lines[4:]),
        "binary": None,
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.txt"
        if name == "binary":
            path.write_bytes(bytes(range(256)) * 4)
        elif content is not None:
            path.write_text(content)
        with pytest.raises(FreenetError) as info:
            import_lz(str(path))
        assert str(path) in str(info.value) or "no such" in str(info.value), name


def heatmaps(text):
    """(grid, pass, winrate) for each Leela Zero heatmap block in ``text``."""
    out = []
    for block in re.findall(r"((?:(?: *\d+ ){19}\n){19}pass: \d+\nwinrate: [\d.]+)", text):
        lines = block.split("\n")
        out.append((np.array([list(map(int, l.split())) for l in lines[:19]]), int(lines[19].split()[1]),
                    float(lines[20].split()[1])))
    return out


@pytest.mark.skipif(LEELAZ is None, reason="leelaz not installed (Debian package leela-zero)")
def test_leelaz_agrees_with_freenet(tmp_path):
    net = random_net(19, blocks=2, filters=16, seed=3)
    path = tmp_path / "random.txt"
    assert export_lz(net, str(path)) is None
    script = ["heatmap", "play b q16", "play w d4", "play b c3", "heatmap", "heatmap 5", "play w pass",
              "play b r3", "heatmap 3", "heatmap 6", "heatmap average", "quit"]
    proc = subprocess.run([LEELAZ, "--gtp", "--cpu-only", "--noponder", "-t", "1", "-w", str(path)],
                          input="\n".join(script) + "\n", text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = heatmaps(proc.stderr)
    engine = Engine(net, out=io.StringIO())
    ours = []
    for line in script:
        reply = engine.handle(line)
        assert reply.startswith("="), (line, reply)
        if line.startswith("heatmap"):
            ours.extend(heatmaps(reply[2:] + "\n"))
    assert len(theirs) == len(ours) == 6
    winrates = set()
    for k, ((g1, p1, w1), (g2, p2, w2)) in enumerate(zip(ours, theirs)):
        assert np.abs(g1 - g2).max() <= 1, (k, np.abs(g1 - g2).max())
        assert abs(p1 - p2) <= 1 and abs(w1 - w2) < 2e-3, (k, p1, p2, w1, w2)
        winrates.add(round(w1, 3))
    assert len(winrates) >= 3  # the value differs between positions and symmetries
    assert max(g.max() for g, _, _ in ours) >= 50  # and the policy is peaked somewhere
