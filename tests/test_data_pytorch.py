"""freenet.utils.data as torch.utils.data: collation, Subset and random_split, samplers, DataLoader options.

Each test checks hand-computed results, so it can fail without PyTorch; the tests that also compare with
``torch.utils.data`` skip themselves where torch is not installed.
"""

import json
import warnings
from collections import OrderedDict, namedtuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import freenet as fn
import freenet.utils.data as fdata
from freenet.data import MNIST
from freenet.utils.data import (BatchSampler, ChainDataset, ConcatDataset, DataLoader, Dataset, IterableDataset,
                                RandomSampler, SequentialSampler, Subset, SubsetRandomSampler, TensorDataset,
                                WeightedRandomSampler, default_collate, default_convert, random_split)


class Items(Dataset):
    """A dataset over a list of ready-made examples (no get_batch of its own)."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def arrays(batch):
    """A batch with every Tensor replaced by its ndarray (containers kept), for comparisons."""
    if isinstance(batch, fn.Tensor):
        return batch._data
    if isinstance(batch, dict):
        return {k: arrays(v) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(arrays(v) for v in batch) if not hasattr(batch, "_fields") else batch
    return batch


def index_lists(loader):
    return [b[0].tolist() for b in loader]


# -- the import path ----------------------------------------------------------------------------------

def test_utils_data_reexports_the_one_implementation():
    import freenet.data as data
    for name in fdata.__all__:
        assert getattr(fdata, name) is getattr(data, name), name
    for name in ("Dataset", "TensorDataset", "DataLoader", "Subset", "random_split", "default_collate",
                 "Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler",
                 "BatchSampler", "ConcatDataset", "IterableDataset", "ChainDataset"):
        assert name in fdata.__all__


def test_generic_subscripts_as_in_typed_pytorch_code():
    class Squares(Dataset[tuple]):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return i, i * i

    class Backwards(fdata.Sampler[int]):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter(range(self.n - 1, -1, -1))

        def __len__(self):
            return self.n

    assert issubclass(Squares, Dataset) and issubclass(Backwards, fdata.Sampler)
    batches = [[t.tolist() for t in b] for b in DataLoader(Squares(), batch_size=2, sampler=Backwards(3))]
    assert batches == [[[2, 1], [4, 1]], [[0], [0]]]


def test_renamed_pytorch_script_runs_and_matches_torch():
    """The same script body under ``import freenet as torch`` and under real torch gives the same batches."""

    def script(torch, data):
        x = torch.tensor([[float(i), float(-i)] for i in range(10)])
        y = torch.tensor(list(range(10)))
        train = data.Subset(data.TensorDataset(x, y), list(range(8)))
        loader = data.DataLoader(train, batch_size=3, shuffle=False, num_workers=0)
        out = [[np.asarray(t).copy() for t in batch] for batch in loader]
        xb, yb = next(iter(loader))  # a batch of a tuple dataset unpacks into its fields
        out.append([np.asarray(xb), np.asarray(yb)])
        return out, len(loader), len(train)

    mine = script(fn, fdata)
    assert mine[1:] == (3, 8)
    np.testing.assert_array_equal(mine[0][2][1], [6, 7])
    assert mine[0][0][0].dtype == np.float32 and mine[0][0][1].dtype == np.int64
    torch = pytest.importorskip("torch")
    import torch.utils.data as tdata
    theirs = script(torch, tdata)
    assert mine[1:] == theirs[1:]
    for a, b in zip(mine[0], theirs[0]):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
            assert u.dtype == v.dtype


# -- collation ----------------------------------------------------------------------------------------

def nested_examples():
    return [{"image": np.full((2, 2), i, np.float32), "label": i, "weight": 0.5 * i, "ok": i % 2 == 0,
             "name": f"n{i}", "pair": (np.int16(i), [i, 10 * i]), "meta": {"id": np.array([i, -i])}}
            for i in range(3)]


def test_collate_nested_dicts_tuples_and_lists():
    b = default_collate(nested_examples())
    assert set(b) == {"image", "label", "weight", "ok", "name", "pair", "meta"}
    assert isinstance(b["image"], fn.Tensor) and b["image"].shape == (3, 2, 2) and b["image"].dtype == np.float32
    assert b["label"].dtype == np.int64 and b["label"].tolist() == [0, 1, 2]
    assert b["weight"].dtype == np.float32 and b["weight"].tolist() == [0.0, 0.5, 1.0]  # freenet: float32
    assert b["ok"].dtype == np.bool_ and b["ok"].tolist() == [True, False, True]
    assert b["name"] == ["n0", "n1", "n2"]
    first, second = b["pair"]
    assert isinstance(b["pair"], tuple) and first.dtype == np.int16 and first.tolist() == [0, 1, 2]
    assert isinstance(second, list) and [t.tolist() for t in second] == [[0, 1, 2], [0, 10, 20]]
    assert b["meta"]["id"].tolist() == [[0, 0], [1, -1], [2, -2]]


def test_collate_keeps_namedtuples_and_mapping_types():
    Point = namedtuple("Point", "x y")
    b = default_collate([Point(1, 2.0), Point(3, 4.0)])
    assert type(b) is Point and b.x.tolist() == [1, 3] and b.y.tolist() == [2.0, 4.0]
    od = default_collate([OrderedDict(b=1, a=2), OrderedDict(b=3, a=4)])
    assert type(od) is OrderedDict and list(od) == ["b", "a"] and od["a"].tolist() == [2, 4]


def test_collate_dtypes():
    assert default_collate([1, True]).dtype == np.int64
    assert default_collate([1, 2.5]).dtype == np.float32 and default_collate([1, 2.5]).tolist() == [1.0, 2.5]
    assert default_collate([np.float64(1), np.float64(2)]).dtype == np.float64  # NumPy scalars keep theirs
    assert default_collate([fn.tensor([1.0]), fn.tensor([2.0])]).tolist() == [[1.0], [2.0]]
    assert default_collate([b"a", b"b"]) == [b"a", b"b"]


def test_collate_matches_torch_default_collate():
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate as torch_collate
    examples = [{k: v for k, v in e.items() if k != "weight"} for e in nested_examples()]  # float64 in torch

    def plain(b):
        if hasattr(b, "numpy") and not isinstance(b, np.ndarray):
            return np.asarray(b)
        if isinstance(b, dict):
            return {k: plain(v) for k, v in b.items()}
        if isinstance(b, (tuple, list)) and not (b and isinstance(b[0], str)):
            return [plain(v) for v in b]  # torch makes tuples lists
        return b

    mine, theirs = plain(default_collate(examples)), plain(torch_collate(examples))

    def same(a, b):
        if isinstance(a, dict):
            assert a.keys() == b.keys()
            for k in a:
                same(a[k], b[k])
        elif isinstance(a, list):
            assert len(a) == len(b)
            for u, v in zip(a, b):
                same(u, v)
        else:
            np.testing.assert_array_equal(a, b)
            assert getattr(a, "dtype", None) == getattr(b, "dtype", None)

    same(mine, theirs)
    assert isinstance(torch_collate([0.5, 1.0]), torch.Tensor)


@pytest.mark.parametrize("examples, message", [
    ([{"a": [np.ones(2)]}, {"a": [np.ones(3)]}],
     r"field \['a'\]\[0\].*example 0 has shape \(2,\).*example 1 has shape \(3,\)"),
    ([(1, object()), (2, object())], r"field \[1\].*type object"),
    ([None, None], r"the examples.*type NoneType"),
    ([{"a": 1}, {"b": 1}], r"keys \['a'\] in example 0 but \['b'\] in example 1"),
    ([(1, 2), (1, 2, 3)], r"2 fields in example 0 but 3 in example 1"),
    ([{"s": "x"}, {"s": 3}], r"field \['s'\] is a str in example 0 but a int in example 1"),
    ([(np.array([None]),), (np.array([None]),)], r"field \[0\].*dtype object"),
    ([2**70, 1], r"outside int64"),
    ([], r"no examples"),
])
def test_collate_errors_name_the_field(examples, message):
    with pytest.raises(fn.FreenetError, match=message):
        default_collate(examples)


def test_loader_error_on_ragged_dataset():
    ds = Items([{"x": np.zeros(i + 1)} for i in range(4)])
    with pytest.raises(fn.FreenetError, match=r"field \['x'\].*shape \(1,\).*shape \(2,\)"):
        next(iter(DataLoader(ds, batch_size=2)))


def test_single_value_items_give_single_tensors():
    ds = Items([np.full(2, i) for i in range(5)])
    got = list(DataLoader(ds, batch_size=2))
    assert all(isinstance(b, fn.Tensor) for b in got)
    assert [b.tolist() for b in got] == [[[0, 0], [1, 1]], [[2, 2], [3, 3]], [[4, 4]]]
    plain = list(DataLoader(range(5), batch_size=3))  # any sized indexable, here ints
    assert [b.tolist() for b in plain] == [[0, 1, 2], [3, 4]] and plain[0].dtype == np.int64
    xs = [b for (b,) in DataLoader(TensorDataset(np.arange(4)), batch_size=2)]  # tuple items: 1-tuples
    assert [x.tolist() for x in xs] == [[0, 1], [2, 3]]


def test_single_tensor_items_match_torch():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader as TorchLoader
    rows = [np.arange(3, dtype=np.float32) + i for i in range(5)]
    mine = list(DataLoader(Items(rows), batch_size=2))
    theirs = list(TorchLoader(rows, batch_size=2))
    assert all(isinstance(t, torch.Tensor) for t in theirs)
    for a, b in zip(mine, theirs, strict=True):
        np.testing.assert_array_equal(a._data, b.numpy())


@given(n=st.integers(1, 20), batch_size=st.integers(1, 7), shuffle=st.booleans(), seed=st.integers(0, 100),
       width=st.integers(1, 3))
def test_get_batch_fast_path_equals_example_by_example(n, batch_size, shuffle, seed, width):
    x = np.arange(n * width, dtype=np.float32).reshape(n, width)
    y = np.arange(n) * 7
    fast = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, seed=seed)
    slow = DataLoader(Items([(fn.tensor(x[i]), int(y[i])) for i in range(n)]), batch_size=batch_size,
                      shuffle=shuffle, seed=seed)
    for a, b in zip(fast, slow, strict=True):
        assert isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) == 2
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u._data, v._data)
            assert u.dtype == v.dtype


def test_collate_fn_getitems_and_no_batching():
    calls = []

    def collate_fn(examples):
        calls.append(examples)
        return len(examples)

    ds = TensorDataset(np.arange(5))
    assert list(DataLoader(ds, batch_size=2, collate_fn=collate_fn)) == [2, 2, 1]
    assert calls[0][1][0].item() == 1  # the examples themselves, not a gathered batch

    class Many(Items):
        def __getitems__(self, indices):
            calls.append(("many", indices))
            return [self.items[i] for i in indices]

    assert [b.tolist() for b in DataLoader(Many([1, 2, 3]), batch_size=2)] == [[1, 2], [3]]
    assert calls[-2:] == [("many", [0, 1]), ("many", [2])]
    unbatched = list(DataLoader(Items([np.array([1, 2]), 3, {"a": np.float32(1)}]), batch_size=None))
    assert isinstance(unbatched[0], fn.Tensor) and unbatched[0].tolist() == [1, 2]
    assert unbatched[1] == 3 and isinstance(unbatched[2]["a"], fn.Tensor)  # ints stay ints, as in PyTorch
    assert default_convert((np.zeros(2), "s"))[1] == "s"


# -- Subset, ConcatDataset, random_split ---------------------------------------------------------------

def test_subset_indexing_and_fast_batches():
    base = TensorDataset(np.arange(10) * 10)
    sub = Subset(base, [7, 2, -1])
    assert len(sub) == 3 and sub[0][0].item() == 70 and sub[2][0].item() == 90 and sub[-1][0].item() == 90
    with pytest.raises(IndexError):
        sub[3]
    (b,) = next(iter(DataLoader(sub, batch_size=3)))
    assert b.tolist() == [70, 20, 90]
    with pytest.raises(fn.FreenetError, match=r"index 10 \(at position 1\) is out of range for a dataset of 10"):
        Subset(base, [0, 10])
    with pytest.raises(fn.FreenetError, match="sequence of ints"):
        Subset(base, [0.5])
    plain = Subset(Items(["a", "b", "c"]), fn.tensor([2, 0]))
    assert list(DataLoader(plain, batch_size=2)) == [["c", "a"]]


def test_subset_of_mnist_keeps_the_examples():
    train = MNIST(train=True)
    sub = Subset(train, [5, 3, 1000])
    images, labels = next(iter(DataLoader(sub, batch_size=3)))
    np.testing.assert_array_equal(images._data, train.images[[5, 3, 1000]])
    np.testing.assert_array_equal(labels._data, train.labels[[5, 3, 1000]])


def test_concat_dataset():
    a, b = Items([1, 2]), Items([3, 4, 5])
    both = a + b
    assert isinstance(both, ConcatDataset) and len(both) == 5 and both.cumulative_sizes == [2, 5]
    assert [both[i] for i in range(5)] == [1, 2, 3, 4, 5] and both[-1] == 5 and both[-5] == 1
    with pytest.raises(IndexError):
        both[5]
    assert [t.tolist() for t in DataLoader(both, batch_size=3)] == [[1, 2, 3], [4, 5]]
    with pytest.raises(fn.FreenetError, match="at least one"):
        ConcatDataset([])


@pytest.mark.filterwarnings("ignore:random_split")
@pytest.mark.parametrize("n, lengths, sizes", [
    (10, [3, 7], [3, 7]),
    (10, [0.5, 0.3, 0.2], [5, 3, 2]),
    (10, [1 / 3, 1 / 3, 1 / 3], [4, 3, 3]),   # floor gives 3, 3, 3; the remainder goes to the first
    (7, [0.1, 0.9], [1, 6]),
    (5, [1, 0], [5, 0]),                      # sums to 1: fractions, as in PyTorch
])
def test_random_split_lengths(n, lengths, sizes):
    fn.manual_seed(0)
    parts = random_split(range(n), lengths)
    assert [len(p) for p in parts] == sizes
    assert sorted(i for p in parts for i in p.indices) == list(range(n))
    assert all(isinstance(p, Subset) and isinstance(p.indices, list) for p in parts)


def test_random_split_lengths_match_torch():
    torch = pytest.importorskip("torch")
    from torch.utils.data import random_split as torch_split
    for n, lengths in [(10, [0.5, 0.3, 0.2]), (10, [1 / 3] * 3), (7, [0.1, 0.9]), (23, [0.7, 0.2, 0.1]),
                       (5, [1, 0]), (10, [3, 7]), (101, [0.25] * 4)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty splits warn, in both
            mine = [len(p) for p in random_split(range(n), lengths)]
            theirs = [len(p) for p in torch_split(range(n), lengths, generator=torch.Generator().manual_seed(0))]
        assert mine == theirs, (n, lengths)


def test_random_split_is_seeded():
    fn.manual_seed(5)
    a = [p.indices for p in random_split(range(20), [0.5, 0.5])]
    fn.manual_seed(5)
    b = [p.indices for p in random_split(range(20), [0.5, 0.5])]
    assert a == b
    perm = np.random.Generator(np.random.PCG64(42)).permutation(20).tolist()
    fn.manual_seed(6)  # an int generator does not depend on the global one
    c = [p.indices for p in random_split(range(20), [15, 5], generator=42)]
    assert c == [perm[:15], perm[15:]]
    d = [p.indices for p in random_split(range(20), [15, 5], generator=np.random.default_rng(42))]
    assert d == c


def test_random_split_errors_and_warning():
    with pytest.raises(fn.FreenetError, match=r"lengths \[3, 3\] sum to 6 but the dataset has 10"):
        random_split(range(10), [3, 3])
    with pytest.raises(fn.FreenetError, match="fractions must sum to 1"):
        random_split(range(10), [0.5, 0.3])
    with pytest.raises(fn.FreenetError, match="fraction at index 0 is not between 0 and 1"):
        random_split(range(10), [1.5, -0.5])
    with pytest.raises(fn.FreenetError, match="negative"):
        random_split(range(10), [12, -2])
    with pytest.raises(fn.FreenetError, match="ints or fractions"):
        random_split(range(10), ["5", "5"])
    with pytest.raises(fn.FreenetError, match="generator"):
        random_split(range(10), [5, 5], generator="seed")
    with pytest.warns(UserWarning, match="index 1 is empty"):
        random_split(range(2), [0.9, 0.1])


# -- samplers -----------------------------------------------------------------------------------------

def test_sequential_and_random_sampler():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3] and len(SequentialSampler(range(4))) == 4
    s = RandomSampler(range(6), generator=9)
    first, second = list(s), list(s)
    assert sorted(first) == sorted(second) == list(range(6)) and first != second  # a new order per pass
    expected = np.random.Generator(np.random.PCG64(np.random.SeedSequence([9, 0]))).permutation(6).tolist()
    assert first == expected
    s.set_epoch(0)
    assert list(s) == first
    fn.manual_seed(1)
    a = list(RandomSampler(range(50)))
    fn.manual_seed(1)
    assert list(RandomSampler(range(50))) == a  # seeded from freenet's generator


def test_random_sampler_num_samples_and_replacement():
    s = RandomSampler(range(4), num_samples=10, generator=0)
    got = list(s)
    assert len(got) == len(s) == 10
    assert sorted(got[:4]) == sorted(got[4:8]) == [0, 1, 2, 3] and len(set(got[8:])) == 2
    r = RandomSampler(range(3), replacement=True, num_samples=50, generator=0)
    got = list(r)
    assert len(got) == 50 and set(got) == {0, 1, 2}
    with pytest.raises(fn.FreenetError, match="num_samples"):
        RandomSampler(range(3), num_samples=0)
    with pytest.raises(fn.FreenetError, match="replacement"):
        RandomSampler(range(3), replacement=1)


def test_subset_random_sampler():
    s = SubsetRandomSampler([10, 20, 30, 40], generator=3)
    a, b = list(s), list(s)
    assert sorted(a) == sorted(b) == [10, 20, 30, 40] and len(s) == 4 and a != b


def test_weighted_random_sampler():
    s = WeightedRandomSampler([0.0, 1.0, 3.0], num_samples=4000, generator=0)
    got = np.array(list(s))
    assert len(got) == len(s) == 4000 and 0 not in got
    assert 0.70 < np.mean(got == 2) < 0.80  # 3/4 expected; a fixed seed makes this deterministic
    u = list(WeightedRandomSampler(fn.tensor([1.0, 1.0, 0.0, 2.0]), 3, replacement=False, generator=1))
    assert sorted(u) == [0, 1, 3]
    with pytest.raises(fn.FreenetError, match="1d sequence"):
        WeightedRandomSampler([[1.0, 2.0]], 2)
    with pytest.raises(fn.FreenetError, match="without replacement from 2 non-zero"):
        WeightedRandomSampler([1.0, 0.0, 1.0], 3, replacement=False)
    with pytest.raises(fn.FreenetError, match="non-negative"):
        WeightedRandomSampler([1.0, -1.0], 1)
    with pytest.raises(fn.FreenetError, match="num_samples"):
        WeightedRandomSampler([1.0], 0)


def test_weighted_random_sampler_like_torch():
    torch = pytest.importorskip("torch")
    from torch.utils.data import WeightedRandomSampler as TorchWeighted
    for weights, k, replacement in [([0.1, 0.9, 0.4], 7, True), ([1.0, 2.0, 3.0, 4.0], 3, False)]:
        mine = list(WeightedRandomSampler(weights, k, replacement))
        theirs = list(TorchWeighted(weights, k, replacement))
        assert len(mine) == len(theirs) == k and all(type(i) is int for i in mine)
        assert set(mine) <= set(range(len(weights))) and (replacement or len(set(mine)) == k)
        assert all(isinstance(i, int) for i in theirs) and torch is not None


@given(n=st.integers(0, 30), batch_size=st.integers(1, 8), drop_last=st.booleans())
def test_batch_sampler(n, batch_size, drop_last):
    got = list(BatchSampler(SequentialSampler(range(n)), batch_size, drop_last))
    full = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    expected = [b for b in full if len(b) == batch_size] if drop_last else full
    assert got == expected and len(BatchSampler(range(n), batch_size, drop_last)) == len(expected)
    assert list(BatchSampler(list(range(n)), batch_size, drop_last)) == expected  # any iterable


def test_batch_sampler_matches_torch():
    pytest.importorskip("torch")
    from torch.utils.data import BatchSampler as TorchBatch, RandomSampler as TorchRandom
    from torch.utils.data import SequentialSampler as TorchSequential
    for n, batch_size, drop_last in [(0, 3, False), (10, 3, False), (10, 3, True), (12, 4, True), (5, 8, False)]:
        mine = BatchSampler(SequentialSampler(range(n)), batch_size, drop_last)
        theirs = TorchBatch(TorchSequential(range(n)), batch_size, drop_last)
        assert list(mine) == list(theirs) and len(mine) == len(theirs)
        shuffled = BatchSampler(RandomSampler(range(n)), batch_size, drop_last)  # sizes agree, orders differ
        assert [len(b) for b in shuffled] == [len(b) for b in TorchBatch(TorchRandom(range(n)) if n else [],
                                                                          batch_size, drop_last)]


def test_batch_sampler_errors():
    with pytest.raises(fn.FreenetError, match="batch_size"):
        BatchSampler(range(3), 0, False)
    with pytest.raises(fn.FreenetError, match="batch_size"):
        BatchSampler(range(3), True, False)
    with pytest.raises(fn.FreenetError, match="drop_last"):
        BatchSampler(range(3), 2, 1)


# -- DataLoader options -------------------------------------------------------------------------------

def test_loader_sampler_and_batch_sampler():
    ds = TensorDataset(np.arange(10))
    assert index_lists(DataLoader(ds, batch_size=2, sampler=[9, 8, 7])) == [[9, 8], [7]]
    custom = [[0, 5], [3], [9, 9, 1]]
    loader = DataLoader(ds, batch_sampler=custom)
    assert index_lists(loader) == custom and len(loader) == 3 and loader.batch_size is None
    s = SubsetRandomSampler([1, 2, 3, 4, 5], generator=3)
    loader = DataLoader(ds, batch_size=4, sampler=s)
    e0, e1 = index_lists(loader), index_lists(loader)
    assert sorted(sum(e0, [])) == [1, 2, 3, 4, 5] and e0 != e1
    again = DataLoader(ds, batch_size=4, sampler=SubsetRandomSampler([1, 2, 3, 4, 5], generator=3))
    assert index_lists(again) == e0


def test_loader_exclusions_and_worker_options():
    ds = TensorDataset(np.arange(6))
    cases = [
        (dict(sampler=[0, 1], shuffle=True), "mutually exclusive with shuffle"),
        (dict(batch_sampler=[[0]], batch_size=2), "batch_sampler option is mutually exclusive"),
        (dict(batch_sampler=[[0]], drop_last=True), "batch_sampler option is mutually exclusive"),
        (dict(batch_size=None, drop_last=True), "drop_last"),
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(num_workers=-1), "num_workers must be >= 0"),
        (dict(timeout=-1), "timeout"),
        (dict(prefetch_factor=2), "prefetch_factor"),
        (dict(persistent_workers=True), "persistent_workers"),
        (dict(seed=1, generator=2), "seed or generator"),
        (dict(shuffle=True, generator="x"), "generator"),
    ]
    for kwargs, message in cases:
        with pytest.raises(fn.FreenetError, match=message):
            DataLoader(ds, **kwargs)
    called = []
    workers = DataLoader(ds, batch_size=4, shuffle=True, seed=3, num_workers=2, pin_memory=True, timeout=5,
                         persistent_workers=True, prefetch_factor=4, worker_init_fn=called.append)
    assert index_lists(workers) == index_lists(DataLoader(ds, batch_size=4, shuffle=True, seed=3))
    assert called == [] and fdata.get_worker_info() is None


def test_loader_generator_and_seed_agree():
    ds = TensorDataset(np.arange(30))
    assert index_lists(DataLoader(ds, batch_size=5, shuffle=True, generator=11)) == \
        index_lists(DataLoader(ds, batch_size=5, shuffle=True, seed=11))
    g1, g2 = np.random.default_rng(4), np.random.default_rng(4)
    assert index_lists(DataLoader(ds, batch_size=5, shuffle=True, generator=g1)) == \
        index_lists(DataLoader(ds, batch_size=5, shuffle=True, generator=g2))
    assert isinstance(DataLoader(ds, shuffle=True).sampler, RandomSampler)
    assert isinstance(DataLoader(ds).sampler, SequentialSampler)


def test_loader_order_does_not_depend_on_thread_count():
    ds = TensorDataset(np.arange(40))
    threads = fn.get_num_threads()
    try:
        fn.set_num_threads(1)
        one = index_lists(DataLoader(ds, batch_size=6, sampler=RandomSampler(ds, generator=8)))
        fn.set_num_threads(2)
        two = index_lists(DataLoader(ds, batch_size=6, sampler=RandomSampler(ds, generator=8)))
    finally:
        fn.set_num_threads(threads)
    assert one == two


@given(n=st.integers(1, 25), batch_size=st.integers(1, 6), cut=st.integers(0, 20),
       replacement=st.booleans())
def test_resume_with_a_random_sampler(n, batch_size, cut, replacement):
    ds = TensorDataset(np.arange(n))

    def make():
        return DataLoader(ds, batch_size=batch_size, sampler=RandomSampler(ds, replacement, generator=5))

    reference = make()
    full = index_lists(reference) + index_lists(reference)
    cut = min(cut, len(full))
    first, got = make(), []
    while len(got) < cut:
        for (b,) in first:
            got.append(b.tolist())
            if len(got) == cut:
                break
    state = json.loads(json.dumps(first.state_dict()))
    resumed = DataLoader(ds, batch_size=batch_size, sampler=RandomSampler(ds, replacement, generator=99))
    resumed.load_state_dict(state)
    while len(got) < len(full):
        got += index_lists(resumed)
    assert got == full


def test_a_torch_style_generator_object_is_accepted():
    if not hasattr(fn, "Generator"):
        pytest.skip("freenet.Generator is not there yet")
    def split():
        return [p.indices for p in random_split(range(8), [0.5, 0.5], generator=fn.Generator().manual_seed(3))]

    assert split() == split() and sorted(sum(split(), [])) == list(range(8))
    ds = TensorDataset(np.arange(8))

    def loader():
        return DataLoader(ds, batch_size=3, shuffle=True, generator=fn.Generator().manual_seed(3))

    assert index_lists(loader()) == index_lists(loader())


# -- IterableDataset ----------------------------------------------------------------------------------

def stream_classes(base):
    """(Stream, Sized): iterable datasets over a list of examples built on ``base`` (freenet's or torch's
    IterableDataset); Stream counts the examples it has handed out, Sized also has a length."""

    class Stream(base):
        def __init__(self, items):
            self.items, self.served, self.passes = list(items), 0, 0

        def __iter__(self):
            self.passes += 1
            for x in self.items:
                self.served += 1
                yield x

    class Sized(Stream):
        def __len__(self):
            return len(self.items)

    return Stream, Sized


Stream, SizedStream = stream_classes(IterableDataset)


@given(n=st.integers(0, 20), batch_size=st.integers(1, 7), drop_last=st.booleans())
def test_iterable_dataset_batches_consecutive_items(n, batch_size, drop_last):
    loader = DataLoader(Stream(range(n)), batch_size=batch_size, drop_last=drop_last)
    chunks = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    expected = [c for c in chunks if len(c) == batch_size] if drop_last else chunks
    got = [b.tolist() for b in loader]
    assert got == expected and all(b.dtype == np.int64 for b in loader)
    assert len(DataLoader(SizedStream(range(n)), batch_size=batch_size, drop_last=drop_last)) == len(expected)


def test_iterable_dataset_collation_and_no_batching():
    examples = [{"x": np.full(2, i, np.float32), "y": i, "name": f"n{i}"} for i in range(3)]
    ds = Stream(examples)
    assert isinstance(ds, Dataset) and list(ds) == examples  # list() works: no __len__, no error
    first, second = list(DataLoader(ds, batch_size=2))
    assert first["x"].shape == (2, 2) and first["x"].dtype == np.float32 and first["y"].tolist() == [0, 1]
    assert first["name"] == ["n0", "n1"] and second["y"].tolist() == [2] and second["name"] == ["n2"]
    unbatched = list(DataLoader(Stream([np.arange(2), 3, (np.float32(1), "s")]), batch_size=None))
    assert isinstance(unbatched[0], fn.Tensor) and unbatched[0].tolist() == [0, 1]
    assert unbatched[1] == 3 and isinstance(unbatched[2][0], fn.Tensor) and unbatched[2][1] == "s"
    assert list(DataLoader(Stream(range(5)), batch_size=2, collate_fn=sum)) == [1, 5, 4]
    assert list(DataLoader(Stream(range(3)), batch_size=None, collate_fn=lambda x: -x)) == [0, -1, -2]
    assert list(DataLoader(Stream([]), batch_size=3)) == []


def test_iterable_dataset_is_read_lazily_once_per_epoch():
    ds = Stream(range(10))
    loader = DataLoader(ds, batch_size=3)
    it = iter(loader)
    assert next(it).tolist() == [0, 1, 2] and ds.served == 3  # no read-ahead
    assert [b.tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]  # a new pass
    assert ds.passes == 2 and loader.epoch == 2
    with pytest.raises(fn.FreenetError, match="ended by a newer iteration"):
        next(it)


def test_iterable_dataset_loader_options():
    ds = Stream(range(4))
    for kwargs, message in [(dict(shuffle=True), "expected unspecified shuffle option, but got shuffle=True"),
                            (dict(sampler=[0, 1]), r"expected unspecified sampler option, but got sampler=\[0, 1\]"),
                            (dict(batch_sampler=[[0]]), "expected unspecified batch_sampler option"),
                            (dict(batch_size=None, drop_last=True), "drop_last")]:
        with pytest.raises(fn.FreenetError, match=message):
            DataLoader(ds, **kwargs)
    assert [b.tolist() for b in DataLoader(ds, shuffle=False, batch_size=3)] == [[0, 1, 2], [3]]
    called = []
    workers = DataLoader(ds, batch_size=3, num_workers=2, worker_init_fn=called.append, persistent_workers=True)
    assert [b.tolist() for b in workers] == [[0, 1, 2], [3]] and called == []  # in-process: no duplicates
    with pytest.raises(fn.FreenetError, match="must have __len__ and __getitem__, or be an IterableDataset"):
        DataLoader(iter(range(3)))


def test_iterable_dataset_length():
    for batch_size, drop_last, expected in [(2, False, 3), (2, True, 2), (5, False, 1), (6, True, 0), (None, False, 5)]:
        assert len(DataLoader(SizedStream(range(5)), batch_size=batch_size, drop_last=drop_last)) == expected
    loader = DataLoader(Stream(range(5)), batch_size=2)
    with pytest.raises(TypeError, match="IterableDataset needs the dataset's __len__, and Stream has none"):
        len(loader)
    assert len(list(loader)) == 3  # list() does not need the length
    with pytest.raises(TypeError, match="has no len"):
        len(Stream([]))


def test_iterable_dataset_position_cannot_be_saved():
    loader = DataLoader(SizedStream(range(5)), batch_size=2)
    with pytest.raises(fn.FreenetError, match="state_dict: .*needs a map-style dataset"):
        loader.state_dict()
    with pytest.raises(fn.FreenetError, match="load_state_dict: .*needs a map-style dataset"):
        loader.load_state_dict({"epoch": 0, "batch": 1, "seed": 0})


def test_chain_dataset():
    a, b = SizedStream([1, 2]), SizedStream([3, 4, 5])
    both = a + b
    assert isinstance(both, ChainDataset) and isinstance(both, IterableDataset)
    assert list(both) == [1, 2, 3, 4, 5] and len(both) == 5
    assert [t.tolist() for t in DataLoader(both, batch_size=2)] == [[1, 2], [3, 4], [5]]
    assert list(ChainDataset([Stream([0]), both, ChainDataset([])])) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(TypeError):
        len(a + Stream([6]))
    with pytest.raises(fn.FreenetError, match="dataset 1 is a Items, not an IterableDataset"):
        ChainDataset([a, Items([1])])
    with pytest.raises(fn.FreenetError, match="dataset 1 is an IterableDataset"):
        Items([1]) + a


def test_iterable_dataset_matches_torch():
    torch = pytest.importorskip("torch")
    import torch.utils.data as tdata

    def script(data):
        stream, sized = stream_classes(data.IterableDataset)
        examples = [{"x": np.arange(3, dtype=np.float32) + i, "y": i, "name": f"n{i}"} for i in range(7)]
        out = []
        for batch_size, drop_last in [(1, False), (3, False), (3, True), (7, True), (8, True), (None, False)]:
            loader = data.DataLoader(sized(examples), batch_size=batch_size, drop_last=drop_last, num_workers=0)
            out.append((len(loader), [arrays(b) for b in loader]))
        chained = data.DataLoader(stream(range(3)) + sized(range(4)), batch_size=2)
        out.append([np.asarray(b).tolist() for b in chained])
        out.append(len(data.ChainDataset([sized(range(2)), sized(range(5))])))
        for kwargs in (dict(shuffle=True), dict(sampler=[0]), dict(batch_sampler=[[0]])):
            with pytest.raises(ValueError) as e:
                data.DataLoader(stream(range(3)), **kwargs)
            out.append(str(e.value))
        with pytest.raises(TypeError):
            len(data.DataLoader(stream(range(3))))
        return out

    def plain(b):
        if isinstance(b, torch.Tensor):
            return b.numpy()
        if isinstance(b, dict):
            return {k: plain(v) for k, v in b.items()}
        if isinstance(b, (tuple, list)):
            return [plain(v) for v in b]
        return b

    mine, theirs = script(fdata), script(tdata)
    assert mine[6:] == theirs[6:]
    for (n1, b1), (n2, b2) in zip(mine[:6], theirs[:6], strict=True):
        assert n1 == n2 and len(b1) == len(b2) == n1
        for u, v in zip(b1, b2, strict=True):
            v = plain(v)
            assert u.keys() == v.keys() and u["name"] == v["name"]
            for k in ("x", "y"):
                np.testing.assert_array_equal(u[k], v[k])
                assert np.asarray(u[k]).dtype == np.asarray(v[k]).dtype
