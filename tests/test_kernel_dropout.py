"""Dropout: counter-based mask against the NumPy twin, independence from layout and threads."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from freenet.kernels import dropout as D

from kernel_cases import DTYPES, make_array, with_threads

shapes = st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple)
seeds = st.integers(-2**63, 2**64 - 1)
probs = st.one_of(st.sampled_from([0.0, 0.5, 0.9]), st.floats(0.0, 0.99))


@given(shape=shapes, dtype=st.sampled_from(DTYPES), seed=seeds, p=probs,
       layout=st.sampled_from(["c", "transposed", "strided"]), data_seed=st.integers(0, 2**32 - 1))
def test_forward_and_backward_match_reference(shape, dtype, seed, p, layout, data_seed):
    rng = np.random.default_rng(data_seed)
    x = make_array(rng, shape, dtype, layout)
    y, mask = D.dropout_forward(x, p, seed)
    y_ref, mask_ref = D.dropout_forward_reference(x, p, seed)
    assert y.dtype == dtype and mask.dtype == np.bool_ and mask.shape == shape
    np.testing.assert_array_equal(mask, mask_ref)
    np.testing.assert_array_equal(y, y_ref)
    gy = make_array(rng, shape, dtype, layout)
    gx = D.dropout_backward(gy, mask, p)
    assert gx.dtype == dtype
    np.testing.assert_array_equal(gx, D.dropout_backward_reference(gy, mask, p))


@given(shape=shapes, seed=seeds, p=probs, data_seed=st.integers(0, 2**32 - 1))
def test_backward_is_adjoint_of_forward(shape, seed, p, data_seed):
    rng = np.random.default_rng(data_seed)
    v, gy = rng.standard_normal(shape), rng.standard_normal(shape)
    yv, mask = D.dropout_forward(v, p, seed)
    np.testing.assert_allclose(np.sum(yv * gy), np.sum(v * D.dropout_backward(gy, mask, p)),
                               rtol=1e-12, atol=1e-12)


def test_mask_depends_only_on_seed_and_flat_index():
    x = np.ones(50_000, np.float32)
    _, long = D.dropout_forward(x, 0.3, 42)
    _, short = D.dropout_forward(x[:777], 0.3, 42)
    np.testing.assert_array_equal(short, long[:777])  # a prefix: no dependence on size or blocks
    _, as_matrix = D.dropout_forward(x.reshape(250, 200), 0.3, 42)
    np.testing.assert_array_equal(as_matrix.reshape(-1), long)
    # a transposed view is masked by its own (logical) C-order index, not its memory order
    m = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(D.dropout_forward(m.T, 0.5, 9)[1],
                                  D.dropout_forward(np.ascontiguousarray(m.T), 0.5, 9)[1])
    _, other = D.dropout_forward(x, 0.3, 43)
    assert (other != long).mean() > 0.3
    # seeds are taken modulo 2**64
    np.testing.assert_array_equal(D.dropout_forward(x, 0.3, -1)[1],
                                  D.dropout_forward(x, 0.3, 2**64 - 1)[1])


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_drop_rate_and_scaling(p):
    x = np.ones(200_000)
    y, mask = D.dropout_forward(x, p, 2024)
    n = x.size
    assert abs((1 - mask.mean()) - p) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_array_equal(y[mask], 1.0 / (1.0 - p))
    np.testing.assert_array_equal(y[~mask], 0.0)
    # neighbouring elements are not correlated
    a, b = mask[:-1].astype(float), mask[1:].astype(float)
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(n)


def test_p_zero_is_identity():
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    y, mask = D.dropout_forward(x, 0.0, 1)
    assert mask.all()
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_with_one_and_two_threads(dtype):
    rng = np.random.default_rng(1)
    x = make_array(rng, (33, 17, 101), dtype, "transposed")
    gy = make_array(rng, x.shape, dtype, "c")

    def run():
        y, mask = D.dropout_forward(x, 0.37, 123456789)
        return y, mask, D.dropout_backward(gy, mask, 0.37)

    for a, b in zip(with_threads(1, run), with_threads(2, run)):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_errors():
    x = np.zeros((2, 3), np.float32)
    for p in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="must be in \\[0, 1\\)"):
            D.dropout_forward(x, p, 0)
    with pytest.raises(ValueError, match=r"mask has shape \(3, 2\), gradient has shape \(2, 3\)"):
        D.dropout_backward(x, np.ones((3, 2), bool), 0.5)
    with pytest.raises(TypeError):
        D.dropout_forward(x, 0.5, 1.5)  # seeds are integers
    with pytest.raises(TypeError, match="int64"):
        D.dropout_forward(np.zeros(3, np.int64), 0.5, 0)
