"""freenet.distributed: the shard tree, sharded gradients, and (with the mpi extra) the same weights from
``mpiexec -n K`` for any K, for MNIST, CIFAR-10 (batch norm) and Go self-play, and a killed rank."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import freenet as fn
from freenet import distributed, nn
from freenet.checkpoint import Checkpointer
from freenet.nn import functional as F
from freenet.serialize import weights_sha256

# the mpi extra puts mpiexec beside the Python that installed it, which may not be on PATH
MPIEXEC = shutil.which("mpiexec") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))
try:
    import mpi4py  # noqa: F401
    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False
needs_mpi = pytest.mark.skipif(not (MPIEXEC and HAVE_MPI4PY), reason="the mpi extra is not installed "
                               "(pip install -e '.[mpi]': mpi4py and an MPI with mpiexec)")


# -- the shard tree, without MPI ----------------------------------------------------------------------

@given(n=st.integers(0, 50), shards=st.integers(1, 9))
def test_shard_rows_cover_the_batch_in_order(n, shards):
    rows = distributed.shard_rows(n, shards)
    assert len(rows) == shards and rows[0].start == 0 and rows[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(rows, rows[1:]))
    assert max(r.stop - r.start for r in rows) - min(r.stop - r.start for r in rows) <= 1


@settings(deadline=None)
@given(shards=st.integers(1, 9), size=st.integers(1, 9), seed=st.integers(0, 2**31))
def test_any_split_of_the_shards_gives_the_tree_sum_bit_for_bit(shards, size, seed):
    """What combine_shards does across ranks, done by hand: each rank's maximal subtrees, summed locally,
    complete the same tree as all the leaves in one process."""
    size = min(size, shards)
    rng = np.random.default_rng(seed)
    leaves = {s: rng.standard_normal(5).astype(np.float32) * 10.0 ** rng.integers(-6, 6) for s in range(shards)}
    single = distributed.tree_sum({(s, s + 1): a for s, a in leaves.items()}, 0, shards)
    parts = {}
    for rank in range(size):
        mine = distributed.shard_range(shards, rank, size)
        assert len(mine) >= 1
        for lo, hi in distributed._subtrees(0, shards, mine):
            assert mine.start <= lo < hi <= mine.stop
            parts[(lo, hi)] = distributed.tree_sum({(s, s + 1): leaves[s] for s in mine}, lo, hi)
    assert np.array_equal(distributed.tree_sum(parts, 0, shards), single)


def test_the_tree_is_fixed_by_the_shards():
    a, b, c = np.float32(1e8), np.float32(-1e8), np.float32(1.0)
    parts = {(0, 1): np.array([a]), (1, 2): np.array([b]), (2, 3): np.array([c])}
    assert distributed.tree_sum(parts, 0, 3)[0] == (a + (b + c))  # sum(0,1) + sum(1,3): mid = 1
    assert distributed._subtrees(0, 4, range(0, 2)) == [(0, 2)]
    assert distributed._subtrees(0, 4, range(1, 4)) == [(1, 2), (2, 4)]


def _mlp(seed):
    fn.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


def _batch():
    rng = np.random.default_rng(1)
    return rng.standard_normal((23, 6)).astype(np.float32), fn.from_numpy(rng.integers(0, 3, 23))


def test_one_shard_is_plain_backward_bit_for_bit():
    x, y = _batch()
    model = _mlp(0)
    F.cross_entropy(model(fn.from_numpy(x)), y).backward()
    plain = [p.grad.numpy().copy() for p in model.parameters()], model[1].running_mean.numpy().copy()
    model = _mlp(0)
    loss = distributed.sharded_backward(model, 23, 1, lambda r: F.cross_entropy(model(fn.from_numpy(x[r])), y[r]))
    assert all(np.array_equal(a, p.grad.numpy()) for a, p in zip(plain[0], model.parameters()))
    assert np.array_equal(plain[1], model[1].running_mean.numpy())
    assert np.isfinite(loss)


def test_shards_give_the_mean_gradient_and_every_batch_norm_update():
    """Without dropout and batch norm's batch statistics, the shards' gradient is the whole batch's
    (up to rounding); batch norm takes one update per shard, in shard order."""
    x, y = _batch()
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    F.cross_entropy(model(fn.from_numpy(x)), y).backward()
    whole = [p.grad.numpy().copy() for p in model.parameters()]
    loss, correct = distributed.sharded_backward(
        model, 23, 4, lambda r: (F.cross_entropy(model(fn.from_numpy(x[r])), y[r]), 1.0 * (r.stop - r.start)))
    assert correct == 23
    for a, p in zip(whole, model.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), a, rtol=1e-5, atol=1e-7)
    model = _mlp(0)
    distributed.sharded_backward(model, 23, 4, lambda r: F.cross_entropy(model(fn.from_numpy(x[r])), y[r]))
    bn = model[1]
    assert int(bn.num_batches_tracked.numpy()) == 4
    expected = np.zeros(16)
    h = _mlp(0)[0](fn.from_numpy(x)).numpy().astype(np.float64)
    for r in distributed.shard_rows(23, 4):
        expected = 0.9 * expected + 0.1 * h[r].mean(0)
    np.testing.assert_allclose(bn.running_mean.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_batch_norm_needs_rows_in_every_shard():
    model = _mlp(0)
    x, y = _batch()
    with pytest.raises(fn.FreenetError, match="batch norm needs rows in every shard"):
        distributed.sharded_backward(model, 3, 4, lambda r: F.cross_entropy(model(fn.from_numpy(x[r])), y[r]))


def test_one_process_needs_no_mpi(monkeypatch):
    for v in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        monkeypatch.delenv(v, raising=False)
    assert not distributed.launched_by_mpi()
    assert distributed.world().size == 1 and distributed.world().main


def test_more_processes_than_shards_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(distributed, "_world", distributed.World())
    monkeypatch.setattr(distributed._world, "size", 3)
    with pytest.raises(fn.FreenetError, match="3 processes but 2 shards"):
        distributed.check_shards(2)


def test_an_mpi_launch_without_mpi4py_says_what_to_install(monkeypatch):
    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setattr(distributed, "_world", None)
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(fn.FreenetError, match=r"freenet\[mpi\]"):
        distributed.world()


# -- mpiexec -n K --------------------------------------------------------------------------------------

def _freenet(args, processes=None, cwd=None, timeout=600, env=None):
    command = [sys.executable, "-m", "freenet", *args]
    if processes is not None:
        command = [MPIEXEC, "-n", str(processes), *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})})


def _sha(summary):
    return json.loads(summary.read_text())["sha256"]


MNIST = ["train", "mnist", "--epochs", "1", "--quiet", "--shards", "4"]


@needs_mpi
def test_mnist_weights_are_the_same_for_any_number_of_processes(tmp_path):
    hashes = {}
    for k in (None, 1, 2, 4):
        out = _freenet([*MNIST, "--threads", "1", "--out", str(tmp_path / f"{k}.safetensors"),
                        "--json", str(tmp_path / f"{k}.json")], processes=k)
        assert out.returncode == 0, out.stderr
        hashes[k] = _sha(tmp_path / f"{k}.json")
        assert out.stdout.count("weights in") == 1  # printed by rank 0 alone
    assert len(set(hashes.values())) == 1, hashes
    assert json.loads((tmp_path / "2.json").read_text())["processes"] == 2


@needs_mpi
def test_cifar10_with_batch_norm_is_the_same_on_two_processes(tmp_path):
    rng = np.random.default_rng(0)
    from freenet.data.cifar import TEST_FILES, TRAIN_FILES
    for name in TRAIN_FILES + TEST_FILES:
        labels = rng.integers(0, 10, 20, dtype=np.uint8)
        pixels = rng.integers(0, 255, (20, 3 * 32 * 32), dtype=np.uint8)
        (tmp_path / name).write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())
    args = ["train", "cifar10", "--data", str(tmp_path), "--epochs", "1", "--batch-size", "32", "--blocks", "1",
            "--width", "4", "--quiet", "--shards", "2", "--threads", "1"]
    for k in (None, 2):
        out = _freenet([*args, "--out", str(tmp_path / f"{k}.st"), "--json", str(tmp_path / f"{k}.json")],
                       processes=k)
        assert out.returncode == 0, out.stderr
    a, b = fn.load(tmp_path / "None.st"), fn.load(tmp_path / "2.st")
    assert any("running_mean" in name for name in a)
    assert weights_sha256(a) == weights_sha256(b)


GO = ["go", "train", "--size", "5", "--blocks", "1", "--filters", "8", "--games", "8", "--parallel", "4",
      "--playouts", "12", "--steps", "3", "--batch-size", "16", "--generations", "2", "--quiet", "--shards", "4"]


def _go_weights(run):
    return weights_sha256(Checkpointer(os.path.join(run, "checkpoints")).latest().arrays)


@needs_mpi
def test_go_selfplay_nets_are_the_same_for_any_number_of_processes(tmp_path):
    hashes = {}
    for k in (None, 2, 4):
        out = _freenet([*GO, "--dir", str(tmp_path / f"run{k}")], processes=k)
        assert out.returncode == 0, out.stderr
        hashes[k] = _go_weights(tmp_path / f"run{k}")
    assert len(set(hashes.values())) == 1, hashes
    from freenet.go.selfplay import load_games
    games = [load_games(tmp_path / f"run{k}" / "games" / "gen-0002.npz") for k in (None, 4)]
    assert [g.moves for g in games[0]] == [g.moves for g in games[1]]


@needs_mpi
def test_an_error_on_one_rank_ends_the_job(tmp_path):
    out = _freenet([*MNIST, "--data", str(tmp_path / "missing")], processes=2, timeout=120)
    assert out.returncode != 0
    assert "freenet: error:" in out.stderr


def _kill_rank_once(args, ready, tmp_path):
    """Runs ``freenet ARGS`` under ``mpiexec -n 2``, kills rank 1 with SIGKILL once ``ready()``, and returns
    what the launcher said; the job must end within 30 s, failed."""
    tag = f"freenet-test-{os.getpid()}-{time.time()}"
    job = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-m", "freenet", *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, "FREENET_TEST_TAG": tag})
    try:
        deadline = time.time() + 300
        while not ready() and time.time() < deadline:
            assert job.poll() is None, job.communicate()
            time.sleep(0.05)
        os.kill(_rank_pid(tag, rank=1), signal.SIGKILL)
        killed = time.time()
        stdout, stderr = job.communicate(timeout=60)
        assert time.time() - killed < 30
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0
    said = stdout + stderr  # the launcher's report of the dead rank
    assert "signal 9" in said or "Killed" in said or "KILLED" in said, said
    return said


@needs_mpi
def test_a_killed_rank_ends_the_job_and_training_resumes_to_the_same_weights(tmp_path):
    unbroken = _freenet([*MNIST, "--out", str(tmp_path / "u.st"), "--json", str(tmp_path / "u.json")])
    assert unbroken.returncode == 0, unbroken.stderr
    checkpoints = tmp_path / "ck"
    args = [*MNIST, "--threads", "1", "--checkpoint-every", "5", "--checkpoint-dir", str(checkpoints),
            "--out", str(tmp_path / "k.st"), "--json", str(tmp_path / "k.json")]
    _kill_rank_once(args, lambda: list(checkpoints.glob("checkpoint-*.safetensors")), tmp_path)
    assert not (tmp_path / "k.st").exists()
    resumed = _freenet([*args, "--resume", str(checkpoints)], processes=1)  # another K: 1
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert _sha(tmp_path / "k.json") == _sha(tmp_path / "u.json")


@needs_mpi
def test_a_killed_rank_ends_self_play_and_the_same_command_resumes_to_the_same_nets(tmp_path):
    go = [a if a != "2" or GO[i - 1] != "--generations" else "3" for i, a in enumerate(GO)]  # 3 generations
    unbroken = _freenet([*go, "--dir", str(tmp_path / "u")], processes=2)
    assert unbroken.returncode == 0, unbroken.stderr
    run = tmp_path / "k"
    _kill_rank_once([*go, "--dir", str(run)], lambda: (run / "checkpoints").is_dir() and any(
        (run / "checkpoints").glob("checkpoint-*.safetensors")), tmp_path)
    assert json.loads((run / "state.json").read_text())["generation"] < 3
    again = _freenet([*go, "--dir", str(run)], processes=2)
    assert again.returncode == 0, again.stderr
    assert _go_weights(run) == _go_weights(tmp_path / "u")


def _rank_pid(tag, rank):
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        except OSError:
            continue
        if env.get(b"FREENET_TEST_TAG") == tag.encode() and env.get(b"PMI_RANK") == str(rank).encode():
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"freenet" in f.read():
                    return int(pid)
    raise AssertionError(f"no process of rank {rank}")
