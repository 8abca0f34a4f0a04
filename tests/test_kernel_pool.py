"""Pooling kernels against their NumPy twins, finite differences / adjoints, and thread counts."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from freenet.kernels import pool as P
from freenet.kernels.layout import channels_last

from kernel_cases import DTYPES, assert_same_bits, make_array, with_threads

def tol(dtype):  # pooling only moves or averages a few values: tighter than the shared tol
    return dict(rtol=2e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


@st.composite
def pool_case(draw, dilation=True):
    """(x shape, kernel_size, stride, padding, dilation) that form a valid pooling."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilation else (1, 1)
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    h = draw(st.integers(max(1, span_h - 2 * ph), max(1, span_h - 2 * ph) + 8))
    w = draw(st.integers(max(1, span_w - 2 * pw), max(1, span_w - 2 * pw) + 8))
    lead = draw(st.sampled_from([(1, 1), (2, 3), (3, 1), (1, 4), (3,)]))
    stride = draw(st.sampled_from([None, (sh, sw)])) if (sh, sw) == (kh, kw) else (sh, sw)
    return lead + (h, w), (kh, kw), stride, (ph, pw), (dh, dw)


common = dict(dtype=st.sampled_from(DTYPES), layout=st.sampled_from(["c", "transposed", "strided"]),
              seed=st.integers(0, 2**32 - 1))


# ---------------------------------------------------------------------------------------------
# max pooling


@given(case=pool_case(), **common)
def test_max_pool_forward_matches_reference(case, dtype, layout, seed):
    shape, k, s, p, d = case
    x = make_array(np.random.default_rng(seed), shape, dtype, layout)
    y, idx = P.max_pool2d_forward(x, k, s, p, d)
    y_ref, idx_ref = P.max_pool2d_forward_reference(x, k, s, p, d)
    assert y.dtype == dtype and idx.dtype == np.int32
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)


@given(case=pool_case(), **common)
def test_max_pool_backward_matches_reference(case, dtype, layout, seed):
    shape, k, s, p, d = case
    rng = np.random.default_rng(seed)
    x = make_array(rng, shape, dtype, layout)
    y, idx = P.max_pool2d_forward(x, k, s, p, d)
    gy = make_array(rng, y.shape, dtype, layout)
    gx = P.max_pool2d_backward(gy, idx, x.shape)
    assert gx.dtype == dtype and gx.shape == x.shape
    np.testing.assert_allclose(gx, P.max_pool2d_backward_reference(gy, idx, x.shape), **tol(dtype))


