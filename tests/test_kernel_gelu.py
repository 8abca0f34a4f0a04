"""The GELU kernel against its NumPy twin."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from freenet import kernels

from arrays import LAYOUTS, laid_out, shapes, seeds


@given(shape=shapes(), seed=seeds, layout=st.sampled_from(LAYOUTS), dtype=st.sampled_from([np.float32, np.float64]))
def test_gelu_matches_its_twin(shape, seed, layout, dtype):
    rng = np.random.default_rng(seed)
    x = laid_out((rng.standard_normal(shape) * 4).astype(dtype), layout)
    g = laid_out(rng.standard_normal(shape).astype(dtype), layout)
    y = kernels.gelu(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, kernels.gelu_reference(x), rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-30)
    gx = kernels.gelu_backward(x, g)
    np.testing.assert_allclose(gx, kernels.gelu_backward_reference(x, g),
                               rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-30)


def test_gelu_known_values():
    x = np.array([-3.0, 0.0, 1.0, 10.0])
    np.testing.assert_allclose(kernels.gelu(x), [-0.00404969409489, 0.0, 0.8413447461, 10.0], rtol=1e-9)
