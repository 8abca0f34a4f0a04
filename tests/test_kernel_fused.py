"""Fused bias/BN/add + ReLU kernels against their NumPy twins, finite differences, thread counts."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from freenet.kernels import fused as F

from kernel_cases import DTYPES, make_array, norm_shapes, tol, with_threads

common = dict(shape=norm_shapes, dtype=st.sampled_from(DTYPES),
              layout=st.sampled_from(["c", "transposed", "strided"]),
              seed=st.integers(0, 2**32 - 1))


def exact_or_close(a, b, dtype):
    assert a.dtype == b.dtype == dtype and a.shape == b.shape
    np.testing.assert_allclose(a, b, **tol(dtype))


# ---------------------------------------------------------------------------------------------
# against the twins


@given(**common)
def test_bias_relu_matches_reference(shape, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x = make_array(rng, shape, dtype, layout)
    bias = rng.standard_normal(shape[1]).astype(dtype)
    y = F.bias_relu_forward(x, bias)
    np.testing.assert_array_equal(y, F.bias_relu_forward_reference(x, bias))
    assert y.dtype == dtype
    gy = make_array(rng, shape, dtype, layout)
    gx, gb = F.bias_relu_backward(gy, y)
    gx_ref, gb_ref = F.bias_relu_backward_reference(gy, y)
    np.testing.assert_array_equal(gx, gx_ref)
    exact_or_close(gb, gb_ref, dtype)


@given(**common)
def test_add_relu_matches_reference(shape, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x, r, gy = (make_array(rng, shape, dtype, layout) for _ in range(3))
    y = F.add_relu_forward(x, r)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, F.add_relu_forward_reference(x, r))
    np.testing.assert_array_equal(F.add_relu_backward(gy, y), F.add_relu_backward_reference(gy, y))


@given(**common, affine=st.booleans())
def test_batch_norm_relu_matches_reference(shape, dtype, layout, seed, affine):
    rng = np.random.default_rng(seed)
    x = make_array(rng, shape, dtype, layout, 3.0, 1.0)
    gy = make_array(rng, shape, dtype, layout)
    c = shape[1]
    gamma, beta = ((rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype))
                   if affine else (None, None))
    y, mean, invstd = F.batch_norm_relu_train_forward(x, gamma, beta, 1e-5)
    y_ref, mean_ref, invstd_ref = F.batch_norm_relu_train_forward_reference(x, gamma, beta, 1e-5)
    exact_or_close(y, y_ref, dtype)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(invstd, invstd_ref, rtol=1e-9)
    for a, b in zip(F.batch_norm_relu_backward(gy, y, x, gamma, mean, invstd),
                    F.batch_norm_relu_backward_reference(gy, y, x, gamma, mean, invstd)):
        exact_or_close(a, b, dtype)


@given(**common, affine=st.booleans())
def test_batch_norm_add_relu_matches_reference(shape, dtype, layout, seed, affine):
    rng = np.random.default_rng(seed)
    x = make_array(rng, shape, dtype, layout, 3.0, 1.0)
    r, gy = make_array(rng, shape, dtype, layout), make_array(rng, shape, dtype, layout)
    c = shape[1]
    gamma, beta = ((rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype))
                   if affine else (None, None))
    y, mean, invstd = F.batch_norm_add_relu_train_forward(x, r, gamma, beta, 1e-5)
    y_ref, mean_ref, invstd_ref = F.batch_norm_add_relu_train_forward_reference(x, r, gamma, beta,
                                                                                1e-5)
    exact_or_close(y, y_ref, dtype)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(invstd, invstd_ref, rtol=1e-9)
    out = F.batch_norm_add_relu_backward(gy, y, x, gamma, mean, invstd)
    ref = F.batch_norm_add_relu_backward_reference(gy, y, x, gamma, mean, invstd)
    assert len(out) == 4
    np.testing.assert_array_equal(out[1], ref[1])  # the residual's gradient is a plain mask
    for a, b in zip(out, ref):
        exact_or_close(a, b, dtype)


def test_relu_keeps_nan_and_passes_gradient_only_where_positive():
    x = np.array([[np.nan, -1.0, 0.0, 2.0]]).reshape(1, 1, 4)
    y = F.bias_relu_forward(x, np.zeros(1))
    np.testing.assert_array_equal(y, [[[np.nan, 0.0, 0.0, 2.0]]])
    gx, gb = F.bias_relu_backward(np.ones_like(x), y)
    np.testing.assert_array_equal(gx, [[[0.0, 0.0, 0.0, 1.0]]])
    np.testing.assert_array_equal(gb, [1.0])


# ---------------------------------------------------------------------------------------------
# finite differences of the forward twins (float64, away from ReLU kinks)


def directional_check(loss, point, direction, analytic, h=1e-6):
    fd = (loss(point + h * direction) - loss(point - h * direction)) / (2 * h)
    np.testing.assert_allclose(fd, np.sum(analytic * direction), rtol=1e-5, atol=1e-6)


@given(shape=norm_shapes, seed=st.integers(0, 2**32 - 1))
def test_bias_relu_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    x, gy = rng.standard_normal(shape), rng.standard_normal(shape)
    bias = rng.standard_normal(shape[1])
    assume(np.abs(x + bias.reshape((1, -1) + (1,) * (len(shape) - 2))).min() > 1e-3)
    gx, gb = F.bias_relu_backward(gy, F.bias_relu_forward(x, bias))
    directional_check(lambda z: np.sum(gy * F.bias_relu_forward_reference(z, bias)), x,
                      rng.standard_normal(shape), gx)
    directional_check(lambda b: np.sum(gy * F.bias_relu_forward_reference(x, b)), bias,
                      rng.standard_normal(shape[1]), gb)


@given(shape=norm_shapes, seed=st.integers(0, 2**32 - 1))
def test_add_relu_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    x, r, gy = rng.standard_normal(shape), rng.standard_normal(shape), rng.standard_normal(shape)
    assume(np.abs(x + r).min() > 1e-3)
    g = F.add_relu_backward(gy, F.add_relu_forward(x, r))
    directional_check(lambda z: np.sum(gy * F.add_relu_forward_reference(z, r)), x,
                      rng.standard_normal(shape), g)
    directional_check(lambda z: np.sum(gy * F.add_relu_forward_reference(x, z)), r,
                      rng.standard_normal(shape), g)


@given(shape=norm_shapes, seed=st.integers(0, 2**32 - 1), residual=st.booleans())
def test_batch_norm_relu_finite_differences(shape, seed, residual):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x, gy = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape)
    r = rng.standard_normal(shape)
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    eps = 1e-3

    def fwd(xx, gg, bb, rr):
        if residual:
            return F.batch_norm_add_relu_train_forward_reference(xx, rr, gg, bb, eps)
        return F.batch_norm_relu_train_forward_reference(xx, gg, bb, eps)

    # keep the pre-activation away from the ReLU kink
    bn, mean, invstd = F._bn_pre_activation(x, gamma, beta, eps)
    z = bn + (r if residual else 0)
    assume(np.abs(z).min() > 1e-3)
    if residual:
        y, mean, invstd = F.batch_norm_add_relu_train_forward(x, r, gamma, beta, eps)
        gx, gr, gg, gb = F.batch_norm_add_relu_backward(gy, y, x, gamma, mean, invstd)
    else:
        y, mean, invstd = F.batch_norm_relu_train_forward(x, gamma, beta, eps)
        gx, gg, gb = F.batch_norm_relu_backward(gy, y, x, gamma, mean, invstd)

    def loss(xx=x, gg_=gamma, bb=beta, rr=r):
        return np.sum(gy * fwd(xx, gg_, bb, rr)[0])

    directional_check(lambda t: loss(xx=t), x, rng.standard_normal(shape), gx)
    directional_check(lambda t: loss(gg_=t), gamma, rng.standard_normal(c), gg)
    directional_check(lambda t: loss(bb=t), beta, rng.standard_normal(c), gb)
    if residual:
        directional_check(lambda t: loss(rr=t), r, rng.standard_normal(shape), gr)


# ---------------------------------------------------------------------------------------------
# determinism across thread counts


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 5, 13, 11), (97, 40), (2, 3, 40000)])
@pytest.mark.parametrize("layout", ["c", "transposed"])  # transposed 4-D: channels-last rows
def test_bitwise_identical_with_one_and_two_threads(dtype, shape, layout):
    rng = np.random.default_rng(5)
    x, r, gy = (make_array(rng, shape, dtype, layout, 2.0, 0.5) for _ in range(3))
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])

    def run():
        yb = F.bias_relu_forward(x, beta)
        ya = F.add_relu_forward(x, r)
        y1, m1, i1 = F.batch_norm_relu_train_forward(x, gamma, beta, 1e-5)
        y2, m2, i2 = F.batch_norm_add_relu_train_forward(x, r, gamma, beta, 1e-5)
        return ((yb, ya, y1, m1, i1, y2, m2, i2) + F.bias_relu_backward(gy, yb)
                + (F.add_relu_backward(gy, ya),)
                + F.batch_norm_relu_backward(gy, y1, x, gamma, m1, i1)
                + F.batch_norm_add_relu_backward(gy, y2, x, gamma, m2, i2))

    one, two = with_threads(1, run), with_threads(2, run)
    for a, b in zip(one, two):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_errors_name_the_shapes():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"bias has shape \(4,\), expected \(3,\)"):
        F.bias_relu_forward(x, np.zeros(4))
    with pytest.raises(ValueError, match=r"output has shape \(2, 3\)"):
        F.bias_relu_backward(x, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"residual has shape \(2, 4, 3\), input has shape"):
        F.add_relu_forward(x, np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match=r"residual has shape \(2, 3\), expected \(2, 3, 4\)"):
        F.batch_norm_add_relu_train_forward(x, np.zeros((2, 3)), None, None)
    with pytest.raises(ValueError, match=r"gamma has shape \(2,\)"):
        F.batch_norm_relu_train_forward(x, np.ones(2), None)
    with pytest.raises(ValueError, match=r"output has shape \(3, 3, 4\)"):
        F.batch_norm_relu_backward(x, np.zeros((3, 3, 4)), x, None, np.zeros(3), np.ones(3))


@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=4).map(tuple), dtype=st.sampled_from(DTYPES),
       layout=st.sampled_from(["c", "transposed", "strided"]), seed=st.integers(0, 2**32 - 1))
def test_relu_matches_reference_and_is_thread_independent(shape, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x, g = make_array(rng, shape, dtype, layout), make_array(rng, shape, dtype, layout)
    y = F.relu_forward(x)
    np.testing.assert_array_equal(y, F.relu_forward_reference(x))
    np.testing.assert_array_equal(F.relu_backward(g, y), F.relu_backward_reference(g, y))
    assert with_threads(1, lambda: F.relu_forward(x)).tobytes() == with_threads(2, lambda: F.relu_forward(x)).tobytes()
