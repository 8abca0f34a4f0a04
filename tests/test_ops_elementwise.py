"""Elementwise ops: forward against NumPy, backward against finite differences (float64), and float32
kept float32, over generated shapes (size-1 and empty axes), broadcasting and non-contiguous inputs."""

import operator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import freenet as fn
from freenet import kernels
from freenet.nn import functional as F

from arrays import layouts, leaf, seeds, shapes


def _gelu_tanh(v):
    return 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))


UNARY = [
    ("neg", operator.neg, np.negative, "any"),
    ("abs", fn.abs, np.abs, "nonzero"),
    ("exp", fn.exp, np.exp, "any"),
    ("log", fn.log, np.log, "positive"),
    ("log1p", fn.log1p, np.log1p, "above-1"),
    ("sqrt", fn.sqrt, np.sqrt, "positive"),
    ("tanh", fn.tanh, np.tanh, "any"),
    ("sigmoid", fn.sigmoid, lambda v: 1 / (1 + np.exp(-v)), "any"),
    ("relu", F.relu, lambda v: np.maximum(v, 0), "nonzero"),
    ("leaky_relu", lambda x: F.leaky_relu(x, 0.1), lambda v: np.where(v > 0, v, 0.1 * v), "nonzero"),
    ("gelu", F.gelu, kernels.gelu_reference, "any"),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), _gelu_tanh, "any"),
    ("clip", lambda x: fn.clip(x, -0.5, 0.7), lambda v: np.clip(v, -0.5, 0.7), "away:-0.5,0.7"),
    ("clip_min", lambda x: x.clip(min=0.3), lambda v: np.maximum(v, 0.3), "away:0.3"),
    ("square", lambda x: x ** 2, np.square, "any"),
    ("pow_fraction", lambda x: x ** 1.5, lambda v: v ** 1.5, "positive"),
    ("rpow", lambda x: 2.0 ** x, lambda v: 2.0 ** v, "any"),
    ("scalars", lambda x: (3 - x) / 2 + 1.5 * x - 4 / (x + 5), lambda v: (3 - v) / 2 + 1.5 * v - 4 / (v + 5), "any"),
    ("softmax", lambda x: F.softmax(x, dim=-1),
     lambda v: np.exp(v) / np.exp(v).sum(-1, keepdims=True), "any"),
    ("log_softmax", lambda x: F.log_softmax(x, dim=-1),
     lambda v: v - np.log(np.exp(v).sum(-1, keepdims=True)), "any"),
]


@pytest.mark.parametrize("name,f,ref,domain", UNARY, ids=[u[0] for u in UNARY])
@given(shape=shapes(), seed=seeds, layout=layouts)
def test_unary(name, f, ref, domain, shape, seed, layout):
    if name in ("softmax", "log_softmax") and len(shape) == 0:
        shape = (3,)
    x, v = leaf(shape, seed, domain, layout)
    np.testing.assert_allclose(f(x)._data, ref(v), rtol=1e-12, atol=1e-12)
    assert fn.gradcheck(f, x)
    x32, v32 = leaf(shape, seed, domain, layout, dtype=np.float32)
    y = f(x32)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y._data, ref(v32.astype(np.float64)), rtol=2e-5, atol=2e-6)
    y.sum().backward()
    assert x32.grad.dtype == np.float32 and x32.grad.shape == shape


BINARY = [
    ("add", operator.add, np.add, "any", "any"),
    ("sub", operator.sub, np.subtract, "any", "any"),
    ("mul", operator.mul, np.multiply, "any", "any"),
    ("div", operator.truediv, np.divide, "any", "nonzero"),
    ("pow", operator.pow, np.power, "positive", "any"),
    ("maximum", fn.maximum, np.maximum, "any", "any"),
    ("minimum", fn.minimum, np.minimum, "any", "any"),
]


@pytest.mark.parametrize("name,f,ref,domain_a,domain_b", BINARY, ids=[b[0] for b in BINARY])
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3),
       seed=seeds, layout_a=layouts, layout_b=layouts)
def test_binary_broadcasting(name, f, ref, domain_a, domain_b, shapes, seed, layout_a, layout_b):
    shape_a, shape_b = shapes.input_shapes
    a, va = leaf(shape_a, seed, domain_a, layout_a)
    b, vb = leaf(shape_b, seed + 1, domain_b, layout_b)
    out = f(a, b)
    assert out.shape == shapes.result_shape
    np.testing.assert_allclose(out._data, ref(va, vb), rtol=1e-12, atol=1e-12)
    assert fn.gradcheck(f, a, b)


