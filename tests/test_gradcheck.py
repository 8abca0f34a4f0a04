"""gradcheck itself: it must catch a wrong backward and say where."""

import numpy as np
import pytest

import freenet as fn
from freenet.autograd import record


def wrong_square(x):
    """x**2 with a backward that is wrong in the element at index 2."""
    def backward(g):
        d = 2 * x._data
        d = d.copy()
        d.flat[2] += 0.1
        return (g * d,)
    return record(x._data ** 2, (x,), backward)


def test_gradcheck_passes_a_right_backward():
    x = fn.tensor(np.linspace(-1, 1, 6).reshape(2, 3), requires_grad=True)
    assert fn.gradcheck(lambda x: x ** 2, x)


def test_gradcheck_names_the_input_and_element_that_disagree():
    x = fn.tensor(np.linspace(-1, 1, 6).reshape(2, 3), requires_grad=True)
    y = fn.tensor([1.0, 2.0], dtype=fn.float64, requires_grad=True)
    with pytest.raises(fn.FreenetError, match=r"input 0 \(shape \(2, 3\)\) element \(0, 2\)"):
        fn.gradcheck(lambda x, y: wrong_square(x).sum() * y, x, y)


def test_gradcheck_with_several_outputs_and_non_tensor_arguments():
    a = fn.tensor([0.3, 0.7], dtype=fn.float64, requires_grad=True)
    assert fn.gradcheck(lambda a, k: (a * k, a.exp()), a, 3.0)


def test_gradcheck_catches_a_missing_gradient():
    a = fn.tensor([0.3, 0.7], dtype=fn.float64, requires_grad=True)
    detached = lambda a: a.detach() * 2 + a  # noqa: E731  backward misses the detached path
    with pytest.raises(fn.FreenetError, match=r"element \(0,\): backward gives"):
        fn.gradcheck(detached, a)


def test_gradcheck_leaves_existing_grads_alone():
    a = fn.tensor([0.3], dtype=fn.float64, requires_grad=True)
    a.grad = fn.tensor([5.0], dtype=fn.float64)
    fn.gradcheck(lambda a: a * 2, a)
    assert a.grad.item() == 5.0
