"""Conv, pooling, batch norm and dropout as differentiable ops: gradchecked in float64 over generated
geometries and non-contiguous inputs; forwards held to the kernels' NumPy twins."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import freenet as fn
from freenet import kernels
from freenet.ops.conv import adaptive_avg_pool2d, avg_pool2d, conv2d, max_pool2d
from freenet.ops.norm import batch_norm, batch_norm_relu, dropout

from arrays import layouts, leaf, seeds


@st.composite
def conv_case(draw):
    groups = draw(st.sampled_from([1, 1, 2]))
    c = groups * draw(st.integers(1, 2))
    k = groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride, padding, dilation = draw(st.integers(1, 2)), draw(st.integers(0, 2)), draw(st.integers(1, 2))
    h = draw(st.integers(1, 5))
    w = draw(st.integers(1, 5))
    assume(h + 2 * padding >= dilation * (kh - 1) + 1 and w + 2 * padding >= dilation * (kw - 1) + 1)
    n = draw(st.integers(1, 2))
    return (n, c, h, w), (k, c // groups, kh, kw), stride, padding, dilation, groups


@given(case=conv_case(), seed=seeds, layout=layouts, with_bias=st.booleans())
def test_conv2d(case, seed, layout, with_bias):
    x_shape, w_shape, stride, padding, dilation, groups = case
    x, vx = leaf(x_shape, seed, layout=layout)
    w, vw = leaf(w_shape, seed + 1)
    b, vb = leaf((w_shape[0],), seed + 2) if with_bias else (None, None)
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    expected = kernels.conv2d_forward_reference(vx, vw, vb, **geometry)
    np.testing.assert_allclose(conv2d(x, w, b, **geometry)._data, expected, rtol=1e-10, atol=1e-12)
    inputs = (x, w) + ((b,) if with_bias else ())
    assert fn.gradcheck(lambda x, w, *b: conv2d(x, w, b[0] if b else None, **geometry), *inputs)


@given(n=st.integers(1, 2), c=st.integers(1, 2), h=st.integers(2, 6), w=st.integers(2, 6), k=st.integers(1, 3),
       stride=st.sampled_from([None, 1, 2]), padding=st.integers(0, 1), seed=seeds, layout=layouts)
def test_pooling(n, c, h, w, k, stride, padding, seed, layout):
    assume(k <= h + 2 * padding and k <= w + 2 * padding and padding <= k // 2)
    x, vx = leaf((n, c, h, w), seed, layout=layout)
    out = max_pool2d(x, k, stride, padding)
    np.testing.assert_allclose(out._data, kernels.max_pool2d_forward_reference(vx, k, stride, padding)[0])
    assert fn.gradcheck(lambda x: max_pool2d(x, k, stride, padding), x)  # random values: no ties
    for include in (True, False):
        out = avg_pool2d(x, k, stride, padding, count_include_pad=include)
        np.testing.assert_allclose(out._data, kernels.avg_pool2d_forward_reference(vx, k, stride, padding, include),
                                   rtol=1e-12)
        assert fn.gradcheck(lambda x: avg_pool2d(x, k, stride, padding, count_include_pad=include), x)
    out = adaptive_avg_pool2d(x, 1)
    np.testing.assert_allclose(out._data, vx.mean(axis=(2, 3), keepdims=True), rtol=1e-12)
    assert fn.gradcheck(lambda x: adaptive_avg_pool2d(x, 1), x)


@given(shape=st.sampled_from([(4, 3), (2, 3, 2, 2), (3, 2, 1, 4), (2, 1, 3, 3)]), seed=seeds, layout=layouts,
       affine=st.booleans())
def test_batch_norm_training_and_eval(shape, seed, layout, affine):
    x, vx = leaf(shape, seed, layout=layout)
    channels = shape[1]
    weight, vw = leaf((channels,), seed + 1) if affine else (None, None)
    bias, vb = leaf((channels,), seed + 2) if affine else (None, None)
    running_mean, running_var = np.zeros(channels), np.ones(channels)
    out = batch_norm(x, running_mean, running_var, weight, bias, training=True, momentum=0.1, eps=1e-5)
    axes = (0,) + tuple(range(2, len(shape)))
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    mean, var = vx.mean(axis=axes), vx.var(axis=axes)
    expected = (vx - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-5)
    if affine:
        expected = expected * vw.reshape(bshape) + vb.reshape(bshape)
    np.testing.assert_allclose(out._data, expected, rtol=1e-9, atol=1e-12)
    count = vx.size // channels
    np.testing.assert_allclose(running_mean, 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(running_var, 0.9 + 0.1 * var * count / (count - 1), rtol=1e-12)
    params = (x,) + ((weight, bias) if affine else ())
    assert fn.gradcheck(lambda x, *wb: batch_norm(x, None, None, *(wb or (None, None)), training=True), *params)
    assert fn.gradcheck(lambda x, *wb: batch_norm(x, running_mean, running_var, *(wb or (None, None))), *params)


@given(shape=st.sampled_from([(4, 3), (2, 3, 2, 2), (3, 2, 1, 4), (2, 1, 3, 3)]), seed=seeds, layout=layouts,
       affine=st.booleans(), with_residual=st.booleans(), training=st.booleans())
def test_batch_norm_relu_is_the_three_ops_in_one(shape, seed, layout, affine, with_residual, training):
    """relu(batch_norm(x) + residual): without a residual the fused op gives the bits of the ops one
    after another (float64 and float32, forward, running statistics and every gradient); with one,
    the same up to one rounding; and it passes finite differences."""
    channels = shape[1]
    x, _ = leaf(shape, seed, domain="nonzero", layout=layout)
    weight, _ = leaf((channels,), seed + 1) if affine else (None, None)
    bias, _ = leaf((channels,), seed + 2) if affine else (None, None)
    residual, _ = leaf(shape, seed + 3) if with_residual else (None, None)
    params = tuple(t for t in (x, residual, weight, bias) if t is not None)

    def split(*ts):
        it = iter(ts)
        x = next(it)
        r = next(it) if with_residual else None
        wb = (next(it), next(it)) if affine else (None, None)
        return x, r, wb

    def fused(*ts, stats=(None, None)):
        x, r, wb = split(*ts)
        return batch_norm_relu(x, *stats, *wb, residual=r, training=training)

    def unfused(*ts, stats=(None, None)):
        x, r, wb = split(*ts)
        out = batch_norm(x, *stats, *wb, training=training)
        return (out if r is None else out + r).relu()

    for dtype in (fn.float64, fn.float32):
        results = []
        for f in (fused, unfused):
            ts = [fn.tensor(t._data.astype(dtype), requires_grad=True) for t in params]
            stats = (np.zeros(channels, dtype), np.full(channels, 1.5, dtype))
            out = f(*ts, stats=stats)
            (out * fn.tensor(np.cos(np.arange(out._data.size)).reshape(out.shape).astype(dtype))).sum().backward()
            results.append([out._data, *stats] + [t.grad._data for t in ts])
        for a, b in zip(*results):
            if with_residual:  # fused, bn(x) + residual is rounded once; the ops round twice
                np.testing.assert_allclose(a, b, rtol=1e-6 if dtype == fn.float32 else 1e-14, atol=1e-6)
            else:
                np.testing.assert_array_equal(a, b)
    stats = (np.zeros(channels), np.full(channels, 1.5))
    assert fn.gradcheck(lambda *ts: fused(*ts, stats=(None, None) if training else stats), *params)


def test_batch_norm_eval_needs_running_stats():
    with pytest.raises(fn.FreenetError, match="eval mode needs running"):
        batch_norm(fn.zeros(2, 3), None, None)


def test_dropout_is_seeded_scaled_and_differentiable():
    x = fn.ones(1000, dtype=fn.float64, requires_grad=True)
    fn.manual_seed(3)
    a = dropout(x, 0.25)
    fn.manual_seed(3)
    b = dropout(x, 0.25)
    np.testing.assert_array_equal(a._data, b._data)
    kept = a._data != 0
    assert 650 < kept.sum() < 850
    np.testing.assert_allclose(a._data[kept], 1 / 0.75)
    a.sum().backward()
    np.testing.assert_allclose(x.grad._data, kept / 0.75)
    assert dropout(x, 0.25, training=False) is x
    with pytest.raises(fn.FreenetError, match=r"p must be in \[0, 1\)"):
        dropout(x, 1.0)


def test_relu_on_large_tensors_takes_the_kernel_path_with_the_same_results():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((4, 32, 30, 30)).astype(np.float32)  # above the kernel threshold
    x = fn.tensor(v, requires_grad=True)
    y = fn.nn.functional.relu(x)
    np.testing.assert_array_equal(y._data, np.maximum(v, 0))
    g = rng.standard_normal(v.shape).astype(np.float32)
    y.backward(fn.tensor(g))
    np.testing.assert_array_equal(x.grad._data, g * (v > 0))
