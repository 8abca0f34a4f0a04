"""Batch-norm kernels against their NumPy twins, finite differences, and thread counts."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from freenet.kernels import norm as N
from freenet.kernels.layout import channels_last

from kernel_cases import DTYPES, make_array, norm_shapes, tol, with_threads

common = dict(shape=norm_shapes, dtype=st.sampled_from(DTYPES),
              layout=st.sampled_from(["c", "transposed", "strided"]),
              seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.1, 1.0, 30.0]),
              offset=st.sampled_from([0.0, -3.0, 50.0]), affine=st.booleans())


def params(rng, c, dtype, affine):
    if not affine:
        return None, None
    return rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)


@given(**common)
def test_train_forward_matches_reference(shape, dtype, layout, seed, scale, offset, affine):
    rng = np.random.default_rng(seed)
    x = make_array(rng, shape, dtype, layout, scale, offset)
    gamma, beta = params(rng, shape[1], dtype, affine)
    y, mean, invstd = N.batch_norm_train_forward(x, gamma, beta, 1e-5)
    y_ref, mean_ref, invstd_ref = N.batch_norm_train_forward_reference(x, gamma, beta, 1e-5)
    assert y.dtype == dtype and y.shape == shape
    assert mean.dtype == np.float64 and invstd.shape == (shape[1],)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12, atol=1e-12 * scale)
    np.testing.assert_allclose(invstd, invstd_ref, rtol=1e-9)
    np.testing.assert_allclose(y, y_ref, **tol(dtype))


@given(**common)
def test_backward_matches_reference(shape, dtype, layout, seed, scale, offset, affine):
    rng = np.random.default_rng(seed)
    x = make_array(rng, shape, dtype, layout, scale, offset)
    gy = make_array(rng, shape, dtype, layout)
    gamma, beta = params(rng, shape[1], dtype, affine)
    _, mean, invstd = N.batch_norm_train_forward(x, gamma, beta, 1e-5)
    out = N.batch_norm_backward(gy, x, gamma, mean, invstd)
    ref = N.batch_norm_backward_reference(gy, x, gamma, mean, invstd)
    for a, b in zip(out, ref):
        assert a.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, **tol(dtype))


@given(**common)
def test_eval_forward_matches_reference(shape, dtype, layout, seed, scale, offset, affine):
    rng = np.random.default_rng(seed)
    x = make_array(rng, shape, dtype, layout, scale, offset)
    gamma, beta = params(rng, shape[1], dtype, affine)
    rmean = rng.standard_normal(shape[1]).astype(dtype)
    rvar = rng.random(shape[1]).astype(dtype) + 0.5
    y = N.batch_norm_eval_forward(x, rmean, rvar, gamma, beta, 1e-5)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(
        y, N.batch_norm_eval_forward_reference(x, rmean, rvar, gamma, beta, 1e-5),
        rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"] * (1 + scale + abs(offset)))


@given(shape=norm_shapes, seed=st.integers(0, 2**32 - 1), affine=st.booleans())
def test_backward_finite_differences_of_forward_twin(shape, seed, affine):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2 + 1
    gy = rng.standard_normal(shape)
    c = shape[1]
    gamma, beta = (rng.standard_normal(c), rng.standard_normal(c)) if affine else (None, None)
    _, mean, invstd = N.batch_norm_train_forward(x, gamma, beta, 1e-3)
    gx, ggamma, gbeta = N.batch_norm_backward(gy, x, gamma, mean, invstd)
    g0 = np.ones(c) if gamma is None else gamma
    b0 = np.zeros(c) if beta is None else beta

    def loss(xx, gg, bb):
        return np.sum(gy * N.batch_norm_train_forward_reference(xx, gg, bb, 1e-3)[0])

    h = 1e-6
    vx, vg, vb = rng.standard_normal(shape), rng.standard_normal(c), rng.standard_normal(c)
    for direction, grad, args in (
        (vx, gx, lambda t: (x + t * vx, g0, b0)),
        (vg, ggamma, lambda t: (x, g0 + t * vg, b0)),
        (vb, gbeta, lambda t: (x, g0, b0 + t * vb)),
    ):
        fd = (loss(*args(h)) - loss(*args(-h))) / (2 * h)
        np.testing.assert_allclose(fd, np.sum(grad * direction), rtol=1e-5, atol=1e-6)


@given(shape=norm_shapes, dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1),
       momentum=st.sampled_from([0.0, 0.1, 0.5, 1.0]))
def test_update_running_matches_reference_and_torch_rule(shape, dtype, seed, momentum):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    c = shape[1]
    _, mean, invstd = N.batch_norm_train_forward(x, None, None, 1e-5)
    count = x.size // c
    var_unbiased = N.batch_norm_unbiased_var(invstd, 1e-5, count)
    axes = (0,) + tuple(range(2, x.ndim))
    np.testing.assert_allclose(var_unbiased, x.astype(np.float64).var(axis=axes, ddof=1),
                               rtol=1e-8, atol=1e-12)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.random(c).astype(dtype)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    expect_m = (1 - momentum) * rm.astype(np.float64) + momentum * mean
    expect_v = (1 - momentum) * rv.astype(np.float64) + momentum * var_unbiased
    assert N.batch_norm_update_running(rm, rv, mean, var_unbiased, momentum) is None
    N.batch_norm_update_running_reference(rm_ref, rv_ref, mean, var_unbiased, momentum)
    assert rm.dtype == dtype
    np.testing.assert_allclose(rm, rm_ref, **tol(dtype))
    np.testing.assert_allclose(rv, rv_ref, **tol(dtype))
    np.testing.assert_allclose(rm, expect_m, **tol(dtype))
    np.testing.assert_allclose(rv, expect_v, **tol(dtype))


def test_statistics_accurate_for_large_offset_float32():
    # float64 shifted sums: no cancellation when the mean dwarfs the spread
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((64, 3, 10, 10)) * 1e-2 + 1e4).astype(np.float32)
    _, mean, invstd = N.batch_norm_train_forward(x, None, None, 0.0)
    v = x.astype(np.float64)
    np.testing.assert_allclose(mean, v.mean(axis=(0, 2, 3)), rtol=1e-14)
    np.testing.assert_allclose(1 / invstd**2, v.var(axis=(0, 2, 3)), rtol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 5, 13, 11), (97, 40), (3, 7, 1000)])
@pytest.mark.parametrize("layout", ["c", "transposed"])  # transposed 4-D: channels-last rows
def test_bitwise_identical_with_one_and_two_threads(dtype, shape, layout):
    rng = np.random.default_rng(11)
    x = make_array(rng, shape, dtype, layout, 2.0, 1.0)
    gy = make_array(rng, shape, dtype, layout)
    gamma, beta = params(rng, shape[1], dtype, True)

    def run():
        y, mean, invstd = N.batch_norm_train_forward(x, gamma, beta, 1e-5)
        grads = N.batch_norm_backward(gy, x, gamma, mean, invstd)
        ye = N.batch_norm_eval_forward(x, mean, 1 / invstd**2, gamma, beta, 1e-5)
        return (y, mean, invstd, ye) + grads

    one, two = with_threads(1, run), with_threads(2, run)
    for a, b in zip(one, two):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    # a channels-last input takes the row kernels and gives channels-last outputs
    rows = layout == "transposed" and len(shape) == 4
    assert channels_last(x) == rows
    assert channels_last(one[0]) == channels_last(one[3]) == channels_last(one[4]) == rows


def test_errors_name_the_shapes():
    x = np.zeros((4, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"gamma has shape \(4,\), expected \(3,\)"):
        N.batch_norm_train_forward(x, np.ones(4), np.zeros(3))
    with pytest.raises(ValueError, match=r"beta has shape \(2,\)"):
        N.batch_norm_eval_forward(x, np.zeros(3), np.ones(3), None, np.zeros(2))
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 3\)"):
        N.batch_norm_train_forward(np.zeros((1, 3), np.float32), None, None)
    with pytest.raises(ValueError, match=r"\(5,\)"):
        N.batch_norm_train_forward(np.zeros(5, np.float32), None, None)
    with pytest.raises(ValueError, match=r"gradient has shape \(4, 3, 5\)"):
        N.batch_norm_backward(np.zeros((4, 3, 5), np.float32), x, None, np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match=r"running_var has shape \(2,\)"):
        N.batch_norm_update_running(np.zeros(3), np.zeros(2), np.zeros(3), np.ones(3), 0.1)
    with pytest.raises(TypeError, match="int32"):
        N.batch_norm_train_forward(np.zeros((4, 3), np.int32), None, None)
