"""The engine's graph mechanics: accumulation, grad mode, freed graphs, ordering, retained grads."""

import gc
import weakref

import numpy as np
import pytest

import freenet as fn


def test_gradients_accumulate_across_backward_calls():
    x = fn.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad._data, [3 + 2, 3 + 4])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad._data, [3, 3])


def test_accumulated_grads_are_not_aliased_between_leaves():
    a = fn.tensor([1.0], requires_grad=True)
    b = fn.tensor([1.0], requires_grad=True)
    (a + b).sum().backward()
    a.grad._data += 10  # an in-place change to one grad must not leak into the other
    assert b.grad.item() == 1.0


def test_diamond_graph_sums_both_paths():
    x = fn.tensor(2.0, requires_grad=True)
    y = x * x
    z = y * x + y  # dz/dx = 3x^2 + 2x
    z.backward()
    assert x.grad.item() == pytest.approx(3 * 4 + 4)


def test_shared_subgraph_is_visited_once_in_generation_order():
    calls = []
    x = fn.tensor(1.0, requires_grad=True)

    def traced(t, tag):
        return fn.autograd.record(t._data * 1.0, (t,), lambda g: (calls.append(tag) or g,))

    y = traced(x, "y")
    z = traced(y, "z1") + traced(y, "z2") * 2
    z.backward()
    assert calls.count("y") == 1 and calls[-1] == "y"
    assert x.grad.item() == 3.0


def test_deep_chain_needs_no_recursion():
    x = fn.tensor(1.0, dtype=fn.float64, requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001 ** 5000)


def test_no_grad_and_enable_grad():
    x = fn.tensor([1.0], requires_grad=True)
    with fn.no_grad():
        y = x * 2
        assert not fn.is_grad_enabled()
        with fn.enable_grad():
            z = x * 2
    assert fn.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    assert z.requires_grad and not z.is_leaf

    @fn.no_grad()
    def evaluate(t):
        return t * 2

    assert not evaluate(x).requires_grad


def test_no_grad_restores_mode_after_an_exception():
    with pytest.raises(RuntimeError):
        with fn.no_grad():
            raise RuntimeError
    assert fn.is_grad_enabled()


def test_graph_is_freed_after_backward():
    x = fn.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    big = x.exp()
    ref = weakref.ref(big)
    z = (big * 2).sum()
    del big
    z.backward()
    gc.collect()
    assert ref() is None  # the closure no longer keeps intermediates alive
    y.backward()
    with pytest.raises(fn.FreenetError, match="already freed"):
        y.backward()


def test_backward_through_a_freed_intermediate_names_the_op():
    x = fn.tensor([1.0], requires_grad=True)
    h = x.exp()
    h.sum().backward()
    with pytest.raises(fn.FreenetError, match="'exp'.*retain_graph"):
        (h * 2).sum().backward()


def test_retain_graph_allows_a_second_backward():
    x = fn.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad._data, [4.0, 8.0])


def test_backward_with_explicit_grad_and_on_a_leaf():
    x = fn.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).backward(fn.tensor([1.0, 0.5]))
    np.testing.assert_array_equal(x.grad._data, [3.0, 1.5])
    leaf = fn.tensor([1.0], requires_grad=True)
    leaf.backward()
    assert leaf.grad.item() == 1.0


def test_retain_grad_keeps_intermediate_gradients():
    x = fn.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_array_equal(h.grad._data, [4.0, 8.0])


def test_detach_cuts_the_graph():
    x = fn.tensor([1.0], requires_grad=True)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.is_leaf
    assert np.shares_memory(d._data, y._data)


def test_inputs_that_do_not_require_grad_get_none():
    x = fn.tensor([1.0], requires_grad=True)
    c = fn.tensor([5.0])
    (x * c).sum().backward()
    assert c.grad is None and x.grad.item() == 5.0


def test_integer_tensors_flow_through_without_grad():
    idx = fn.arange(3)
    assert idx.dtype == np.int64 and not (idx * 2).requires_grad


def test_broadcast_gradients_are_summed_to_the_input_shape():
    b = fn.tensor([[1.0], [2.0]], requires_grad=True)  # (2, 1) against (2, 3)
    (fn.ones(2, 3) * b).sum().backward()
    np.testing.assert_array_equal(b.grad._data, [[3.0], [3.0]])
