"""Hostile checkpoints, data files and output paths (the issue on hostile inputs; found by a mutation fuzzer).

A checkpoint with a valid checksum but a malformed state, a FIFO or a folder among the checkpoints, IDX and
CIFAR-10 files that lie about their sizes or inflate without end, and outputs that cannot be written: each
is a ``FreenetError`` naming the file, or a clean ``freenet: error:`` before any work, never a traceback, a
hang or a memory blow-up. The corpora are module-level lists so that the same cases can be run against
other versions of the code. ``pytest -m fuzz`` runs the fuzz loops long (tests/fuzz.py).
"""

import copy
import gzip
import json
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fuzz
import freenet as fn
from freenet.checkpoint import Checkpointer, read_checkpoint
from freenet.data import CIFAR10, MNIST, read_cifar10_batch, read_idx, write_idx
from freenet.recipes import mnist

pytestmark = pytest.mark.fuzz  # every test here feeds hostile input (tests/fuzz.py)
QUIET = dict(progress=False, log=lambda *a: None)
RECIPE = mnist.Recipe(epochs=1, max_steps=2)


# -- checkpoints: a state with a valid checksum is not a valid state --------------------------------------------

@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """The checkpoints of a two-step MNIST run, after step 1 and step 2."""
    folder = tmp_path_factory.mktemp("good")
    mnist.train(RECIPE, checkpoint_every=1, checkpoint_dir=folder, **QUIET)
    return folder


@pytest.fixture(scope="module")
def good(run_folder):
    """The last checkpoint: resuming from it trains no more, so each case is quick."""
    return Checkpointer(run_folder).latest()


@pytest.fixture(scope="module")
def first(run_folder):
    """The checkpoint after step 1: resuming from it trains a step and writes a checkpoint."""
    return read_checkpoint(Checkpointer(run_folder).paths()[0])