@given(h=st.integers(2, 11), w=st.integers(2, 11), lead=st.sampled_from([(1, 1), (2, 3), (5,)]), **common)
def test_max_pool_2x2_stride_2_fast_path_matches_reference(h, w, lead, dtype, layout, seed):
    """The 2x2, stride-2 kernel (most CNNs) has its own loop: same values, indices, ties and NaN."""
    rng = np.random.default_rng(seed)
    x = make_array(rng, lead + (h, w), dtype, layout)
    x = np.round(x * 2) / 2  # ties
    x[rng.random(x.shape) < 0.05] = np.nan
    for stride in (None, 2, (2, 2)):
        y, idx = P.max_pool2d_forward(x, 2, stride)
        y_ref, idx_ref = P.max_pool2d_forward_reference(x, 2, stride)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref)
        # a channels-last input (4-D, several channels) keeps its layout, forward and backward
        kept = layout == "transposed" and len(lead) == 2 and lead[1] > 1 and (h // 2) * (w // 2) > 1
        assert channels_last(y) == channels_last(idx) == kept
        gy = make_array(rng, y.shape, dtype, layout)
        gx = P.max_pool2d_backward(gy, idx, x.shape)
        assert channels_last(gx) == kept
        np.testing.assert_array_equal(gx, P.max_pool2d_backward_reference(gy, idx, x.shape))


def test_max_pool_ties_first_wins_and_nan_as_torch():
    x = np.array([[[[1.0, 3.0, 3.0, 0.0],
                    [3.0, 2.0, np.nan, 1.0],
                    [0.0, 0.0, np.nan, 7.0]]]])
    y, idx = P.max_pool2d_forward(x, (2, 2), stride=1)
    # window (0,0): 3 at (0,1) first; window (0,1): NaN at (1,2); window (1,2): last NaN (2,2)
    np.testing.assert_array_equal(idx, [[[[1, 6, 6], [4, 10, 10]]]])
    assert y[0, 0, 0, 0] == 3.0 and np.isnan(y[0, 0, 0, 1]) and np.isnan(y[0, 0, 1, 2])
    for a, b in zip((y, idx), P.max_pool2d_forward_reference(x, (2, 2), stride=1)):
        np.testing.assert_array_equal(a, b)


def test_max_pool_window_without_input_gives_minus_inf_and_no_gradient():
    # kernel 2 with dilation 3 and padding 1 over two columns: the only window sees columns
    # -1 and 2, neither inside the input.
    x = np.array([[[[5.0, 6.0], [7.0, 8.0]]]])
    y, idx = P.max_pool2d_forward(x, (1, 2), stride=1, padding=(0, 1), dilation=(1, 3))
    assert y.shape == (1, 1, 2, 1) and np.all(np.isneginf(y)) and np.all(idx == -1)
    for a, b in zip((y, idx), P.max_pool2d_forward_reference(x, (1, 2), 1, (0, 1), (1, 3))):
        np.testing.assert_array_equal(a, b)
    gx = P.max_pool2d_backward(np.ones_like(y), idx, x.shape)
    np.testing.assert_array_equal(gx, np.zeros_like(x))


@given(case=pool_case(), seed=st.integers(0, 2**32 - 1))
def test_max_pool_backward_finite_differences(case, seed):
    shape, k, s, p, d = case
    rng = np.random.default_rng(seed)
    # distinct values 0.01 apart: no argmax changes within the finite-difference step
    x = rng.permutation(np.arange(np.prod(shape)) * 0.01).reshape(shape)
    y, idx = P.max_pool2d_forward(x, k, s, p, d)
    assume(np.all(idx >= 0))
    gy = rng.standard_normal(y.shape)
    v = rng.standard_normal(shape)
    gx = P.max_pool2d_backward(gy, idx, shape)
    h = 1e-6

    def loss(z):
        return np.sum(gy * P.max_pool2d_forward_reference(z, k, s, p, d)[0])

    fd = (loss(x + h * v) - loss(x - h * v)) / (2 * h)
    np.testing.assert_allclose(fd, np.sum(gx * v), rtol=1e-6, atol=1e-8)


@given(case=pool_case(), seed=st.integers(0, 2**32 - 1))
def test_max_pool_backward_is_adjoint_of_gather(case, seed):
    shape, k, s, p, d = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    y, idx = P.max_pool2d_forward(x, k, s, p, d)
    v = rng.standard_normal(shape)
    gy = rng.standard_normal(y.shape)
    planes = v.reshape(-1, shape[-2] * shape[-1])
    flat_idx = idx.reshape(planes.shape[0], -1)
    gathered = np.where(flat_idx >= 0, np.take_along_axis(planes, np.maximum(flat_idx, 0), 1), 0)
    lhs = np.sum(gathered * gy.reshape(gathered.shape))
    rhs = np.sum(v * P.max_pool2d_backward(gy, idx, shape))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# average pooling


@given(case=pool_case(dilation=False), include=st.booleans(), **common)
def test_avg_pool_forward_matches_reference(case, include, dtype, layout, seed):
    shape, k, s, p, _ = case
    x = make_array(np.random.default_rng(seed), shape, dtype, layout)
    y = P.avg_pool2d_forward(x, k, s, p, include)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, P.avg_pool2d_forward_reference(x, k, s, p, include), **tol(dtype))


@given(case=pool_case(dilation=False), include=st.booleans(), **common)
def test_avg_pool_backward_matches_reference(case, include, dtype, layout, seed):
    shape, k, s, p, _ = case
    rng = np.random.default_rng(seed)
    out_shape = P.avg_pool2d_forward(np.zeros(shape, dtype), k, s, p, include).shape
    gy = make_array(rng, out_shape, dtype, layout)
    gx = P.avg_pool2d_backward(gy, shape, k, s, p, include)
    assert gx.dtype == dtype and gx.shape == shape
    np.testing.assert_allclose(gx, P.avg_pool2d_backward_reference(gy, shape, k, s, p, include),
                               **tol(dtype))


