"""freenet.data: datasets, the seeded resumable DataLoader, the IDX and CIFAR-10 readers, and MNIST.

No test touches the network: an autouse fixture makes any attempt fail, and the download path runs
against a replaced ``freenet.data.files.fetch``.
"""

import gzip
import json
import os
import shutil
import socket
import urllib.request

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import freenet as fn
from freenet.data import (CIFAR10, MNIST, DataLoader, Dataset, TensorDataset, read_cifar10_batch, read_idx,
                          sha256_file, write_idx)
from freenet.data import files as data_files
from freenet.data import mnist as mnist_module


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def batches(loader):
    return [tuple(t._data.copy() for t in b) for b in loader]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert len(x) == len(y)
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)


# -- Dataset and TensorDataset ----------------------------------------------------------------------

def test_tensor_dataset_items_and_batches():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = fn.tensor(np.arange(6))
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    xi, yi = ds[4]
    assert isinstance(xi, fn.Tensor) and xi.tolist() == [8.0, 9.0] and yi.item() == 4
    assert ds[-1][1].item() == 5
    with pytest.raises(IndexError):
        ds[6]
    bx, by = ds.get_batch(np.array([5, 0, 3]))
    np.testing.assert_array_equal(bx, x[[5, 0, 3]])
    np.testing.assert_array_equal(by, [5, 0, 3])


def test_tensor_dataset_errors():
    with pytest.raises(fn.FreenetError, match=r"first dimension.*\(3, 2\).*\(4,\)"):
        TensorDataset(np.zeros((3, 2)), np.zeros(4))
    with pytest.raises(fn.FreenetError, match="at least one"):
        TensorDataset()
    with pytest.raises(fn.FreenetError, match="0-d"):
        TensorDataset(np.array(1.0))
    with pytest.raises(fn.FreenetError, match="list"):
        TensorDataset([1, 2, 3])