def at(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def edit(path, value=None, delete=False):
    """A case: ``state`` with the entry at ``path`` replaced by ``value`` (or deleted)."""
    def apply(state, arrays):
        parent = at(state, path[:-1])
        if delete:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value(parent[path[-1]]) if callable(value) else copy.deepcopy(value)
        return state, arrays
    return apply


def whole(value):
    return lambda state, arrays: (value, arrays)


def drop_weight(state, arrays):
    return state, {k: v for k, v in arrays.items() if not k.endswith("weight")}


def mt19937(state, arrays):
    state["rng"] = np.random.MT19937(1).state  # its 624-word key goes into the file as a tensor (of int64:
    state["rng"]["state"]["key"] = state["rng"]["state"]["key"].astype(np.int64)  # safetensors has no uint32)
    return state, arrays


OPT, SCHED = ("optimizer",), ("schedule",)
GROUP = OPT + ("param_groups", 0)
BUFFER = OPT + ("state", "0", "momentum_buffer")

# (name, edit): each is a FreenetError on resume (before: a traceback for most).
STATE_CASES = [
    ("no run", edit(("run",), delete=True)),
    ("no rng", edit(("rng",), delete=True)),
    ("no optimizer", edit(OPT, delete=True)),
    ("no schedule", edit(SCHED, delete=True)),
    ("no loader", edit(("loader",), delete=True)),
    ("no recipe", edit(("recipe",), delete=True)),
    ("state is a list", whole([1, 2])),
    ("run is text", edit(("run",), "run")),
    ("run step is text", edit(("run", "step"), "2")),
    ("run step negative", edit(("run", "step"), -1)),
    ("run step past the end", edit(("run", "step"), 10**6)),
    ("run seconds is a list", edit(("run", "seconds"), [])),
    ("run history empty at the end", edit(("run", "history"), [])),
    ("run history entry is a number", edit(("run", "history", 0), 5)),
    ("run without epoch stats", edit(("run", "epoch"), delete=True)),
    ("run epoch seen negative", edit(("run", "epoch", "seen"), -64)),
    ("rng of another generator", mt19937),
    ("rng state is text", edit(("rng", "state", "state"), "x")),
    ("rng state negative", edit(("rng", "state", "inc"), -1)),
    ("rng state a float", edit(("rng", "state", "state"), 1.5)),
    ("rng is a number", edit(("rng",), 7)),
    ("param_groups is a dict", edit(OPT + ("param_groups",), {"0": {}})),
    ("group without params", edit(GROUP + ("params",), delete=True)),
    ("group params are text", edit(GROUP + ("params",), lambda p: ["a"] * len(p))),
    ("group params repeated", edit(GROUP + ("params",), lambda p: [0] * len(p))),
    ("lr is text", edit(GROUP + ("lr",), "fast")),
    ("lr is NaN", edit(GROUP + ("lr",), float("nan"))),
    ("momentum negative", edit(GROUP + ("momentum",), -0.5)),
    ("nesterov is text", edit(GROUP + ("nesterov",), "yes")),
    ("initial_lr is a list", edit(GROUP + ("initial_lr",), [1])),
    ("optimizer state is a list", edit(OPT + ("state",), [])),
    ("optimizer state entry is a number", edit(OPT + ("state", "0"), 3)),
    ("optimizer state for no parameter", edit(OPT + ("state", "99"), {})),
    ("momentum buffer of the wrong shape", edit(BUFFER, lambda a: np.zeros(a.shape + (2,), a.dtype))),
    ("momentum buffer 0-d", edit(BUFFER, np.float32(1))),
    ("momentum buffer as a list", edit(BUFFER, lambda a: a.tolist())),
    ("momentum buffer of ints", edit(BUFFER, lambda a: a.astype(np.int64))),
    ("optimizer state with an unknown entry", edit(OPT + ("state", "0", "exp_avg"), np.zeros(3))),
    ("schedule total_steps zero", edit(SCHED + ("total_steps",), 0)),
    ("schedule total_steps is text", edit(SCHED + ("total_steps",), "2")),
    ("schedule anneal_strategy unknown", edit(SCHED + ("anneal_strategy",), "sin")),
    ("schedule phases not a list", edit(SCHED + ("_schedule_phases",), 3)),
    ("schedule phase names a group's params", edit(SCHED + ("_schedule_phases", 0, "start_lr"), "params")),
    ("schedule phase end_step is text", edit(SCHED + ("_schedule_phases", 1, "end_step"), "1")),
    ("schedule phases equal", edit(SCHED + ("_schedule_phases", 1, "end_step"), -0.4)),
    ("schedule replaces the optimizer", edit(SCHED + ("optimizer",), 5)),
    ("schedule base_lrs too long", edit(SCHED + ("base_lrs",), [0.1, 0.1])),
    ("schedule without last_epoch", edit(SCHED + ("last_epoch",), delete=True)),
    ("schedule last_epoch negative", edit(SCHED + ("last_epoch",), -1)),
    ("schedule use_beta1 flipped", edit(SCHED + ("use_beta1",), True)),
    ("loader epoch is text", edit(("loader", "epoch"), "0")),
    ("loader without seed", edit(("loader", "seed"), delete=True)),
    ("loader is a list", edit(("loader",), [])),
    ("loader ahead of the run", edit(("loader", "epoch"), 3)),
    ("matmul is a number", edit(("matmul",), 5)),
    ("recipe is a list", edit(("recipe",), [])),
    ("recipe holds an array", edit(("recipe", "lr"), np.zeros(3))),
    ("loader holds an array", edit(("loader", "version"), np.zeros((2, 2)))),
    ("model misses its weights", drop_weight),
    ("an array marker that is a list", edit(("run", "history", 0), {"__array__": [1]})),
]


def save_state(folder, state, arrays):
    """Writes ``state`` with Checkpointer's own save: the checksum is valid whatever the state holds."""
    Checkpointer(folder).save(2, arrays, state)


def resume(folder):
    return mnist.train(RECIPE, resume=folder, **QUIET)


@pytest.mark.parametrize("name, change", STATE_CASES, ids=[name for name, _ in STATE_CASES])
def test_a_malformed_state_with_a_valid_checksum_is_an_error(good, tmp_path, name, change):
    state, arrays = change(copy.deepcopy(good.state), dict(good.arrays))
    save_state(tmp_path, state, arrays)
    with pytest.raises(fn.FreenetError) as e:
        resume(tmp_path)
    assert "checkpoint-000000002.safetensors" in str(e.value)


def test_the_good_checkpoint_resumes(good, tmp_path):
    save_state(tmp_path, copy.deepcopy(good.state), good.arrays)
    assert resume(tmp_path).history == good.state["run"]["history"]


# Values a mutation puts in place of an entry: every JSON kind, extremes, and arrays of the wrong kinds.
JUNK = [None, True, False, -1, 0, 1, 2**70, -1e300, 1.5, float("nan"), float("inf"), "", "x", [], {}, [1, "a"],
        {"a": 1}, {"__array__": "state.nowhere"}, np.zeros(3, np.float32), np.zeros((2, 2), np.int64),
        np.float32(0.5)]


def _paths(tree, path=()):
    yield path
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        yield from _paths(value, path + (key,))


def mutate(state, rng, edits):
    """``state`` after ``edits`` random edits (delete an entry, add one, swap its kind, reshape an array, shift a
    number); returns (state, what was done)."""
    state, done = copy.deepcopy(state), []
    for _ in range(edits):
        path = [p for p in _paths(state) if p]
        if not path:
            break
        path = path[rng.integers(len(path))]
        parent, key = at(state, path[:-1]), path[-1]
        value, kind = parent[key], int(rng.integers(5))
        if kind == 0:
            del parent[key]
            done.append(f"del {path}")
            continue
        if kind == 1 and isinstance(parent, dict):
            parent["extra"] = JUNK[rng.integers(len(JUNK))]
            done.append(f"add {path[:-1] + ('extra',)}")
            continue
        if kind == 2 and isinstance(value, np.ndarray):
            new = [value.ravel()[:-1], value.astype(np.int64), value[..., None], value.tolist()][rng.integers(4)]
        elif kind == 3 and isinstance(value, (int, float)) and not isinstance(value, bool):
            new = [-value, value * 10**6, value + 1, -1][rng.integers(4)]
        else:
            new = copy.deepcopy(JUNK[rng.integers(len(JUNK))])
        parent[key] = new
        done.append(f"{path} = {new!r:.40}")
    return state, done


def try_resume(folder, state, arrays):
    """ok or error (a FreenetError); anything else raises, as the test fails with it."""
    save_state(folder, state, arrays)
    try:
        resume(folder)
    except fn.FreenetError:
        return "error"
    return "ok"


def test_mutated_checkpoint_states_resume_or_fail_cleanly(good, tmp_path):
    rng = np.random.default_rng(20240607)
    outcomes = []
    for case in range(fuzz.cases(60)):
        state, done = mutate(good.state, rng, int(rng.integers(1, 4)))
        try:
            outcomes.append(try_resume(tmp_path / f"case{case}", state, good.arrays))
        except Exception as e:  # noqa: BLE001 -- the point: name the mutation behind any other exception
            raise AssertionError(f"case {case}: {done}: {type(e).__name__}: {e}") from e
    assert outcomes.count("error") > len(outcomes) // 2  # most mutations break the state


def test_go_checkpoint_with_a_malformed_state_is_an_error(tmp_path):
    from freenet.go.train import TrainConfig, _load_or_init

    config = TrainConfig(size=5, blocks=1, filters=4)
    net, opt, run = _load_or_init(str(tmp_path), config, log=lambda *a: None)
    assert run == {}
    folder = Checkpointer(tmp_path / "checkpoints")
    good_state = {"run": {"generation": 1, "games": 2, "steps": 2, "seconds": 1.0, "policy_loss": 1.5},
                  "optimizer": opt.state_dict()}
    folder.save(1, net.state_dict(), good_state)
    assert _load_or_init(str(tmp_path), config, log=lambda *a: None)[2]["generation"] == 1
    for state in [{"optimizer": good_state["optimizer"]}, {"run": good_state["run"]}, [],
                  {**good_state, "run": {"generation": "1"}}, {**good_state, "run": {"generation": -1}},
                  {**good_state, "run": {"seconds": []}}, {**good_state, "optimizer": {"state": {}}},
                  {**good_state, "optimizer": {"state": {"0": {"momentum_buffer": np.zeros(2)}},
                                               "param_groups": good_state["optimizer"]["param_groups"]}}]:
        folder.save(1, net.state_dict(), state)
        with pytest.raises(fn.FreenetError, match="checkpoint-000000001.safetensors"):
            _load_or_init(str(tmp_path), config, log=lambda *a: None)


def test_go_run_files_that_are_not_json_objects(tmp_path):
    from freenet.go.train import read_json

    assert read_json(str(tmp_path / "none.json")) is None
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "deep.json").write_text("[" * 10000 + "]" * 10000)
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "folder.json").mkdir()
    for name in ("list.json", "bad.json", "deep.json", "fifo.json", "folder.json"):
        with pytest.raises(fn.FreenetError, match=name):
            read_json(str(tmp_path / name))


