"""Reductions and shape ops: forward against NumPy, backward against finite differences in float64,
over generated shapes, axes and non-contiguous inputs."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import freenet as fn

from arrays import layouts, leaf, seeds, shapes


@st.composite
def shape_and_dims(draw, min_side=0):
    shape = draw(shapes(min_side=min_side))
    ndim = len(shape)
    kind = draw(st.sampled_from(["all", "int", "tuple"])) if ndim else "all"
    if kind == "all":
        dim = None
    elif kind == "int":
        dim = draw(st.integers(-ndim, ndim - 1))
    else:
        dim = tuple(draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True)))
    return shape, dim, draw(st.booleans())


def _count(shape, dim):
    if dim is None:
        return int(np.prod(shape))
    dims = (dim,) if isinstance(dim, int) else dim
    return int(np.prod([shape[d] for d in dims]))


def _np_logsumexp(v, axis, keepdims):
    return np.log(np.sum(np.exp(v), axis=axis, keepdims=keepdims))


REDUCTIONS = [
    ("sum", lambda x, d, k: x.sum(d, keepdim=k), lambda v, d, k: np.sum(v, axis=d, keepdims=k), 0),
    ("mean", lambda x, d, k: x.mean(d, keepdim=k), lambda v, d, k: np.mean(v, axis=d, keepdims=k), 1),
    ("var", lambda x, d, k: x.var(d, keepdim=k), lambda v, d, k: np.var(v, axis=d, keepdims=k, ddof=1), 2),
    ("var0", lambda x, d, k: x.var(d, keepdim=k, correction=0),
     lambda v, d, k: np.var(v, axis=d, keepdims=k), 1),
    ("amax", lambda x, d, k: x.amax(d, keepdim=k), lambda v, d, k: np.max(v, axis=d, keepdims=k), 1),
    ("amin", lambda x, d, k: x.amin(d, keepdim=k), lambda v, d, k: np.min(v, axis=d, keepdims=k), 1),
    ("logsumexp", lambda x, d, k: x.logsumexp(d, keepdim=k), _np_logsumexp, 1),
]


@pytest.mark.parametrize("name,f,ref,min_count", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
@given(case=shape_and_dims(), seed=seeds, layout=layouts)
def test_reduction(name, f, ref, min_count, case, seed, layout):
    shape, dim, keepdim = case
    assume(_count(shape, dim) >= min_count)
    x, v = leaf(shape, seed, layout=layout)
    axis = tuple(dim) if isinstance(dim, tuple) else dim
    np.testing.assert_allclose(f(x, dim, keepdim)._data, ref(v, axis, keepdim), rtol=1e-12, atol=1e-12)
    assert fn.gradcheck(lambda t: f(t, dim, keepdim), x)
    x32, v32 = leaf(shape, seed, layout=layout, dtype=np.float32)
    assert f(x32, dim, keepdim).dtype == np.float32


def test_max_ties_share_the_gradient_evenly():
    x = fn.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad._data, [[0, 0.5, 0.5], [0, 0, 0]])


def test_logsumexp_and_softmax_are_stable():
    x = fn.tensor([[1e4, 0.0, -1e4], [-np.inf, -np.inf, 0.0]], requires_grad=True)
    lse = x.logsumexp(1)
    np.testing.assert_allclose(lse._data, [1e4, 0.0])
    sm = fn.softmax(x, dim=1)
    np.testing.assert_allclose(sm._data, [[1, 0, 0], [0, 0, 1]])
    (lse.sum() + fn.log_softmax(x, dim=1)[:, 0].sum()).backward()
    assert np.isfinite(x.grad._data).all()
    assert fn.tensor([-np.inf, -np.inf]).logsumexp().item() == -np.inf


def test_argmax_argmin():
    x = fn.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    np.testing.assert_array_equal(x.argmax(1)._data, [1, 0])
    np.testing.assert_array_equal(x.argmin(dim=0)._data, [0, 1, 0])
    assert x.argmax().item() == 3


# -- shape ops ----------------------------------------------------------------------------------------

@given(shape=shapes(), seed=seeds, layout=layouts, data=st.data())
def test_reshape_flatten_squeeze_unsqueeze(shape, seed, layout, data):
    x, v = leaf(shape, seed, layout=layout)
    targets = [(-1,), shape[::-1], (1,) + shape]
    for target in targets:
        np.testing.assert_array_equal(x.reshape(target)._data, v.reshape(target))
        assert fn.gradcheck(lambda t: t.reshape(*target), x)
    np.testing.assert_array_equal(x.view(-1)._data, v.reshape(-1))
    ndim = len(shape)
    if ndim:
        start = data.draw(st.integers(-ndim, ndim - 1))
        end = data.draw(st.integers(start % ndim, ndim - 1))
        expected = v.reshape(shape[:start % ndim] + (-1,) + shape[end + 1:]) if 0 not in shape else None
        flat = x.flatten(start, end)
        if expected is not None:
            np.testing.assert_array_equal(flat._data, expected)
        assert fn.gradcheck(lambda t: t.flatten(start, end), x)
    dim = data.draw(st.integers(-ndim - 1, ndim))
    np.testing.assert_array_equal(x.unsqueeze(dim)._data, np.expand_dims(v, dim))
    assert fn.gradcheck(lambda t: t.unsqueeze(dim).squeeze(), x)
    np.testing.assert_array_equal(x.squeeze()._data, np.squeeze(v))


def test_squeeze_of_a_dim_that_is_not_1_is_a_no_op():
    assert fn.zeros(2, 1, 3).squeeze(0).shape == (2, 1, 3)
    assert fn.zeros(2, 1, 3).squeeze(1).shape == (2, 3)


@given(shape=shapes(min_dims=1), seed=seeds, layout=layouts, data=st.data())
def test_transpose_permute(shape, seed, layout, data):
    x, v = leaf(shape, seed, layout=layout)
    ndim = len(shape)
    d0, d1 = data.draw(st.integers(-ndim, ndim - 1)), data.draw(st.integers(-ndim, ndim - 1))
    np.testing.assert_array_equal(x.transpose(d0, d1)._data, np.swapaxes(v, d0, d1))
    weights = fn.tensor(np.swapaxes(v, d0, d1))  # copied now: gradcheck perturbs v in place
    assert fn.gradcheck(lambda t: t.transpose(d0, d1) * weights, x)
    perm = data.draw(st.permutations(range(ndim)))
    np.testing.assert_array_equal(x.permute(*perm)._data, np.transpose(v, perm))
    assert fn.gradcheck(lambda t: t.permute(perm) ** 2, x)
    np.testing.assert_array_equal(x.T._data, v.T)


@given(shape=shapes(max_dims=3), seed=seeds, data=st.data())
def test_expand(shape, seed, data):
    # Make some dims 1 so they can stretch, and add leading dims.
    small = tuple(1 if data.draw(st.booleans()) else n for n in shape)
    x, v = leaf(small, seed)
    lead = data.draw(st.lists(st.integers(0, 3), max_size=2))
    target = tuple(lead) + tuple(n if s == 1 else -1 for s, n in zip(small, shape))
    expected = np.broadcast_to(v, tuple(lead) + tuple(n if s == 1 else s for s, n in zip(small, shape)))
    np.testing.assert_array_equal(x.expand(*target)._data, expected)
    assert fn.gradcheck(lambda t: t.expand(target) * 1.0, x)


@given(shape=shapes(min_dims=1, max_dims=3), seed=seeds, layout=layouts, data=st.data())
def test_cat_and_stack(shape, seed, layout, data):
    ndim = len(shape)
    dim = data.draw(st.integers(-ndim, ndim - 1))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    parts = []
    for i, size in enumerate(sizes):
        part_shape = list(shape)
        part_shape[dim] = size
        parts.append(leaf(tuple(part_shape), seed + i, layout=layout))
    tensors, arrays = [p[0] for p in parts], [p[1] for p in parts]
    np.testing.assert_array_equal(fn.cat(tensors, dim)._data, np.concatenate(arrays, dim))
    assert fn.gradcheck(lambda *ts: fn.cat(ts, dim), *tensors)
    same = [leaf(shape, seed + 10 + i, layout=layout) for i in range(len(sizes))]
    sdim = data.draw(st.integers(-ndim - 1, ndim))
    np.testing.assert_array_equal(fn.stack([s[0] for s in same], sdim)._data, np.stack([s[1] for s in same], sdim))
    assert fn.gradcheck(lambda *ts: fn.stack(ts, sdim), *[s[0] for s in same])


@given(shape=shapes(min_dims=1, max_dims=4), seed=seeds, layout=layouts, data=st.data())
def test_pad(shape, seed, layout, data):
    x, v = leaf(shape, seed, layout=layout)
    n_dims = data.draw(st.integers(1, len(shape)))
    pad = tuple(data.draw(st.lists(st.integers(0, 2), min_size=2 * n_dims, max_size=2 * n_dims)))
    widths = [(0, 0)] * len(shape)
    for i in range(n_dims):
        widths[len(shape) - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    out = fn.nn.functional.pad(x, pad, value=0.5)
    np.testing.assert_array_equal(out._data, np.pad(v, widths, constant_values=0.5))
    assert fn.gradcheck(lambda t: fn.nn.functional.pad(t, pad), x)


@st.composite
def basic_index(draw, shape):
    index = []
    for n in shape[:draw(st.integers(0, len(shape)))]:
        if draw(st.booleans()):
            index.append(None)  # a new axis; consumes no dim
        if draw(st.booleans()) and n > 0:
            index.append(draw(st.integers(-n, n - 1)))
        else:
            start = draw(st.none() | st.integers(-n - 1, n + 1))
            stop = draw(st.none() | st.integers(-n - 1, n + 1))
            step = draw(st.none() | st.sampled_from([1, 2, -1, -2]))
            index.append(slice(start, stop, step))
    if draw(st.booleans()):
        index.append(Ellipsis)
    return tuple(index)


@given(shape=shapes(min_dims=1), seed=seeds, layout=layouts, data=st.data())
def test_basic_indexing(shape, seed, layout, data):
    x, v = leaf(shape, seed, layout=layout)
    index = data.draw(basic_index(shape))
    np.testing.assert_array_equal(x[index]._data, v[index])
    assert fn.gradcheck(lambda t: t[index], x)


@given(shape=shapes(min_dims=1, min_side=1), seed=seeds, layout=layouts, data=st.data())
def test_integer_array_indexing_accumulates_repeats(shape, seed, layout, data):
    x, v = leaf(shape, seed, layout=layout)
    rows = np.array(data.draw(st.lists(st.integers(-shape[0], shape[0] - 1), max_size=6)), dtype=np.int64)
    for index in (rows, fn.tensor(rows), (rows, Ellipsis), [int(r) for r in rows]):
        np.testing.assert_array_equal(x[index]._data, v[rows])
    assert fn.gradcheck(lambda t: t[rows], x)
    if len(shape) >= 2:
        cols = np.array(data.draw(st.lists(st.integers(0, shape[1] - 1), min_size=len(rows), max_size=len(rows))),
                        dtype=np.int64)
        np.testing.assert_array_equal(x[rows, cols]._data, v[rows, cols])
        assert fn.gradcheck(lambda t: t[rows, cols], x)


def test_repeated_index_gradient_counts_each_use():
    x = fn.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[[0, 0, 2, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad._data, [3.0, 0.0, 1.0])


@given(shape=shapes(min_dims=1), seed=seeds, layout=layouts)
def test_boolean_mask_indexing(shape, seed, layout):
    x, v = leaf(shape, seed, layout=layout)
    mask = v > 0
    np.testing.assert_array_equal(x[mask]._data, v[mask])
    np.testing.assert_array_equal(x[fn.tensor(mask)]._data, v[mask])
    assert fn.gradcheck(lambda t: t[mask], x)
    if len(shape) >= 2:
        row_mask = np.random.default_rng(seed).random(shape[0]) < 0.5
        np.testing.assert_array_equal(x[row_mask]._data, v[row_mask])
        assert fn.gradcheck(lambda t: t[row_mask], x)


def test_iteration_and_len():
    x = fn.arange(6).reshape(3, 2)
    assert len(x) == 3
    assert [row.tolist() for row in x] == [[0, 1], [2, 3], [4, 5]]
