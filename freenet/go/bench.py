"""Speed measurements for docs/go.md (``freenet go bench``): rules, net evaluations, search, and Leela
Zero's own CPU path on the same net."""

import os
import re
import subprocess
import tempfile
import time

import numpy as np

from freenet.go.board import Board


def rules_speed(size=9, seconds=2.0, seed=0):
    """(moves/s playing random games through Board: legal_mask + play, moves/s inside Numba playouts)."""
    rng = np.random.default_rng(seed)
    warm = Board(size)
    warm.play(int(np.flatnonzero(warm.legal_mask())[0]))  # compile first
    moves, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        b = Board(size)
        while not b.game_over and b.move_number < 3 * size * size:
            legal = np.flatnonzero(b.legal_mask()[:-1])
            b.play(rng.choice(legal) if len(legal) and rng.random() > 0.02 else b.pass_move)
            moves += 1
    python_rate = moves / (time.perf_counter() - start)
    b = Board(size)
    b.playout(0)  # compile
    count, played, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        count += 1
        played += b.playout_moves(count)[1]
    return python_rate, played / (time.perf_counter() - start)


def net_speed(net, batch, seconds=3.0, repeats=5):
    """Net evaluations per second at ``batch`` (eval mode, no gradients): the median of ``repeats`` timings."""
    from freenet.go.net import Evaluator
    ev = Evaluator(net)
    N = net.config.size
    x = np.random.default_rng(0).random((batch, 18, N, N)).astype(np.float32)
    ev.raw(x)
    ev.raw(x)
    times = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / repeats:
            ev.raw(x)
            n += 1
        times.append((time.perf_counter() - start) / n)
    return batch / float(np.median(times))


def search_speed(net, batch, playouts=400):
    """Playouts per second of one MCTS (net evaluations plus the tree) from the empty board."""
    from freenet.go.mcts import MCTS, SearchConfig
    from freenet.go.net import Evaluator
    s = MCTS(Evaluator(net), SearchConfig(batch=batch))
    s.set_board(Board(net.config.size))
    s.run(8)
    s.set_board(Board(net.config.size))
    start = time.perf_counter()
    s.run(playouts)
    return playouts / (time.perf_counter() - start)


def leelaz_speed(net, leelaz, threads=1, visits=400):
    """Leela Zero's nodes per second (``leelaz --benchmark --cpu-only``) on ``net`` exported to its format."""
    from freenet.go.lz_weights import export_lz
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "net.txt")
        note = export_lz(net, path)
        if note:
            raise ValueError(note)
        proc = subprocess.run([leelaz, "--benchmark", "--cpu-only", "-t", str(threads), "-v", str(visits), "-w", path],
                              capture_output=True, text=True, timeout=1800)
    m = re.search(r"(\d+) visits, \d+ nodes, (\d+) playouts, (\d+) n/s", proc.stdout + proc.stderr)
    if not m:
        raise ValueError(f"could not read leelaz's benchmark output: {(proc.stdout + proc.stderr)[-500:]}")
    return float(m.group(3))


def train_speed(net, batch=256, steps=5):
    """Training positions per second (forward + backward + SGD step at ``batch``), the median step."""
    import freenet as fn
    from freenet.go.train import make_optimizer
    from freenet.nn import functional as F
    N = net.config.size
    rng = np.random.default_rng(0)
    x = fn.from_numpy((rng.random((batch, 18, N, N)) < 0.3).astype(np.float32))
    p = rng.random((batch, N * N + 1)).astype(np.float32)
    p = fn.from_numpy(p / p.sum(1, keepdims=True))
    z = fn.from_numpy(rng.choice([-1.0, 1.0], size=batch).astype(np.float32))
    opt = make_optimizer(net, 0.01, 0.9, 1e-4)
    net.train()
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        logits, v = net(x)
        loss = F.cross_entropy(logits, p) + F.mse_loss(v, z)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    net.eval()
    return batch / float(np.median(times[1:]))