# -- checkpoint folders: FIFOs and folders named like checkpoints ----------------------------------------------

def run_python(code, *args, timeout=fuzz.TIME_LIMIT):
    """(outcome, output) of ``python -c code ARGS`` in a child with the fuzz limits: ok, error (a FreenetError,
    printed), traceback, hang or memory."""
    script = "import sys\nfrom freenet.errors import FreenetError\ntry:\n" + textwrap.indent(code, "    ") + \
             "\nexcept FreenetError as e:\n    print('freenet: error:', e, file=sys.stderr)\n    sys.exit(2)\n"
    try:
        done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, timeout=timeout,
                              preexec_fn=fuzz._limits)
    except subprocess.TimeoutExpired:
        return "hang", ""
    out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    if "MemoryError" in out or done.returncode in (-9, -6):
        return "memory", out
    if "Traceback" in out:
        return "traceback", out
    return ("ok" if done.returncode == 0 else "error" if "freenet: error:" in out else "traceback"), out


def fifo(path):
    os.mkfifo(path)


def folder(path):
    os.mkdir(path)


def dangling(path):
    os.symlink(os.path.join(os.path.dirname(path), "nowhere"), path)


NEWEST = "checkpoint-000000009.safetensors"
# (name, what takes the newest checkpoint's name, whether a good checkpoint is there too)
FOLDER_CASES = [(f"{make.__name__}{' beside a good one' if with_good else ' alone'}", make, with_good)
                for make in (fifo, folder, dangling) for with_good in (True, False)]
