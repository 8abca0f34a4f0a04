"""Losses against plain NumPy formulas, gradchecked, and stable for huge logits."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import freenet as fn
from freenet.nn import functional as F

from arrays import leaf, seeds

REDUCTIONS = ["mean", "sum", "none"]


def _log_softmax(v, axis):
    m = v.max(axis=axis, keepdims=True)
    return v - m - np.log(np.exp(v - m).sum(axis=axis, keepdims=True))


def _ce_reference(v, target, reduction, smoothing=0.0, ignore_index=-100):
    """Cross-entropy the long way: one sample at a time."""
    class_dim = 1 if v.ndim > 1 else 0
    lp = _log_softmax(v, class_dim)
    classes = v.shape[class_dim]
    lp = np.moveaxis(lp, class_dim, -1).reshape(-1, classes)
    if target.dtype.kind == "f":
        dist = np.moveaxis(target, class_dim, -1).reshape(-1, classes) * (1 - smoothing) + smoothing / classes
        losses = -(dist * lp).sum(1)
        count = len(losses)
    else:
        flat = target.reshape(-1)
        losses = np.zeros(len(flat))
        for i, t in enumerate(flat):
            if t != ignore_index:
                losses[i] = -(1 - smoothing) * lp[i, t] - smoothing * lp[i].mean()
        count = int((flat != ignore_index).sum())
    losses = losses.reshape(target.shape if target.dtype.kind != "f" else
                            tuple(n for i, n in enumerate(v.shape) if i != class_dim))
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.sum() / count


@st.composite
def logits_and_targets(draw):
    n = draw(st.integers(1, 4))
    classes = draw(st.integers(1, 5))
    extra = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    unbatched = draw(st.booleans()) and not extra
    shape = (classes,) if unbatched else (n, classes) + extra
    target_shape = () if unbatched else (n,) + extra
    seed = draw(seeds)
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        probs = rng.random(shape)
        probs /= probs.sum(axis=0 if unbatched else 1, keepdims=True)
        target = probs
    else:
        target = rng.integers(0, classes, size=target_shape)
        if draw(st.booleans()) and target.size > 1:
            target.flat[0] = -100  # ignored
    return shape, target, seed


@given(case=logits_and_targets(), reduction=st.sampled_from(REDUCTIONS),
       smoothing=st.sampled_from([0.0, 0.1]))
def test_cross_entropy(case, reduction, smoothing):
    shape, target, seed = case
    x, v = leaf(shape, seed)
    t = fn.tensor(target)
    loss = F.cross_entropy(x, t, reduction=reduction, label_smoothing=smoothing)
    np.testing.assert_allclose(loss._data, _ce_reference(v, target, reduction, smoothing), rtol=1e-10, atol=1e-12)
    assert fn.gradcheck(lambda x: F.cross_entropy(x, t, reduction=reduction, label_smoothing=smoothing), x)


@given(case=logits_and_targets(), reduction=st.sampled_from(REDUCTIONS))
def test_nll_loss_matches_cross_entropy_of_log_softmax(case, reduction):
    shape, target, seed = case
    if target.dtype.kind == "f":
        target = np.argmax(target, axis=1 if len(shape) > 1 else 0)
    x, v = leaf(shape, seed)
    lp = F.log_softmax(x, dim=1 if len(shape) > 1 else 0)
    t = fn.tensor(target)
    np.testing.assert_allclose(F.nll_loss(lp, t, reduction=reduction)._data,
                               F.cross_entropy(x, t, reduction=reduction)._data, rtol=1e-12)
    assert fn.gradcheck(lambda x: F.nll_loss(x, t, reduction=reduction), x)


def test_cross_entropy_is_stable_for_huge_logits():
    x = fn.tensor([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]], requires_grad=True)
    loss = F.cross_entropy(x, fn.tensor([2, 1]), reduction="none")
    np.testing.assert_allclose(loss._data, [2e4, np.log(2)], rtol=1e-6)
    loss.sum().backward()
    assert np.isfinite(x.grad._data).all()
    np.testing.assert_allclose(x.grad._data, [[1, 0, -1], [0, -0.5, 0.5]], atol=1e-6)
    probs = F.cross_entropy(x, fn.tensor([[0.0, 0.0, 1.0], [0.0, 0.5, 0.5]]))
    assert np.isfinite(probs.item())


def test_cross_entropy_errors():
    x = fn.zeros(2, 3)
    with pytest.raises(fn.FreenetError, match="out of range for 3 classes"):
        F.cross_entropy(x, fn.tensor([0, 3]))
    with pytest.raises(fn.FreenetError, match=r"shape \(3,\).*\(2, 3\)"):
        F.cross_entropy(x, fn.tensor([0, 1, 2]))
    with pytest.raises(fn.FreenetError, match="reduction"):
        F.cross_entropy(x, fn.tensor([0, 1]), reduction="avg")
    with pytest.raises(fn.FreenetError, match="probability target"):
        F.cross_entropy(x, fn.zeros(2, 4))
    with pytest.raises(fn.FreenetError, match="integer class indices"):
        F.nll_loss(x, fn.zeros(2, 3))


def test_all_targets_ignored_gives_nan_like_pytorch():
    loss = F.cross_entropy(fn.zeros(2, 3), fn.tensor([-100, -100]))
    assert np.isnan(loss.item())


@given(shape=st.lists(st.integers(0, 4), max_size=3).map(tuple), seed=seeds, reduction=st.sampled_from(REDUCTIONS))
def test_mse_loss(shape, seed, reduction):
    a, va = leaf(shape, seed)
    b, vb = leaf(shape, seed + 1)
    expected = (va - vb) ** 2
    if reduction != "none":
        expected = expected.sum() if reduction == "sum" else expected.mean() if expected.size else np.nan
    np.testing.assert_allclose(F.mse_loss(a, b, reduction=reduction)._data, expected, rtol=1e-12)
    assert fn.gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), a, b)


def test_mse_loss_refuses_silent_broadcasting():
    with pytest.raises(fn.FreenetError, match=r"\(4, 1\).*\(4,\)"):
        F.mse_loss(fn.zeros(4, 1), fn.zeros(4))


@given(shape=st.lists(st.integers(0, 4), max_size=3).map(tuple), seed=seeds, reduction=st.sampled_from(REDUCTIONS))
def test_binary_cross_entropy_with_logits(shape, seed, reduction):
    x, v = leaf(shape, seed)
    y, vy = leaf(shape, seed + 1, domain="positive")
    vy = np.asarray(vy / 2.2)  # probabilities in (0, 1)
    y = fn.from_numpy(vy).requires_grad_()
    s = 1 / (1 + np.exp(-v))
    expected = -(vy * np.log(s) + (1 - vy) * np.log(1 - s))
    if reduction != "none":
        expected = expected.sum() if reduction == "sum" else expected.mean() if expected.size else np.nan
    out = F.binary_cross_entropy_with_logits(x, y, reduction=reduction)
    np.testing.assert_allclose(out._data, expected, rtol=1e-10, atol=1e-12)
    assert fn.gradcheck(lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction=reduction), x, y)


def test_binary_cross_entropy_with_logits_is_stable_and_smooth_at_zero():
    x = fn.tensor([1e4, -1e4, 0.0], requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(x, fn.tensor([0.0, 1.0, 1.0]), reduction="sum")
    np.testing.assert_allclose(loss.item(), 2e4 + np.log(2), rtol=1e-6)
    loss.backward()
    np.testing.assert_allclose(x.grad._data, [1.0, -1.0, -0.5])  # sigmoid(x) - y, also at x = 0