class Squares(Dataset):
    """A plain Dataset with no get_batch of its own: the loader stacks its examples one by one."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return fn.tensor([float(i), float(i * i)]), i, 0.5 * i


def test_loader_stacks_plain_dataset_fields():
    (x, i, h), = list(DataLoader(Squares(3), batch_size=3))
    assert x.shape == (3, 2) and x.dtype == np.float32
    assert i.tolist() == [0, 1, 2] and i.dtype == np.int64
    assert h.dtype == np.float32 and h.tolist() == [0.0, 0.5, 1.0]


def test_loader_accepts_single_value_examples():
    class Plain:  # not a Dataset subclass: anything with __len__ and __getitem__
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full(2, i)

    got = list(DataLoader(Plain(), batch_size=2))  # single values batch into single tensors, as in PyTorch
    assert [len(b) for b in got] == [2, 2, 1]
    assert got[2].tolist() == [[4, 4]]


def test_base_dataset_needs_methods():
    with pytest.raises(NotImplementedError):
        len(Dataset())


# -- DataLoader --------------------------------------------------------------------------------------

@given(n=st.integers(0, 40), batch_size=st.integers(1, 12), shuffle=st.booleans(), drop_last=st.booleans(),
       seed=st.integers(0, 2**63 - 1))
def test_loader_covers_each_example_once(n, batch_size, shuffle, drop_last, seed):
    loader = DataLoader(TensorDataset(np.arange(n)), batch_size=batch_size, shuffle=shuffle,
                        drop_last=drop_last, seed=seed)
    got = batches(loader)
    assert len(got) == len(loader) == (n // batch_size if drop_last else -(-n // batch_size))
    seen = np.concatenate([b[0] for b in got]) if got else np.zeros(0, np.int64)
    assert all(len(b[0]) == batch_size for b in got[:-1])
    if drop_last:
        assert all(len(b[0]) == batch_size for b in got)
    assert len(set(seen.tolist())) == len(seen)
    assert len(seen) == (len(got) * batch_size if drop_last else n)
    if not shuffle:
        np.testing.assert_array_equal(seen, np.arange(len(seen)))


def test_shuffle_depends_only_on_seed_and_epoch():
    ds = TensorDataset(np.arange(50))
    a = DataLoader(ds, batch_size=7, shuffle=True, seed=123)
    b = DataLoader(ds, batch_size=7, shuffle=True, seed=123)
    a0, a1 = batches(a), batches(a)
    fn.manual_seed(99)  # the global generator plays no part once the seed is given
    assert_same_batches(a0, batches(b))
    assert_same_batches(a1, batches(b))
    flat = lambda bs: np.concatenate([x[0] for x in bs])  # noqa: E731
    assert not np.array_equal(flat(a0), flat(a1)), "epochs 0 and 1 should have different orders"
    assert not np.array_equal(flat(a0), np.arange(50))
    c = DataLoader(ds, batch_size=7, shuffle=True, seed=124)
    assert not np.array_equal(flat(batches(c)), flat(a0))
    np.testing.assert_array_equal(flat(a1), np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([123, 1]))).permutation(50))


def test_seed_none_comes_from_manual_seed():
    ds = TensorDataset(np.arange(30))
    fn.manual_seed(7)
    s1 = DataLoader(ds, shuffle=True).seed
    fn.manual_seed(7)
    s2 = DataLoader(ds, shuffle=True).seed
    assert s1 == s2 and isinstance(s1, int)
    fn.manual_seed(8)
    assert DataLoader(ds, shuffle=True).seed != s1
    # A loader that does not shuffle leaves the global generator alone.
    fn.manual_seed(7)
    DataLoader(ds)
    assert DataLoader(ds, shuffle=True).seed == s1


@given(n=st.integers(1, 30), batch_size=st.integers(1, 8), drop_last=st.booleans(), cut=st.integers(0, 40),
       seed=st.integers(0, 1000))
def test_resume_continues_exactly(n, batch_size, drop_last, cut, seed):
    ds = TensorDataset(np.arange(n), np.arange(n) * 10)
    make = lambda: DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=drop_last, seed=seed)  # noqa: E731
    reference = make()
    full = batches(reference) + batches(reference) + batches(reference)  # three epochs
    cut = min(cut, len(full))
    first = make()
    got, state = [], first.state_dict()
    while len(got) < cut:  # consume `cut` batches, across epochs, then "crash"
        for b in first:
            got.append(tuple(t._data.copy() for t in b))
            state = first.state_dict()
            if len(got) == cut:
                break
    state = json.loads(json.dumps(state))  # plain values: survives a JSON checkpoint
    resumed = DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=drop_last, seed=None)
    resumed.load_state_dict(state)
    while len(got) < len(full):
        got += batches(resumed)
    assert_same_batches(got, full)


def test_state_dict_fields_and_epoch_rollover():
    loader = DataLoader(TensorDataset(np.arange(10)), batch_size=4, shuffle=True, seed=5)
    assert loader.state_dict() == {"version": 1, "epoch": 0, "batch": 0, "seed": 5, "shuffle": True,
                                   "batch_size": 4, "drop_last": False, "dataset_len": 10}
    it = iter(loader)
    next(it)
    assert (loader.state_dict()["epoch"], loader.state_dict()["batch"]) == (0, 1)
    next(it), next(it)
    assert (loader.state_dict()["epoch"], loader.state_dict()["batch"]) == (1, 0)
    assert loader.epoch == 1


def test_abandoned_iteration_moves_to_next_epoch():
    ds = TensorDataset(np.arange(20))
    loader = DataLoader(ds, batch_size=5, shuffle=True, seed=3)
    for _ in loader:
        break
    assert loader.state_dict()["batch"] == 1
    second = batches(loader)
    ref = DataLoader(ds, batch_size=5, shuffle=True, seed=3)
    batches(ref)
    assert_same_batches(second, batches(ref))  # a whole epoch 1, as in PyTorch


def test_a_newer_iteration_ends_the_old_iterator():
    loader = DataLoader(TensorDataset(np.arange(10)), batch_size=2)
    old = iter(loader)
    next(old)
    iter(loader)
    with pytest.raises(fn.FreenetError, match="newer iteration"):
        next(old)


def test_load_state_dict_checks():
    loader = DataLoader(TensorDataset(np.arange(10)), batch_size=3, shuffle=True, seed=1)
    state = loader.state_dict()
    other = DataLoader(TensorDataset(np.arange(11)), batch_size=3, shuffle=True, seed=1)
    with pytest.raises(fn.FreenetError, match="dataset_len=10"):
        other.load_state_dict(state)
    with pytest.raises(fn.FreenetError, match="batch_size"):
        DataLoader(TensorDataset(np.arange(10)), batch_size=2, shuffle=True).load_state_dict(state)
    with pytest.raises(fn.FreenetError, match="shuffle=True"):
        DataLoader(TensorDataset(np.arange(10)), batch_size=3).load_state_dict(state)
    with pytest.raises(fn.FreenetError, match="lacks seed"):
        loader.load_state_dict({"epoch": 0, "batch": 0})
    with pytest.raises(fn.FreenetError, match="past"):
        loader.load_state_dict(dict(state, batch=9))
    loader.load_state_dict(dict(state, epoch=2, batch=4))  # the end of epoch 2 is the start of epoch 3
    assert (loader.state_dict()["epoch"], loader.state_dict()["batch"]) == (3, 0)


def test_loader_argument_errors():
    ds = TensorDataset(np.arange(4))
    with pytest.raises(fn.FreenetError, match="batch_size"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(fn.FreenetError, match="batch_size"):
        DataLoader(ds, batch_size=2.0)
    with pytest.raises(fn.FreenetError, match="seed"):
        DataLoader(ds, seed=-1)
    with pytest.raises(fn.FreenetError, match="__len__"):
        DataLoader(5)


def test_empty_dataset_gives_no_batches():
    loader = DataLoader(TensorDataset(np.zeros((0, 3))), batch_size=2, shuffle=True, seed=0)
    assert len(loader) == 0 and list(loader) == []


# -- IDX ----------------------------------------------------------------------------------------------

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@given(dtype=st.sampled_from(IDX_DTYPES), shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
       gz=st.booleans(), data=st.data())
def test_idx_round_trip(tmp_path_factory, dtype, shape, gz, data):
    a = data.draw(hnp.arrays(dtype, shape))
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, a)
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative and b.shape == a.shape
    np.testing.assert_array_equal(b, a)


def test_idx_layout_is_the_documented_one(tmp_path):
    path = tmp_path / "x"
    write_idx(path, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16))
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0B, 2])
    assert raw[4:12] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    assert raw[12:14] == (1).to_bytes(2, "big") and len(raw) == 12 + 12


def header(code, dims):
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


IDX_CORRUPT = [
    (b"", "truncated: 0 bytes"),
    (b"\x00\x00\x08", "truncated: 3 bytes"),
    (b"\x01\x00\x08\x01" + bytes(8), "bad magic"),
    (bytes([0, 0, 0x07, 1]) + (2).to_bytes(4, "big") + b"ab", "unknown dtype code 0x07"),
    (bytes([0, 0, 0x08, 3]) + (2).to_bytes(4, "big"), "truncated header: 3 dimensions"),
    (header(0x08, [10]) + bytes(9), "truncated: shape \\(10,\\)"),
    (header(0x08, [10]) + bytes(11), "trailing bytes"),
    (header(0x0C, [3]) + bytes(8), "truncated"),
    (header(0x08, [60000, 28, 28]) + bytes(100), r"truncated: shape \(60000, 28, 28\)|more than a gzip file"),
    (header(0x0E, [2**32 - 1] * 8) + bytes(16), "truncated|more than a gzip file"),  # ~1e77 bytes declared
]


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("content, problem", IDX_CORRUPT)
def test_idx_corrupt_files_raise(tmp_path, content, problem, gz):
    path = tmp_path / ("bad.gz" if gz else "bad")
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(fn.FreenetError, match=problem) as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_idx_hostile_gzip_header_fails_before_decompressing(tmp_path):
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(header(0x08, [100000, 100000, 100]) + bytes(1000)))
    with pytest.raises(fn.FreenetError, match="more than a gzip file of"):
        read_idx(path)


def test_idx_broken_gzip_stream(tmp_path):
    good = gzip.compress(header(0x08, [1000]) + bytes(range(256)) * 4)
    for name, content in [("cut.gz", good[:-20]), ("flipped.gz", good[:12] + bytes([good[12] ^ 0xFF]) + good[13:])]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(fn.FreenetError, match=name):
            read_idx(path)


@given(gz=st.booleans(), data=st.data())
def test_damaged_idx_files_load_or_raise_freenet_error(tmp_path_factory, gz, data):
    path = tmp_path_factory.mktemp("fuzz") / ("a.gz" if gz else "a")
    write_idx(path, np.arange(60, dtype=np.int16).reshape(3, 4, 5))
    content = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        content[data.draw(st.integers(0, len(content) - 1))] = data.draw(st.integers(0, 255))
    path.write_bytes(bytes(content[:data.draw(st.integers(0, len(content)))]))
    try:
        read_idx(path)
    except fn.FreenetError as e:
        assert str(path) in str(e)


def test_idx_missing_file_and_bad_dtype(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")
    with pytest.raises(fn.FreenetError, match="no IDX code"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))


# -- CIFAR-10 -------------------------------------------------------------------------------------------

def cifar_bytes(labels, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    return np.concatenate([np.asarray(labels, np.uint8)[:, None], pixels], axis=1), pixels


def test_read_cifar10_batch(tmp_path):
    records, pixels = cifar_bytes([3, 0, 9, 1])
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(records.tobytes())
    images, labels = read_cifar10_batch(path)
    assert images.dtype == np.uint8 and images.shape == (4, 3, 32, 32) and images.flags.c_contiguous
    assert labels.dtype == np.uint8 and labels.tolist() == [3, 0, 9, 1]
    np.testing.assert_array_equal(images[2, 1], pixels[2, 1024:2048].reshape(32, 32))  # green plane


@pytest.mark.parametrize("size", [0, 3072, 3074, 3073 * 2 + 1])
def test_read_cifar10_bad_size(tmp_path, size):
    path = tmp_path / "b.bin"
    path.write_bytes(bytes(size))
    with pytest.raises(fn.FreenetError, match=f"b.bin: size {size} bytes is not a positive multiple of the 3073"):
        read_cifar10_batch(path)


def test_read_cifar10_bad_label(tmp_path):
    records, _ = cifar_bytes([1, 12])
    path = tmp_path / "b.bin"
    path.write_bytes(records.tobytes())
    with pytest.raises(fn.FreenetError, match="record 1 has label 12"):
        read_cifar10_batch(path)


def test_cifar10_dataset(tmp_path):
    for i in range(1, 6):
        (tmp_path / f"data_batch_{i}.bin").write_bytes(cifar_bytes([i, i + 1], seed=i)[0].tobytes())
    nested = tmp_path / "cifar-10-batches-bin"
    nested.mkdir()
    (nested / "test_batch.bin").write_bytes(cifar_bytes([7, 8, 9])[0].tobytes())
    train, test = CIFAR10(tmp_path), CIFAR10(tmp_path, train=False)
    assert len(train) == 10 and train.labels.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    assert train.images.dtype == np.float32 and train.images.shape == (10, 3, 32, 32)
    assert 0 <= train.images.min() and train.images.max() <= 1 and train.labels.dtype == np.int64
    assert test.labels.tolist() == [7, 8, 9] and sorted(test.sha256) == ["test_batch.bin"]
    assert test.sha256["test_batch.bin"] == sha256_file(nested / "test_batch.bin")
    assert len(train.sha256) == 5
    x, y = next(iter(DataLoader(train, batch_size=4)))
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [1, 2, 2, 3]


def test_cifar10_lists_missing_files(tmp_path):
    (tmp_path / "data_batch_2.bin").write_bytes(cifar_bytes([1])[0].tobytes())
    with pytest.raises(fn.FreenetError, match="lacks data_batch_1.bin, data_batch_3.bin, data_batch_4.bin, "
                                              "data_batch_5.bin"):
        CIFAR10(tmp_path)


# -- MNIST ---------------------------------------------------------------------------------------------

def test_bundled_sample_split():
    train, test = MNIST(), MNIST(train=False)
    assert (len(train), len(test)) == (4000, 1000)
    for ds in (train, test):
        assert ds.images.dtype == np.float32 and ds.images.shape == (len(ds), 1, 28, 28)
        assert ds.labels.dtype == np.int64 and 0 <= ds.images.min() and ds.images.max() <= 1
        assert ds.sha256 == mnist_module.BUNDLED and ds.root is None
    np.testing.assert_array_equal(np.bincount(train.labels), [400] * 10)
    np.testing.assert_array_equal(np.bincount(test.labels), [100] * 10)
    # The fixed rule: the last 100 of each digit (file order) are the test part.
    raw_images = read_idx(os.path.join(mnist_module.BUNDLED_DIR, "images-idx3-ubyte.gz"))
    raw_labels = read_idx(os.path.join(mnist_module.BUNDLED_DIR, "labels-idx1-ubyte.gz"))
    last = np.concatenate([np.flatnonzero(raw_labels == d)[-100:] for d in range(10)])
    np.testing.assert_array_equal(test.images[:, 0], raw_images[last] / np.float32(255))
    assert raw_images.shape == (5000, 28, 28) and raw_images.dtype == np.uint8
    train_rows = {r.tobytes() for r in train.images}
    assert not any(r.tobytes() in train_rows for r in test.images)


def test_bundled_files_match_readme_and_hashes():
    readme = open(os.path.join(mnist_module.BUNDLED_DIR, "README.md")).read()
    for name, digest in mnist_module.BUNDLED.items():
        assert sha256_file(os.path.join(mnist_module.BUNDLED_DIR, name)) == digest
        assert name in readme and digest in readme
    assert "CC BY-SA 3.0" in readme and "LeCun" in readme and "Cortes" in readme and "Burges" in readme


def test_mnist_epoch_through_loader_is_cheap():
    loader = DataLoader(MNIST(), batch_size=100, shuffle=True, seed=0)
    seen = np.zeros(10, np.int64)
    for x, y in loader:
        assert x.shape[1:] == (1, 28, 28) and x.dtype == np.float32
        seen += np.bincount(y._data, minlength=10)
    np.testing.assert_array_equal(seen, [400] * 10)


def fake_mnist(folder, prefix, n, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    ext = ".gz" if gz else ""
    write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte{ext}"), images)
    write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte{ext}"), labels)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_root(tmp_path, gz):
    images, labels = fake_mnist(tmp_path, "t10k", 7, gz=gz)
    ds = MNIST(tmp_path, train=False)
    np.testing.assert_array_equal(ds.images[:, 0], images / np.float32(255))
    np.testing.assert_array_equal(ds.labels, labels)
    ext = ".gz" if gz else ""
    assert sorted(ds.sha256) == [f"t10k-images-idx3-ubyte{ext}", f"t10k-labels-idx1-ubyte{ext}"]
    assert ds.sha256[f"t10k-labels-idx1-ubyte{ext}"] == sha256_file(tmp_path / f"t10k-labels-idx1-ubyte{ext}")


def test_mnist_missing_files_and_bad_contents(tmp_path):
    with pytest.raises(fn.FreenetError, match=r"lacks train-images-idx3-ubyte\[.gz\], "
                                              r"train-labels-idx1-ubyte\[.gz\]; pass download=True"):
        MNIST(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(fn.FreenetError, match="3 images but 4 labels"):
        MNIST(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(3, 11, np.uint8))
    with pytest.raises(fn.FreenetError, match="label 11"):
        MNIST(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 27), np.uint8))
    with pytest.raises(fn.FreenetError, match=r"\(N, 28, 28\)"):
        MNIST(tmp_path)
    with pytest.raises(fn.FreenetError, match="needs a root"):
        MNIST(download=True)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A fake mirror: fetch copies from a local folder; OFFICIAL holds the fake files' sizes and hashes."""
    source = tmp_path / "mirror"
    source.mkdir()
    fake_mnist(source, "train", 6, seed=1)
    fake_mnist(source, "t10k", 4, seed=2)
    official = {p.name: (p.stat().st_size, sha256_file(p)) for p in source.iterdir()}
    monkeypatch.setattr(mnist_module, "OFFICIAL", official)
    calls = []

    def fetch(url, dest, max_bytes, timeout=60):
        calls.append(url)
        name = url.rsplit("/", 1)[1]
        if not (source / name).exists():
            raise OSError(f"{url}: 404")
        assert os.path.getsize(source / name) <= max_bytes
        shutil.copyfile(source / name, dest)

    monkeypatch.setattr(data_files, "fetch", fetch)
    return source, calls