LATEST = "from freenet.checkpoint import Checkpointer\nc = Checkpointer(sys.argv[1]).latest(warn=print)\n" \
         "print('resumed from', c.path)"


@pytest.mark.parametrize("name, make, with_good", FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_non_files_among_checkpoints_are_skipped(good, tmp_path, name, make, with_good):
    if with_good:
        save_state(tmp_path, copy.deepcopy(good.state), good.arrays)
    make(str(tmp_path / NEWEST))
    if make is fifo:  # in a child: reading a FIFO would wait for a writer forever
        outcome, out = run_python(LATEST, tmp_path)
    else:
        notes = []
        try:
            outcome, out = "ok", f"resumed from {Checkpointer(tmp_path).latest(warn=notes.append).path}"
        except fn.FreenetError as e:
            outcome, out = "error", str(e)
        out = "\n".join(notes + [out])
    assert outcome == ("ok" if with_good else "error"), out
    assert "skipping a bad checkpoint" in out and NEWEST in out
    if with_good:
        assert "checkpoint-000000002" in out.split("resumed from")[-1]


def test_a_resumed_run_skips_a_fifo_and_saves_past_a_folder(first, good, tmp_path):
    """End to end: resume skips the FIFO (a read would wait for a writer forever), and saving new checkpoints
    neither removes nor writes over a folder with a checkpoint's name."""
    Checkpointer(tmp_path).save(1, first.arrays, first.state)
    fifo(str(tmp_path / NEWEST))
    folder(str(tmp_path / "checkpoint-000000000.safetensors"))
    outcome, out = run_python("from freenet.recipes import mnist\n"
                              f"r = mnist.train(mnist.{RECIPE!r}, progress=False, resume=sys.argv[1], "
                              "checkpoint_every=1, checkpoint_dir=sys.argv[1])\nprint('trained', r.sha256)", tmp_path)
    assert outcome == "ok", out
    assert "resumed from" in out and "checkpoint-000000001" in out and "trained" in out
    assert os.path.isdir(tmp_path / "checkpoint-000000000.safetensors")
    assert os.path.isfile(tmp_path / "checkpoint-000000002.safetensors")
    with pytest.raises(fn.FreenetError, match="checkpoint-000000000.safetensors: is a folder"):
        Checkpointer(tmp_path).save(0, good.arrays, good.state)  # over the folder: refused, not IsADirectoryError


# -- IDX (MNIST) files ---------------------------------------------------------------------------------------

def header(code, dims):
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def gzip_zeros(n, block=16 << 20):
    """gzip members that inflate to ``n`` zero bytes, made from one compressed block: a bomb made quickly."""
    member = gzip.compress(bytes(block), compresslevel=9, mtime=0)
    full, rest = divmod(n, block)
    return member * full + (gzip.compress(bytes(rest), mtime=0) if rest else b"")


def sparse(path, size, head=b""):
    """A file of ``size`` bytes that starts with ``head`` and takes no disk space (as ``truncate`` makes)."""
    with open(path, "wb") as f:
        f.write(head)
        f.seek(size - 1)
        f.write(b"\0")


def mnist_files(root, train=8, test=4):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", train), ("t10k", test)):
        write_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"), rng.integers(0, 256, (n, 28, 28), np.uint8))
        write_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"), rng.integers(0, 10, n, np.uint8))


def replace(name, content):
    """A case: the file ``name`` in a data folder replaced by ``content`` (bytes, or a function that makes the
    file at the path it is given)."""
    def apply(root):
        path = os.path.join(root, name)
        if os.path.lexists(path):
            os.remove(path)
        if callable(content):
            content(path)
        else:
            with open(path, "wb") as f:
                f.write(content)
    return apply


def bomb(head, n):
    """A gzip file: an IDX header, then ``n`` zero bytes (made when the case is applied, not at import)."""
    def make(path):
        with open(path, "wb") as f:
            f.write(gzip.compress(head) + gzip_zeros(n))
    return make


def idx_gz(array):
    return gzip.compress(header({np.uint8: 0x08, np.int16: 0x0B}[array.dtype.type], list(array.shape))
                         + array.astype(array.dtype.newbyteorder(">")).tobytes(), mtime=0)


TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
BIG = 2_000_000  # images: 1.6 GB
# (name, damage to a good folder): each is a FileFormatError naming the file (before: see the issue).
IDX_CASES = [
    ("zero test images", lambda root: (replace(TEST_IMAGES, idx_gz(np.zeros((0, 28, 28), np.uint8)))(root),
                                       replace(TEST_LABELS, idx_gz(np.zeros(0, np.uint8)))(root))),
    ("zero training images", lambda root: (replace("train-images-idx3-ubyte.gz",
                                                   idx_gz(np.zeros((0, 28, 28), np.uint8)))(root),
                                           replace("train-labels-idx1-ubyte.gz", idx_gz(np.zeros(0, np.uint8)))(root))),
    ("header says more images", replace(TEST_IMAGES, gzip.compress(header(8, [9, 28, 28]) + bytes(4 * 784)))),
    ("header says fewer images", replace(TEST_IMAGES, gzip.compress(header(8, [2, 28, 28]) + bytes(4 * 784)))),
    ("images of 28x29", replace(TEST_IMAGES, idx_gz(np.zeros((4, 28, 29), np.uint8)))),
    ("images without dimensions", replace(TEST_IMAGES, gzip.compress(header(8, []) + b"\0"))),
    ("images of int16", replace(TEST_IMAGES, idx_gz(np.zeros((4, 28, 28), np.int16)))),
    ("five labels for four images", replace(TEST_LABELS, idx_gz(np.zeros(5, np.uint8)))),
    ("label 12", replace(TEST_LABELS, idx_gz(np.full(4, 12, np.uint8)))),
    ("gzip bomb of 1.6 GB", replace(TEST_IMAGES, bomb(header(8, [BIG, 28, 28]), BIG * 784))),
    ("gzip bomb after a small header", replace(TEST_IMAGES, bomb(header(8, [4, 28, 28]), 4 * 784 + (1 << 30)))),
    ("sparse raw file of 1.6 GB", lambda root: (os.remove(os.path.join(root, TEST_IMAGES)),
                                                sparse(os.path.join(root, TEST_IMAGES[:-3]), 16 + BIG * 784,
                                                       header(8, [BIG, 28, 28])))),
    ("header of 1e77 bytes", replace(TEST_IMAGES, gzip.compress(header(0x0E, [2**32 - 1] * 8)))),
    ("cut gzip stream", replace(TEST_IMAGES, idx_gz(np.zeros((4, 28, 28), np.uint8))[:-30])),
    ("not gzip at all", replace(TEST_IMAGES, b"\x1f\x8bnot gzip")),
    ("a FIFO for the images", replace(TEST_IMAGES, fifo)),
    ("a folder for the labels", replace(TEST_LABELS, folder)),
]


@pytest.mark.parametrize("name, damage", [c for c in IDX_CASES if "1.6 GB" not in c[0]],
                         ids=[c[0] for c in IDX_CASES if "1.6 GB" not in c[0]])
def test_bad_mnist_files_are_an_error_naming_the_file(tmp_path, name, damage):
    mnist_files(tmp_path)
    damage(str(tmp_path))
    with pytest.raises(fn.FreenetError, match=r"(train|t10k)-(images|labels)-idx[13]-ubyte"):
        MNIST(tmp_path, train="training" in name)


@pytest.mark.parametrize("name, damage", [c for c in IDX_CASES if "1.6 GB" in c[0]],
                         ids=[c[0] for c in IDX_CASES if "1.6 GB" in c[0]])
def test_mnist_bombs_fail_fast_within_the_memory_limit(tmp_path, name, damage):
    """In a child under the fuzz memory limit: the declared 1.6 GB is refused before anything is inflated."""
    mnist_files(tmp_path)
    damage(str(tmp_path))
    outcome, code, out, err = fuzz.run_cli(["train", "mnist", "--data", str(tmp_path), "--epochs", "1", "--quiet",
                                            "--out", str(tmp_path / "w.safetensors")])
    assert outcome == "clean" and "t10k-images-idx3-ubyte" in err and "more than" in err, err


def test_read_idx_limits(tmp_path):
    path = tmp_path / "a.gz"
    write_idx(path, np.arange(10, dtype=np.uint8))
    assert read_idx(path, max_bytes=10).tolist() == list(range(10))
    with pytest.raises(fn.FreenetError, match="a.gz: .*more than"):
        read_idx(path, max_bytes=9)
    path.write_bytes(gzip.compress(header(8, [4])) + gzip_zeros(1 << 20))
    with pytest.raises(fn.FreenetError, match="trailing bytes"):
        read_idx(path)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")


def test_empty_mnist_like_arrays_still_read(tmp_path):
    """An IDX file of no rows is well formed: read_idx reads it; only MNIST needs images to train and test on."""
    write_idx(tmp_path / "e", np.zeros((0, 28, 28), np.uint8))
    assert read_idx(tmp_path / "e").shape == (0, 28, 28)


def test_mnist_data_folder_missing_or_a_file(tmp_path):
    with pytest.raises(fn.FreenetError, match="nowhere: no such folder"):
        MNIST(tmp_path / "nowhere")
    (tmp_path / "file").write_bytes(b"")
    for download in (False, True):
        with pytest.raises(fn.FreenetError, match="file: is a file, not a folder"):
            MNIST(tmp_path / "file", download=download)


# -- CIFAR-10 batches ------------------------------------------------------------------------------------------

RECORD = 3073


def cifar_files(root, records=2):
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rows = rng.integers(0, 256, (records, RECORD), np.uint8)
        rows[:, 0] %= 10
        with open(os.path.join(root, name), "wb") as f:
            f.write(rows.tobytes())


# (name, damage, which part of the data set reads the file)
CIFAR_CASES = [
    ("sparse test batch of 3 GB", replace("test_batch.bin", lambda p: sparse(p, RECORD * 1_000_000)), False),
    ("sparse batch of 3 GB and a byte", replace("data_batch_2.bin", lambda p: sparse(p, 3 * 10**9 + 1)), True),
    ("10,001 records", replace("test_batch.bin", lambda p: sparse(p, RECORD * 10_001)), False),
    ("a record short of a byte", replace("data_batch_1.bin", bytes(RECORD - 1)), True),
    ("an empty batch", replace("test_batch.bin", b""), False),
    ("label 10", replace("data_batch_3.bin", bytes([10]) + bytes(RECORD - 1)), True),
    ("a FIFO for a batch", replace("data_batch_4.bin", fifo), True),
    ("a folder for a batch", replace("test_batch.bin", folder), False),
]


@pytest.mark.parametrize("name, damage, train", CIFAR_CASES, ids=[c[0] for c in CIFAR_CASES])
def test_bad_cifar_batches_are_an_error_naming_the_file(tmp_path, name, damage, train):
    cifar_files(tmp_path)
    damage(str(tmp_path))
    with pytest.raises(fn.FreenetError, match=r"(data|test)_batch(_\d)?\.bin"):
        CIFAR10(tmp_path, train=train)


def test_cifar_batch_limits(tmp_path):
    path = tmp_path / "b.bin"
    sparse(path, RECORD * 10_000)  # a full batch of label-0 black images is fine
    images, labels = read_cifar10_batch(path)
    assert images.shape == (10_000, 3, 32, 32) and not labels.any()
    sparse(path, RECORD * 1_000_000)
    with pytest.raises(fn.FreenetError, match=r"b.bin: 1,000,000 records, more than the 10,000"):
        read_cifar10_batch(path)
    with pytest.raises(fn.FreenetError, match="nowhere: no such folder"):
        CIFAR10(tmp_path / "nowhere")


# -- outputs: checked before the work, written atomically, kept if the write fails after it ------------------------

def _unwritable(tmp_path):
    """A folder this process cannot create files in: chmod 555, or /proc when running as root."""
    if os.geteuid() == 0:
        return "/proc"
    path = tmp_path / "readonly"
    path.mkdir()
    path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return str(path)


TRAIN = ["train", "mnist", "--epochs", "1", "--quiet"]
# (name, arguments given a tmp folder T, a word the error must have): each a clean error before any work.
OUTPUT_CASES = [
    ("--out in a missing folder", lambda t: TRAIN + ["--out", f"{t}/nodir/m.safetensors"], "does not exist"),
    ("--out in a read-only folder", lambda t: TRAIN + ["--out", f"{_unwritable(t)}/m.safetensors"],
     "cannot create files"),
    ("--out is a folder", lambda t: TRAIN + ["--out", str(t)], "is a folder"),
    ("--json in a missing folder", lambda t: TRAIN + ["--out", f"{t}/m", "--json", f"{t}/nodir/s.json"],
     "does not exist"),
    ("--checkpoint-dir under a file", lambda t: TRAIN + ["--out", f"{t}/m", "--checkpoint-every", "1",
                                                         "--checkpoint-dir", f"{t}/m.txt/ckpt"], "not a folder"),
    ("--resume of a lone FIFO", lambda t: TRAIN + ["--out", f"{t}/m", "--resume", f"{t}/fifo"], "no usable"),
    ("go export-lz into a missing folder", lambda t: ["go", "export-lz", f"{t}/net.safetensors", f"{t}/nodir/w.txt"],
     "does not exist"),
    ("go selfplay into a missing folder", lambda t: ["go", "selfplay", "--size", "5", "--games", "1", "--playouts",
                                                     "2", "--quiet", "--out", f"{t}/nodir/g.npz"], "does not exist"),
    ("go init over a folder", lambda t: ["go", "init", "--size", "5", "--out", str(t)], "is a folder"),
    ("go train in a file", lambda t: ["go", "train", "--dir", f"{t}/m.txt", "--size", "5", "--quiet"],
     "not a folder"),
]


def output_folder(t):
    """What the output cases need in the tmp folder T: a file, a small Go net and a lone FIFO checkpoint."""
    (t / "m.txt").write_text("a file")
    from freenet.go.net import new_net, save_net
    save_net(new_net(5, 1, 4), str(t / "net.safetensors"))
    (t / "fifo").mkdir()
    os.mkfifo(t / "fifo" / NEWEST)


@pytest.mark.parametrize("name, args, words", OUTPUT_CASES, ids=[c[0] for c in OUTPUT_CASES])
def test_bad_outputs_are_a_clean_error_before_the_work(tmp_path, name, args, words):
    output_folder(tmp_path)
    outcome, code, out, err = fuzz.run_cli(args(tmp_path), timeout=20)  # training or self-play would take longer
    assert outcome == "clean" and words in err, (outcome, err)
    assert "epoch 1/" not in out.decode() and "games" not in out.decode()  # nothing was done


@pytest.mark.parametrize("data", [["--data", "nodir"], ["--data", "m.txt"], ["--download", "--data", "m.txt"]])
def test_a_bad_data_folder_is_a_clean_error(tmp_path, monkeypatch, capsys, data):
    from freenet.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.txt").write_text("a file")
    assert main(TRAIN + ["--out", "m.safetensors"] + data) != 0
    err = capsys.readouterr().err
    assert err.startswith("freenet: error: ") and ("no such folder" in err or "is a file, not a folder" in err), err


def _short_training(monkeypatch):
    """``freenet train mnist`` in-process with two SGD steps, so that the write after the work is quickly reached."""
    real = mnist.train

    def train(recipe, **kw):
        return real(mnist.Recipe(**{**recipe.as_dict(), "max_steps": 2}), **kw)
    monkeypatch.setattr(mnist, "train", train)


def test_a_write_that_fails_after_training_keeps_the_weights(tmp_path, monkeypatch, capsys):
    from freenet import serialize
    from freenet.cli import main

    _short_training(monkeypatch)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out" / "m.safetensors"
    out.parent.mkdir()
    real = serialize.atomic_write

    def full_disk(path, data):
        if os.path.dirname(os.path.abspath(path)) == str(out.parent):
            raise OSError(28, "No space left on device")
        real(path, data)
    monkeypatch.setattr(serialize, "atomic_write", full_disk)
    code = main(TRAIN + ["--out", str(out), "--json", str(out.parent / "s.json"), "--no-source"])
    err = capsys.readouterr().err
    assert code != 0 and "No space left on device" in err
    kept = [p for p in os.listdir(tmp_path) if p.endswith(".safetensors")]
    assert len(kept) == 1 and str(tmp_path / kept[0]) in err and not out.exists()
    assert fn.load(tmp_path / kept[0]).keys() == mnist.build_model().state_dict().keys()
    assert [p for p in os.listdir(tmp_path) if p.endswith(".json")]  # the summary is kept too


def test_export_lz_on_a_full_disk_leaves_no_truncated_file(tmp_path):
    """RLIMIT_FSIZE makes every write past 4 KB fail (EFBIG), as a full disk does: nothing half-written stays."""
    from freenet.go.net import new_net, save_net

    save_net(new_net(5, 1, 8), str(tmp_path / "net.safetensors"))
    script = ("import resource, sys\nfrom freenet.cli import main\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
              "sys.exit(main(['go', 'export-lz', sys.argv[1], sys.argv[2]]))")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "net.safetensors"), str(tmp_path / "w.txt")],
                          capture_output=True, timeout=fuzz.TIME_LIMIT, cwd=tmp_path)
    err = done.stderr.decode()
    assert done.returncode != 0 and "freenet: error:" in err and "Traceback" not in err, err
    assert not (tmp_path / "w.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["net.safetensors"]  # no temporary file left either


def test_check_output(tmp_path):
    from freenet.commands.common import check_folder, check_output

    check_output(str(tmp_path / "new.bin"), "weights")
    check_folder(str(tmp_path / "a" / "b"), "checkpoint folder")  # creatable: it need not exist yet
    os.mkfifo(tmp_path / "pipe")
    for path, words in [(tmp_path, "is a folder"), (tmp_path / "x" / "y.bin", "does not exist"),
                        (tmp_path / "pipe", "not a regular file"), ("", "empty")]:
        with pytest.raises(fn.FreenetError, match=words):
            check_output(str(path), "weights")
    (tmp_path / "f").write_text("")
    with pytest.raises(fn.FreenetError, match="not a folder"):
        check_folder(str(tmp_path / "f" / "sub"), "checkpoint folder")


def test_a_run_config_whose_selfplay_is_not_an_object_is_named(tmp_path):
    from freenet.go.train import TrainConfig, open_run

    config = TrainConfig(size=5, blocks=1, filters=4)
    open_run(str(tmp_path), config, "selfplay")
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["selfplay"] = "fast"
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(fn.FreenetError, match=r"config.json: selfplay: must be an object"):
        open_run(str(tmp_path), config, "selfplay")