@pytest.mark.parametrize("name,f,ref,domain_a,domain_b", BINARY, ids=[b[0] for b in BINARY])
@given(shape=shapes(max_dims=3), seed=seeds)
def test_binary_with_scalars_and_arrays(name, f, ref, domain_a, domain_b, shape, seed):
    a, va = leaf(shape, seed, domain_a)
    scalar = 1.7
    for left, right, expected in ((a, scalar, ref(va, scalar)), (a, np.float64(scalar), ref(va, scalar))):
        np.testing.assert_allclose(f(left, right)._data, expected, rtol=1e-12)
    assert fn.gradcheck(lambda t: f(t, scalar), a)
    if name in ("add", "sub", "mul", "div") and domain_a == "any":
        np.testing.assert_allclose(f(scalar, a)._data, ref(scalar, va), rtol=1e-12)
        assert fn.gradcheck(lambda t: f(scalar, t), a) if name != "div" else True
    a32 = fn.tensor(va.astype(np.float32))
    assert f(a32, scalar).dtype == np.float32  # Python scalars do not promote float32 (as in PyTorch)
    assert f(a32, np.ones(shape, np.float32)).dtype == np.float32


def test_numpy_scalar_on_the_left_gives_a_tensor():
    x = fn.tensor([1.0, 2.0], requires_grad=True)
    y = np.float32(3.0) * x
    assert isinstance(y, fn.Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad._data, [3.0, 3.0])


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3), seed=seeds,
       layout=layouts)
def test_where(shapes, seed, layout):
    shape_c, shape_a, shape_b = shapes.input_shapes
    cond = np.random.default_rng(seed).random(shape_c) < 0.5
    a, va = leaf(shape_a, seed, layout=layout)
    b, vb = leaf(shape_b, seed + 1)
    f = lambda a, b: fn.where(fn.tensor(cond), a, b)  # noqa: E731
    np.testing.assert_array_equal(f(a, b)._data, np.where(cond, va, vb))
    assert fn.gradcheck(f, a, b)
    np.testing.assert_array_equal(fn.where(cond, a, 0.0)._data, np.where(cond, va, 0.0))


def test_maximum_ties_split_the_gradient():
    a = fn.tensor([1.0, 2.0], requires_grad=True)
    b = fn.tensor([1.0, 0.0], requires_grad=True)
    fn.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad._data, [0.5, 1.0])
    np.testing.assert_array_equal(b.grad._data, [0.5, 0.0])


def _matmul_shapes():
    @st.composite
    def build(draw):
        m, k, n = (draw(st.integers(0, 4)) for _ in range(3))
        batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3))
        a_vec, b_vec = draw(st.booleans()), draw(st.booleans())
        a = (k,) if a_vec else batch.input_shapes[0] + (m, k)
        b = (k,) if b_vec else batch.input_shapes[1] + (k, n)
        return a, b
    return build()


@given(shapes=_matmul_shapes(), seed=seeds, layout_a=layouts, layout_b=layouts)
def test_matmul(shapes, seed, layout_a, layout_b):
    a, va = leaf(shapes[0], seed, layout=layout_a)
    b, vb = leaf(shapes[1], seed + 1, layout=layout_b)
    np.testing.assert_allclose((a @ b)._data, np.matmul(va, vb), rtol=1e-12, atol=1e-12)
    assert fn.gradcheck(operator.matmul, a, b)


def test_matmul_large_matches_numpy_in_float32():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, 200), dtype=np.float32), rng.standard_normal((200, 100), dtype=np.float32)
    np.testing.assert_allclose((fn.tensor(a) @ fn.tensor(b))._data, a @ b, rtol=1e-4, atol=1e-4)


@given(shape=shapes(), seed=seeds)
def test_comparisons_give_bool_tensors_without_grad(shape, seed):
    a, va = leaf(shape, seed)
    b, vb = leaf(shape, seed + 1)
    for op, ref in ((operator.lt, np.less), (operator.le, np.less_equal), (operator.gt, np.greater),
                    (operator.ge, np.greater_equal), (operator.eq, np.equal), (operator.ne, np.not_equal)):
        out = op(a, b)
        assert out.dtype == np.bool_ and not out.requires_grad
        np.testing.assert_array_equal(out._data, ref(va, vb))
        np.testing.assert_array_equal(op(a, 0.5)._data, ref(va, 0.5))


def test_cast_is_differentiable_and_grads_keep_the_input_dtype():
    x = fn.tensor([1.0, 2.0], dtype=fn.float64, requires_grad=True)
    y = x.float()
    assert y.dtype == np.float32
    (y * 2).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad._data, [2.0, 2.0])


def test_mixed_float_dtypes_promote_and_cast_gradients_back():
    a = fn.tensor([1.0, 2.0], requires_grad=True)
    b = fn.tensor(np.array([3.0, 4.0]), requires_grad=True)  # float64 from NumPy
    out = a * b
    assert out.dtype == np.float64
    out.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
