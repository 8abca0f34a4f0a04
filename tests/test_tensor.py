"""Making tensors, their dtypes, conversions, seeding and printing."""

import numpy as np
import pytest

import freenet as fn


def test_default_dtypes_follow_pytorch():
    assert fn.tensor([1.0, 2.0]).dtype == np.float32
    assert fn.tensor(3.5).dtype == np.float32
    assert fn.tensor([1, 2]).dtype == np.int64
    assert fn.tensor([True]).dtype == np.bool_
    assert fn.tensor(np.zeros(2)).dtype == np.float64  # NumPy arrays keep their dtype
    assert fn.tensor([1.0], dtype=fn.float64).dtype == np.float64
    assert fn.tensor([1.0], dtype="float64").dtype == np.float64


def test_tensor_copies_and_from_numpy_shares():
    a = np.arange(4.0)
    t, s = fn.tensor(a), fn.from_numpy(a)
    a[0] = 9
    assert t._data[0] == 0 and s._data[0] == 9


def test_factories():
    assert fn.zeros(2, 3).shape == (2, 3) and fn.zeros((2, 3)).dtype == np.float32
    assert fn.ones(4, dtype=fn.float64).dtype == np.float64
    assert fn.full((2,), 7.0).tolist() == [7.0, 7.0]
    assert fn.full((2,), 7).dtype == np.int64
    assert fn.empty(3).shape == (3,)
    assert fn.arange(5).tolist() == [0, 1, 2, 3, 4]
    assert fn.arange(1, 2, 0.5).dtype == np.float32
    x = fn.randn(3, 2, dtype=fn.float64)
    for like in (fn.zeros_like, fn.ones_like, fn.empty_like, fn.rand_like, fn.randn_like):
        y = like(x)
        assert y.shape == (3, 2) and y.dtype == np.float64
    assert fn.full_like(x, 2.0).tolist() == [[2.0, 2.0]] * 3
    assert fn.zeros(2, requires_grad=True).requires_grad
    with pytest.raises(fn.FreenetError, match="non-negative"):
        fn.zeros(-1)


def test_manual_seed_reproduces_random_tensors():
    fn.manual_seed(123)
    a, b = fn.randn(5), fn.rand(5)
    fn.manual_seed(123)
    np.testing.assert_array_equal(a._data, fn.randn(5)._data)
    np.testing.assert_array_equal(b._data, fn.rand(5)._data)
    fn.manual_seed(124)
    assert not np.array_equal(a._data, fn.randn(5)._data)
    assert fn.randn(1000).dtype == np.float32
    r = fn.rand(1000)._data
    assert r.min() >= 0 and r.max() < 1


def test_conversions():
    t = fn.tensor([[1.0, 2.0]])
    assert t.size() == (1, 2) and t.size(1) == 2 and t.numel() == 2 and t.ndim == 2
    assert fn.tensor([2.5]).item() == 2.5 and float(fn.tensor(2.5)) == 2.5 and int(fn.tensor(3)) == 3
    assert np.asarray(t).shape == (1, 2) and t.numpy() is t._data
    assert bool(fn.tensor([1.0])) and not bool(fn.tensor(0.0))
    with pytest.raises(fn.FreenetError, match="ambiguous"):
        bool(t)
    with pytest.raises(fn.FreenetError, match="one-element"):
        t.item()


def test_repr():
    assert repr(fn.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(fn.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert "dtype=float64" in repr(fn.tensor(np.ones(1)))


def test_tensors_are_hashable_by_identity():
    a, b = fn.tensor([1.0]), fn.tensor([1.0])
    assert len({a, b}) == 2


def test_malloc_keeps_freed_memory_on_linux():
    import sys
    from freenet.runtime import keep_freed_memory
    assert keep_freed_memory() == sys.platform.startswith("linux")
