"""In-place ops (``x += y``, ``add_``, ``x[i] = v``, ``relu(inplace=True)``) and the version counters that
make autograd refuse a gradient computed from a changed value, as in PyTorch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import freenet as fn
from freenet import FreenetError
from freenet.nn import functional as F


def leaf(values, dtype=np.float64):
    return fn.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


def test_augmented_assignment_changes_the_tensor_itself():
    x = fn.tensor([1.0, 2.0])
    y = x
    x += 1
    assert y is x
    np.testing.assert_array_equal(y.numpy(), [2.0, 3.0])
    x *= fn.tensor([2.0, 0.5])
    x -= 1
    x /= 2
    np.testing.assert_array_equal(y.numpy(), [1.5, 0.25])


def test_sgd_by_hand_under_no_grad_updates_the_parameter():
    w = fn.nn.Parameter(fn.tensor([1.0, -2.0]))
    (w * w).sum().backward()
    with fn.no_grad():
        w -= 0.1 * w.grad
    np.testing.assert_allclose(w.numpy(), [0.8, -1.6], rtol=1e-6)
    assert w.is_leaf and w.requires_grad and w.version == 1


def test_a_leaf_that_requires_grad_cannot_change_in_place_while_recording():
    w = leaf([1.0, 2.0])
    with pytest.raises(FreenetError, match="leaf tensor that requires grad"):
        w += 1
    with pytest.raises(FreenetError, match="leaf tensor that requires grad"):
        w.uniform_()
    np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])


# Each case: (name, in-place form on t, out-of-place form); both are applied to h = a * 1.5 + b.
CASES = [
    ("iadd", lambda t, b: t.__iadd__(b), lambda t, b: t + b),
    ("isub", lambda t, b: t.__isub__(b * 2), lambda t, b: t - b * 2),
    ("imul", lambda t, b: t.__imul__(b), lambda t, b: t * b),
    ("idiv", lambda t, b: t.__itruediv__(b * b + 1), lambda t, b: t / (b * b + 1)),
    ("add_alpha", lambda t, b: t.add_(b, alpha=3), lambda t, b: t + 3 * b),
    ("mul_self", lambda t, b: t.mul_(t), lambda t, b: t * t),
    ("relu_", lambda t, b: t.relu_(), lambda t, b: t.relu()),
    ("tanh_", lambda t, b: t.tanh_(), lambda t, b: t.tanh()),
    ("exp_", lambda t, b: t.exp_(), lambda t, b: t.exp()),
    ("clamp_", lambda t, b: t.clamp_(-0.5, 0.5), lambda t, b: t.clip(-0.5, 0.5)),
    ("copy_", lambda t, b: t.copy_(b * 2), lambda t, b: b * 2 + t * 0),
    ("zero_", lambda t, b: t.zero_(), lambda t, b: t * 0),
    ("masked_fill_", lambda t, b: t.masked_fill_(b > 0, 7.0), lambda t, b: t.masked_fill(b > 0, 7.0)),
]


@pytest.mark.parametrize("name,change,reference", CASES, ids=[c[0] for c in CASES])
@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 2**31))
def test_in_place_ops_give_the_out_of_place_gradients(name, change, reference, n, seed):
    rng = np.random.default_rng(seed)
    values_a, values_b = rng.standard_normal(n), rng.standard_normal(n)

    def run(op):
        a, b = leaf(values_a), leaf(values_b)
        h = a * 1.5 + b
        before = h.exp()  # an op recorded before the change keeps the old value's gradient
        out = op(h, b)
        (out * out + before).sum().backward()
        grads = [np.zeros(n) if t.grad is None else t.grad.numpy() for t in (a, b)]
        return out.numpy().copy(), grads

    out_inplace, grads_inplace = run(change)
    out_reference, grads_reference = run(reference)
    np.testing.assert_allclose(out_inplace, out_reference, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads_inplace, grads_reference):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)


def test_changing_a_value_that_backward_needs_is_an_error():
    a = leaf([0.5, -1.0])
    y = a.exp()
    y.add_(1)  # exp's backward reads its output
    with pytest.raises(FreenetError, match="'exp' needs for its gradient was changed in place"):
        y.sum().backward()

    h = a * 1.0
    z = h * h
    h += 1  # mul's backward reads its inputs
    with pytest.raises(FreenetError, match="changed in place"):
        z.sum().backward()


def test_changing_a_value_that_backward_does_not_need_is_fine():
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    h = a * 1.0
    s = h + b  # add reads neither input
    h.mul_(10)
    s.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 1.0])


def test_views_share_memory_and_version():
    x = fn.zeros(2, 3)
    v = x.view(-1)
    v += 1
    np.testing.assert_array_equal(x.numpy(), np.ones((2, 3)))
    row = x[1]
    row.fill_(5.0)
    np.testing.assert_array_equal(x.numpy()[1], [5.0, 5.0, 5.0])
    assert x.version == v.version == row.version == 2


def test_in_place_on_a_view_of_a_recorded_tensor_is_refused():
    a = leaf([1.0, 2.0, 3.0])
    h = a * 2
    v = h[1:]
    with pytest.raises(FreenetError, match="shares memory with a view"):
        v.mul_(3)
    with pytest.raises(FreenetError, match="read-only"):
        fn.zeros(3).expand(2, 3).add_(1)


def test_item_assignment():
    x = fn.zeros(3, 4, dtype=fn.int64)
    x[1, 2] = 7
    x[0] = fn.tensor([1, 2, 3, 4])
    x[x == 7] = -1
    np.testing.assert_array_equal(x.numpy(), [[1, 2, 3, 4], [0, 0, -1, 0], [0, 0, 0, 0]])

    counts = fn.zeros(3, 3, dtype=fn.int32)  # makemore's bigram counts: N[ix1, ix2] += 1
    for i, j in [(0, 1), (0, 1), (2, 0)]:
        counts[i, j] += 1
    assert counts.numpy()[0, 1] == 2 and counts.numpy()[2, 0] == 1


def test_item_assignment_is_differentiable():
    a, b = leaf([1.0, 2.0, 3.0, 4.0]), leaf([10.0, 20.0])
    h = a * 1.0
    h[1:3] = b * b
    (h * fn.tensor([1.0, 2.0, 3.0, 4.0], dtype=fn.float64)).sum().backward()
    np.testing.assert_array_equal(h.numpy(), [1.0, 100.0, 400.0, 4.0])
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 0.0, 0.0, 4.0])
    np.testing.assert_array_equal(b.grad.numpy(), [2 * 2 * 10.0, 3 * 2 * 20.0])


def test_dtype_rules():
    x = fn.tensor([1, 2, 3])
    with pytest.raises(FreenetError, match="cannot be stored in place"):
        x += 1.5
    x += 2
    assert x.dtype == np.int64
    f = fn.tensor([1.0, 2.0])
    f += fn.tensor([0.5, 0.5], dtype=fn.float64)
    assert f.dtype == np.float32
    with pytest.raises(FreenetError, match="does not fit in place"):
        f += fn.ones(2, 2)


def test_fills_and_copies():
    x = fn.empty(2, 3)
    x.fill_(2.5)
    np.testing.assert_array_equal(x.numpy(), np.full((2, 3), 2.5))
    x.copy_(fn.tensor([1, 2, 3]))  # broadcast and converted, as in PyTorch
    np.testing.assert_array_equal(x.numpy(), [[1, 2, 3], [1, 2, 3]])
    x.zero_()
    assert not x.numpy().any()
    fn.manual_seed(3)
    first = fn.empty(4).uniform_(-1, 1).numpy().copy()
    fn.manual_seed(3)
    second = fn.empty(4).normal_().numpy()
    fn.manual_seed(3)
    np.testing.assert_array_equal(fn.empty(4).uniform_(-1, 1).numpy(), first)
    assert (np.abs(first) <= 1).all() and not np.array_equal(first, second)


def test_inplace_relu_in_a_net_matches_the_plain_one():
    fn.manual_seed(0)
    conv = fn.nn.Conv2d(2, 3, 3, padding=1)
    x = fn.randn(2, 2, 5, 5)
    outs, grads = [], []
    for inplace in (False, True):
        conv.zero_grad()
        net = fn.nn.Sequential(conv, fn.nn.ReLU(inplace=inplace))
        y = net(x)
        y.sum().backward()
        outs.append(y.numpy())
        grads.append(conv.weight.grad.numpy().copy())
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(grads[0], grads[1])
    h = fn.randn(4, requires_grad=True) * 1
    assert F.relu(h, inplace=True) is h and F.dropout(h, 0.5, inplace=True) is h


def test_matches_pytorch():
    torch = pytest.importorskip("torch")
    values = np.array([[0.3, -1.2, 2.0], [1.5, 0.1, -0.7]])

    def program(lib, a, b):
        h = a * 2
        h += b
        h[0, 1] = 5.0
        h.relu_()
        g = h.clone() if hasattr(h, "clone") else h * 1
        g.mul_(b)
        return (g.exp() + h).sum()

    a, b = leaf(values), leaf(values[::-1].copy())
    ta = torch.tensor(values, requires_grad=True)
    tb = torch.tensor(values[::-1].copy(), requires_grad=True)
    program(fn, a, b).backward()
    program(torch, ta, tb).backward()
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-12)