@given(case=pool_case(dilation=False), include=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_avg_pool_backward_is_adjoint_of_forward_twin(case, include, seed):
    shape, k, s, p, _ = case
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(shape)
    yv = P.avg_pool2d_forward_reference(v, k, s, p, include)
    gy = rng.standard_normal(yv.shape)
    lhs = np.sum(yv * gy)
    rhs = np.sum(v * P.avg_pool2d_backward(gy, shape, k, s, p, include))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_avg_pool_count_include_pad():
    x = np.ones((1, 1, 2, 2))
    np.testing.assert_allclose(P.avg_pool2d_forward(x, 2, 1, 1, True)[0, 0],
                               [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    np.testing.assert_allclose(P.avg_pool2d_forward(x, 2, 1, 1, False), np.ones((1, 1, 3, 3)))


# ---------------------------------------------------------------------------------------------
# global average pooling


@given(shape=st.sampled_from([(2, 3, 5, 7), (1, 1, 1, 1), (3, 2, 9, 9), (4, 16, 12), (2, 1, 40, 3)]),
       **common)
def test_global_avg_pool_matches_reference(shape, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x = make_array(rng, shape, dtype, layout)
    y = P.global_avg_pool2d_forward(x)
    assert y.shape == shape[:-2] and y.dtype == dtype
    np.testing.assert_allclose(y, P.global_avg_pool2d_forward_reference(x), **tol(dtype))
    gy = make_array(rng, shape[:-2], dtype, "c")
    gx = P.global_avg_pool2d_backward(gy, shape)
    np.testing.assert_array_equal(gx, P.global_avg_pool2d_backward_reference(gy, shape))
    # adjoint identity in float64
    v = rng.standard_normal(shape)
    g64 = rng.standard_normal(shape[:-2])
    np.testing.assert_allclose(np.sum(P.global_avg_pool2d_forward_reference(v) * g64),
                               np.sum(v * P.global_avg_pool2d_backward(g64, shape)), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# determinism across thread counts


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_with_one_and_two_threads(dtype):
    rng = np.random.default_rng(7)
    x = make_array(rng, (5, 7, 23, 19), dtype, "transposed")
    shape = x.shape
    runs = []
    for n in (1, 2):
        def run():
            y, idx = P.max_pool2d_forward(x, 3, 2, 1, 2)
            gy = np.linspace(-1, 1, y.size).reshape(y.shape).astype(dtype)
            a = P.avg_pool2d_forward(x, 3, 2, 1, False)
            ga = np.linspace(-1, 2, a.size).reshape(a.shape).astype(dtype)
            g = P.global_avg_pool2d_forward(x)
            y2, idx2 = P.max_pool2d_forward(x, 2)  # the channels-last 2x2 kernels
            g2 = np.linspace(-1, 1, y2.size).reshape(y2.shape).astype(dtype)
            return (y, idx, P.max_pool2d_backward(gy, idx, shape), a, y2, idx2,
                    P.max_pool2d_backward(g2, idx2, shape),
                    P.avg_pool2d_backward(ga, shape, 3, 2, 1, False), g,
                    P.global_avg_pool2d_backward(g, shape))
        runs.append(with_threads(n, run))
    assert_same_bits(runs[0], runs[1])
    assert all(channels_last(a) for a in runs[0][4:7])


# ---------------------------------------------------------------------------------------------
# errors


def test_errors_name_the_shapes():
    x = np.zeros((2, 3, 4, 5), np.float32)
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 5\)"):
        P.max_pool2d_forward(x, 6)  # kernel larger than the input
    with pytest.raises(ValueError, match=r"larger than the padded input \(6, 7\)"):
        P.avg_pool2d_forward(x, 7, padding=1)
    with pytest.raises(ValueError, match="at most half"):
        P.max_pool2d_forward(x, 2, padding=2)
    with pytest.raises(ValueError, match=r"\(4, 5\)"):
        P.max_pool2d_forward(np.zeros((4, 5), np.float32), 2)
    with pytest.raises(ValueError, match="stride"):
        P.avg_pool2d_forward(x, 2, stride=0)
    with pytest.raises(TypeError, match="int64"):
        P.max_pool2d_forward(np.zeros((1, 1, 4, 4), np.int64), 2)
    y, idx = P.max_pool2d_forward(x, 2)
    for wrong in (20, -2):  # an index past the 4x5 plane, or below -1 (the only negative allowed)
        bad_idx = idx.copy()
        bad_idx[1, 2, 1, 0] = wrong
        with pytest.raises(ValueError, match=r"indices outside \[-1, 20\)"):
            P.max_pool2d_backward(np.ones(y.shape, np.float32), bad_idx, x.shape)
    assert P.max_pool2d_backward(np.ones(y.shape, np.float32), idx.astype(np.int16), x.shape).sum() == y.size
    with pytest.raises(ValueError, match=r"\(2, 3, 2, 2\)"):
        P.max_pool2d_backward(np.zeros((2, 3, 3, 2), np.float32), idx, x.shape)
    with pytest.raises(ValueError, match="expected \\(2, 3, 2, 2\\)"):
        P.avg_pool2d_backward(np.zeros((2, 3, 3, 3), np.float32), x.shape, 2)
    with pytest.raises(ValueError, match=r"expected \(2, 3\)"):
        P.global_avg_pool2d_backward(np.zeros((3, 2), np.float32), x.shape)


def test_channels_last_argmax_of_another_pooling_and_bad_indices():
    """The channels-last backward takes any argmax laid out channels-last (an overlapping 3x3 pool's
    too: not only the 2x2 kernel's) and still rejects indices outside the plane."""
    rng = np.random.default_rng(3)
    x = make_array(rng, (2, 5, 8, 8), np.float64, "transposed")
    y, idx = P.max_pool2d_forward(x, 3, 2, 1)  # 4x4 outputs, the size a 2x2 pool would give
    to_cl = lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # noqa: E731
    gy = rng.standard_normal(y.shape)
    gx = P.max_pool2d_backward(to_cl(gy), to_cl(idx), x.shape)
    np.testing.assert_allclose(gx, P.max_pool2d_backward_reference(gy, idx, x.shape), rtol=1e-12, atol=1e-12)
    _, idx2 = P.max_pool2d_forward(x, 2)
    assert channels_last(idx2)
    broken = idx2.copy(order="K")
    broken[1, 2, 0, 0] = 64  # outside the 8x8 plane
    with pytest.raises(ValueError, match="argmax holds indices outside"):
        P.max_pool2d_backward(np.ones(idx2.shape), broken, x.shape)