def test_mnist_download_fetches_verifies_and_reuses(tmp_path, mirror):
    source, calls = mirror
    root = tmp_path / "root"
    ds = MNIST(root, train=True, download=True)
    assert len(ds) == 6 and len(calls) == 2
    assert calls[0] == mnist_module.MIRRORS[0] + "train-images-idx3-ubyte.gz"
    assert sorted(os.listdir(root)) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert ds.sha256["train-images-idx3-ubyte.gz"] == mnist_module.OFFICIAL["train-images-idx3-ubyte.gz"][1]
    MNIST(root, train=True, download=True)
    assert len(calls) == 2, "files already present are not fetched again"


def test_mnist_download_falls_back_to_next_mirror(tmp_path, mirror, monkeypatch):
    source, calls = mirror
    monkeypatch.setattr(mnist_module, "MIRRORS", ("https://broken.invalid/", "https://good.invalid/"))
    real = data_files.fetch

    def flaky(url, dest, max_bytes, timeout=60):
        if "broken" in url:
            with open(dest, "wb") as f:
                f.write(b"partial")
            raise OSError("connection reset")
        real(url, dest, max_bytes)

    monkeypatch.setattr(data_files, "fetch", flaky)
    ds = MNIST(tmp_path / "r", train=False, download=True)
    assert len(ds) == 4
    assert sorted(os.listdir(tmp_path / "r")) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_mnist_download_rejects_wrong_hash(tmp_path, mirror, monkeypatch):
    source, calls = mirror
    name = "t10k-labels-idx1-ubyte.gz"
    size, _ = mnist_module.OFFICIAL[name]
    monkeypatch.setitem(mnist_module.OFFICIAL, name, (size, "0" * 64))
    root = tmp_path / "r"
    with pytest.raises(fn.FreenetError, match=f"could not download {name}:.*expected {size} bytes with 0000"):
        MNIST(root, train=False, download=True)
    assert len(calls) == 1 + len(mnist_module.MIRRORS)  # images once, labels on every mirror
    assert sorted(os.listdir(root)) == ["t10k-images-idx3-ubyte.gz"], "no bad or partial file is left"
