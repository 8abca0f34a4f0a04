"""The PyTorch layers and functions that renamed scripts (``import freenet as torch``) use: Embedding,
LayerNorm, GroupNorm, Conv1d, SiLU, Softmax/LogSoftmax, L1Loss, BCELoss, ModuleDict, one_hot and
interpolate.

Every differentiable op is gradchecked in float64 over generated shapes and held to a plain NumPy
formula; the tests that also compare forwards and gradients with PyTorch skip themselves where torch
is not installed.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import freenet as fn
from freenet import FreenetError, nn
from freenet.nn import functional as F

from arrays import layouts, leaf, seeds, values


def _torch():
    return pytest.importorskip("torch")


def _t(torch, v, grad=True):
    """A torch leaf over a copy of the array ``v``."""
    return torch.tensor(np.ascontiguousarray(v), requires_grad=grad)


def _grads(*ts):
    return [t.grad._data.copy() for t in ts]


def _close(ours, theirs, rtol=1e-5, atol=1e-8):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    np.testing.assert_allclose(ours._data if isinstance(ours, fn.Tensor) else ours, theirs, rtol=rtol, atol=atol)


# -- layer norm ------------------------------------------------------------------------------------

def _normalize(v, axes, eps):
    mean = v.mean(axis=axes, keepdims=True)
    var = ((v - mean) ** 2).mean(axis=axes, keepdims=True)
    return (v - mean) / np.sqrt(var + eps)


@st.composite
def layer_norm_case(draw):
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    normalized = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)))
    affine = draw(st.sampled_from(["none", "weight", "both"]))
    return lead, normalized, affine


@given(case=layer_norm_case(), seed=seeds, layout=layouts)
def test_layer_norm_matches_numpy_and_gradchecks(case, seed, layout):
    lead, normalized, affine = case
    x, vx = leaf(lead + normalized, seed, layout=layout)
    w, vw = leaf(normalized, seed + 1) if affine != "none" else (None, None)
    b, vb = leaf(normalized, seed + 2) if affine == "both" else (None, None)
    axes = tuple(range(len(lead), len(lead) + len(normalized)))
    expected = _normalize(vx, axes, 1e-5)
    if w is not None:
        expected = expected * vw
    if b is not None:
        expected = expected + vb
    shape = normalized[0] if len(normalized) == 1 and seed % 2 else normalized  # an int or a tuple
    np.testing.assert_allclose(F.layer_norm(x, shape, w, b)._data, expected, rtol=1e-10, atol=1e-12)
    params = tuple(p for p in (x, w, b) if p is not None)

    def f(x, *wb):
        return F.layer_norm(x, normalized, *(wb + (None,) * (2 - len(wb))), eps=1e-3)

    assert fn.gradcheck(f, *params)


def test_layer_norm_float32_sums_in_float64_and_checks_shapes():
    rng = np.random.default_rng(0)
    v = (rng.standard_normal((3, 4096)) * 1e-3 + 1e3).astype(np.float32)  # a large mean, a small spread
    out = F.layer_norm(fn.tensor(v), 4096)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out._data, _normalize(v.astype(np.float64), (1,), 1e-5), rtol=0, atol=2e-3)
    with pytest.raises(FreenetError, match="normalized_shape"):
        F.layer_norm(fn.zeros(2, 3), (2, 3, 4))
    with pytest.raises(FreenetError, match="normalized_shape"):
        F.layer_norm(fn.zeros(2, 3), 4)
    with pytest.raises(FreenetError, match="weight"):
        F.layer_norm(fn.zeros(2, 3), 3, fn.ones(4))


def test_layer_norm_backward_notices_an_in_place_change():
    x = fn.randn(2, 3, dtype=fn.float64, requires_grad=True)
    y = x * 1.0
    out = F.layer_norm(y, 3)
    y.add_(1.0)
    with pytest.raises(FreenetError, match="changed in place"):
        out.sum().backward()


def test_layer_norm_module():
    ln = nn.LayerNorm((2, 3))
    assert ln.normalized_shape == (2, 3)
    assert list(ln.state_dict()) == ["weight", "bias"]
    assert np.array_equal(ln.weight._data, np.ones((2, 3), np.float32))
    assert np.array_equal(ln.bias._data, np.zeros((2, 3), np.float32))
    assert repr(ln) == "LayerNorm((2, 3), eps=1e-05, elementwise_affine=True)"
    assert list(nn.LayerNorm(4, bias=False).state_dict()) == ["weight"]
    assert list(nn.LayerNorm(4, elementwise_affine=False).state_dict()) == []
    assert nn.LayerNorm(5, dtype=fn.float64).weight.dtype == np.float64
    x = fn.randn(4, 2, 3)
    train = ln(x)
    ln.eval()
    assert np.array_equal(ln(x)._data, train._data)  # no running statistics: the same in eval
    out = train._data.reshape(4, 6)
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(out.var(axis=1), 1, rtol=1e-4)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_layer_norm_matches_torch(dtype):
    torch = _torch()
    rng = np.random.default_rng(1)
    v = rng.standard_normal((3, 5, 8)).astype(dtype)
    w, b = rng.standard_normal((5, 8)).astype(dtype), rng.standard_normal((5, 8)).astype(dtype)
    g = rng.standard_normal(v.shape).astype(dtype)
    x, fw, fb = (fn.tensor(a, requires_grad=True) for a in (v, w, b))
    tx, tw, tb = (_t(torch, a) for a in (v, w, b))
    out = F.layer_norm(x, (5, 8), fw, fb, eps=1e-4)
    ref = torch.nn.functional.layer_norm(tx, (5, 8), tw, tb, eps=1e-4)
    out.backward(g)
    ref.backward(torch.from_numpy(g))
    rtol, atol = (1e-10, 1e-12) if dtype == "float64" else (1e-4, 1e-5)
    _close(out, ref, rtol, atol)
    for ours, theirs in zip(_grads(x, fw, fb), (tx, tw, tb)):
        _close(ours, theirs.grad, rtol, atol)


# -- group norm ------------------------------------------------------------------------------------

@given(n=st.integers(1, 2), groups=st.integers(1, 3), per_group=st.integers(1, 2),
       spatial=st.lists(st.integers(1, 3), max_size=2), affine=st.booleans(), seed=seeds, layout=layouts)
def test_group_norm_matches_numpy_and_gradchecks(n, groups, per_group, spatial, affine, seed, layout):
    c = groups * per_group
    shape = (n, c) + tuple(spatial)
    assume(per_group * math.prod(spatial) > 1)  # a group of one value normalises to 0 whatever it is
    x, vx = leaf(shape, seed, layout=layout)
    w, vw = leaf((c,), seed + 1) if affine else (None, None)
    b, vb = leaf((c,), seed + 2) if affine else (None, None)
    expected = _normalize(vx.reshape(n, groups, -1), (2,), 1e-5).reshape(shape)
    if affine:
        channel = (1, c) + (1,) * len(spatial)
        expected = expected * vw.reshape(channel) + vb.reshape(channel)
    np.testing.assert_allclose(F.group_norm(x, groups, w, b)._data, expected, rtol=1e-10, atol=1e-12)
    params = (x, w, b) if affine else (x,)
    assert fn.gradcheck(lambda x, *wb: F.group_norm(x, groups, *(wb or (None, None)), eps=1e-3), *params)


def test_group_norm_module_and_errors():
    gn = nn.GroupNorm(2, 4)
    assert list(gn.state_dict()) == ["weight", "bias"]
    assert repr(gn) == "GroupNorm(2, 4, eps=1e-05, affine=True)"
    assert list(nn.GroupNorm(2, 4, affine=False).state_dict()) == []
    assert list(nn.GroupNorm(2, 4, bias=False).state_dict()) == ["weight"]
    out = gn(fn.randn(3, 4, 5))
    grouped = out._data.reshape(3, 2, 10)
    np.testing.assert_allclose(grouped.mean(axis=2), 0, atol=1e-6)
    with pytest.raises(FreenetError, match="divide"):
        nn.GroupNorm(3, 4)
    with pytest.raises(FreenetError, match="channels"):
        gn(fn.randn(3, 6, 5))
    with pytest.raises(FreenetError, match="divide"):
        F.group_norm(fn.randn(2, 5, 3), 2)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_group_norm_matches_torch(dtype):
    torch = _torch()
    rng = np.random.default_rng(2)
    v = rng.standard_normal((2, 6, 4, 3)).astype(dtype)
    w, b = rng.standard_normal(6).astype(dtype), rng.standard_normal(6).astype(dtype)
    g = rng.standard_normal(v.shape).astype(dtype)
    x, fw, fb = (fn.tensor(a, requires_grad=True) for a in (v, w, b))
    tx, tw, tb = (_t(torch, a) for a in (v, w, b))
    out = F.group_norm(x, 3, fw, fb)
    ref = torch.nn.functional.group_norm(tx, 3, tw, tb)
    out.backward(g)
    ref.backward(torch.from_numpy(g))
    rtol, atol = (1e-10, 1e-12) if dtype == "float64" else (1e-4, 1e-5)
    _close(out, ref, rtol, atol)
    for ours, theirs in zip(_grads(x, fw, fb), (tx, tw, tb)):
        _close(ours, theirs.grad, rtol, atol)


# -- embedding -------------------------------------------------------------------------------------

@given(rows=st.integers(1, 5), dim=st.integers(1, 3), index_shape=st.lists(st.integers(0, 3), max_size=2),
       padding=st.booleans(), by_freq=st.booleans(), seed=seeds, layout=layouts)
def test_embedding_matches_numpy_and_gradchecks(rows, dim, index_shape, padding, by_freq, seed, layout):
    w, vw = leaf((rows, dim), seed, layout=layout)
    idx = fn.tensor(np.random.default_rng(seed).integers(0, rows, size=tuple(index_shape)))
    out = F.embedding(idx, w, scale_grad_by_freq=by_freq)
    assert out.shape == tuple(index_shape) + (dim,)
    assert np.array_equal(out._data, vw[idx._data])
    assert fn.gradcheck(lambda w: F.embedding(idx, w), w)
    # the gradient adds up over repeated indices (divided by the count with scale_grad_by_freq: not the
    # derivative, so compared with the sum written out)
    g = values(out.shape, seed + 1)
    w.grad = None
    F.embedding(idx, w, scale_grad_by_freq=by_freq).backward(g)
    flat, gflat = idx._data.reshape(-1), g.reshape(-1, dim)
    counts = np.bincount(flat, minlength=rows)
    expected = np.zeros((rows, dim))
    for i, row in enumerate(flat):
        expected[row] += gflat[i] / (counts[row] if by_freq else 1)
    np.testing.assert_allclose(w.grad._data, expected, rtol=1e-12, atol=1e-15)
    if padding:  # the padding row gets no gradient, the others the same as without it
        pad = int(seed % rows)
        w.grad = None
        F.embedding(idx, w, padding_idx=pad - rows if seed % 2 else pad, scale_grad_by_freq=by_freq).backward(g)
        expected[pad] = 0
        np.testing.assert_allclose(w.grad._data, expected, rtol=1e-12, atol=1e-15)


def test_embedding_errors_and_index_changes():
    w = fn.randn(4, 2, dtype=fn.float64, requires_grad=True)
    with pytest.raises(FreenetError, match="out of range"):
        F.embedding(fn.tensor([0, 4]), w)
    with pytest.raises(FreenetError, match="out of range"):
        F.embedding(fn.tensor([-1]), w)
    with pytest.raises(FreenetError, match="integer"):
        F.embedding(fn.tensor([0.0, 1.0]), w)
    with pytest.raises(FreenetError, match="padding_idx"):
        F.embedding(fn.tensor([0]), w, padding_idx=4)
    with pytest.raises(FreenetError, match="sparse"):
        F.embedding(fn.tensor([0]), w, sparse=True)
    idx = fn.tensor([1, 2, 1])
    out = F.embedding(idx, w)
    idx[0] = 3  # backward reads the indices: changing them in place is caught
    with pytest.raises(FreenetError, match="changed in place"):
        out.sum().backward()
    # an ndarray or a list of indices works too, and is copied
    raw = np.array([0, 3])
    out = F.embedding(raw, w)
    raw[0] = 1
    out.sum().backward()
    assert w.grad._data[:, 0].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert F.embedding([[1, 1]], w).shape == (1, 2, 2)


def test_embedding_max_norm_renormalises_the_rows_used_in_place():
    w = fn.tensor([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]], requires_grad=True)
    out = F.embedding(fn.tensor([0, 1]), w, max_norm=1.0)
    np.testing.assert_allclose(w._data[0], [0.6, 0.8], rtol=1e-6)  # norm 5 -> 1 (5 / (5 + 1e-7))
    np.testing.assert_allclose(w._data[1], [0.3, 0.4])  # under max_norm: untouched
    np.testing.assert_allclose(w._data[2], [6.0, 8.0])  # not looked up: untouched
    assert w.version == 1
    np.testing.assert_allclose(out._data, w._data[:2])
    w1 = fn.tensor([[3.0, 4.0]])
    F.embedding(fn.tensor([0]), w1, max_norm=2.0, norm_type=1)
    np.testing.assert_allclose(w1._data, [[6 / 7, 8 / 7]], rtol=1e-6)


def test_embedding_module():
    fn.manual_seed(0)
    emb = nn.Embedding(1000, 8, padding_idx=3)
    assert list(emb.state_dict()) == ["weight"]
    assert emb.weight.shape == (1000, 8) and emb.weight.dtype == np.float32
    assert np.array_equal(emb.weight._data[3], np.zeros(8))
    rest = np.delete(emb.weight._data, 3, axis=0)
    assert abs(rest.mean()) < 0.05 and abs(rest.std() - 1) < 0.05  # N(0, 1)
    fn.manual_seed(0)
    assert np.array_equal(nn.Embedding(1000, 8, padding_idx=3).weight._data, emb.weight._data)  # seeded
    assert repr(emb) == "Embedding(1000, 8, padding_idx=3)"
    assert nn.Embedding(5, 2, padding_idx=-1).padding_idx == 4
    idx = fn.tensor([[3, 7], [7, 1]])
    out = emb(idx)
    assert out.shape == (2, 2, 8)
    out.sum().backward()
    grad = emb.weight.grad._data
    assert np.array_equal(grad[3], np.zeros(8)) and np.array_equal(grad[7], np.full(8, 2.0))
    assert np.array_equal(grad[1], np.ones(8)) and grad[[0, 2, 4]].sum() == 0
    emb.eval()
    assert np.array_equal(emb(idx)._data, out._data)
    with pytest.raises(FreenetError):
        nn.Embedding(4, 2, padding_idx=4)


def test_embedding_from_pretrained():
    table = fn.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    emb = nn.Embedding.from_pretrained(table)
    assert not emb.weight.requires_grad and emb.weight._data is table._data  # shared, as in PyTorch
    assert (emb.num_embeddings, emb.embedding_dim) == (3, 2)
    assert emb(fn.tensor([2, 0])).tolist() == [[5.0, 6.0], [1.0, 2.0]]
    trainable = nn.Embedding.from_pretrained(table, freeze=False, padding_idx=1)
    assert trainable.weight.requires_grad and trainable.weight._data[1].tolist() == [3.0, 4.0]  # kept
    trainable(fn.tensor([1, 2])).sum().backward()
    assert trainable.weight.grad.tolist() == [[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]
    assert nn.Embedding.from_pretrained(np.ones((2, 3))).weight.dtype == np.float64
    with pytest.raises(FreenetError, match="2-d"):
        nn.Embedding.from_pretrained(fn.ones(3))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_embedding_matches_torch(dtype):
    torch = _torch()
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 4)).astype(dtype)
    idx = rng.integers(0, 6, size=(3, 5))
    g = rng.standard_normal((3, 5, 4)).astype(dtype)
    for options in ({}, {"padding_idx": 2}, {"scale_grad_by_freq": True, "padding_idx": -1}):
        fw, tw = fn.tensor(w, requires_grad=True), _t(torch, w)
        out = F.embedding(fn.tensor(idx), fw, **options)
        ref = torch.nn.functional.embedding(torch.from_numpy(idx), tw, **options)
        out.backward(g)
        ref.backward(torch.from_numpy(g))
        _close(out, ref, 0, 0)
        _close(fw.grad, tw.grad, 1e-12 if dtype == "float64" else 1e-6)
    fw, tw = fn.tensor(w * 3), torch.tensor(w * 3)
    F.embedding(fn.tensor(idx), fw, max_norm=1.5)
    torch.nn.functional.embedding(torch.from_numpy(idx), tw, max_norm=1.5)
    _close(fw, tw, 1e-6)


# -- conv1d ----------------------------------------------------------------------------------------

def _conv1d_reference(x, w, b, stride, padding, dilation, groups):
    n, c, length = x.shape
    k, cg, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding)))
    lo = (length + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, k, lo))
    kg = k // groups
    for o in range(k):
        gi = o // kg
        for j in range(kw):
            taps = xp[:, gi * cg:(gi + 1) * cg, j * dilation:j * dilation + stride * (lo - 1) + 1:stride]
            out[:, o] += np.einsum("ncl,c->nl", taps, w[o, :, j])
    return out if b is None else out + b.reshape(1, -1, 1)


@st.composite
def conv1d_case(draw):
    groups = draw(st.sampled_from([1, 1, 2]))
    c, k = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kw, stride = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    padding, dilation = draw(st.integers(0, 2)), draw(st.integers(1, 2))
    length = draw(st.integers(1, 6))
    assume(length + 2 * padding >= dilation * (kw - 1) + 1)
    return (draw(st.integers(1, 2)), c, length), (k, c // groups, kw), stride, padding, dilation, groups


@given(case=conv1d_case(), seed=seeds, layout=layouts, with_bias=st.booleans())
def test_conv1d_matches_numpy_and_gradchecks(case, seed, layout, with_bias):
    x_shape, w_shape, stride, padding, dilation, groups = case
    x, vx = leaf(x_shape, seed, layout=layout)
    w, vw = leaf(w_shape, seed + 1)
    b, vb = leaf((w_shape[0],), seed + 2) if with_bias else (None, None)
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    expected = _conv1d_reference(vx, vw, vb, **geometry)
    np.testing.assert_allclose(F.conv1d(x, w, b, **geometry)._data, expected, rtol=1e-10, atol=1e-12)
    inputs = (x, w) + ((b,) if with_bias else ())
    assert fn.gradcheck(lambda x, w, *b: F.conv1d(x, w, b[0] if b else None, **geometry), *inputs)


@given(kw=st.integers(1, 4), dilation=st.integers(1, 2), length=st.integers(1, 6), seed=seeds)
def test_conv1d_same_and_valid_padding(kw, dilation, length, seed):
    x, vx = leaf((1, 2, length), seed)
    w, vw = leaf((3, 2, kw), seed + 1)
    out = F.conv1d(x, w, padding="same", dilation=dilation)
    assert out.shape == (1, 3, length)
    total = dilation * (kw - 1)  # an odd total puts the extra zero on the right
    padded = np.pad(vx, ((0, 0), (0, 0), (total // 2, total - total // 2)))
    np.testing.assert_allclose(out._data, _conv1d_reference(padded, vw, None, 1, 0, dilation, 1), rtol=1e-10,
                               atol=1e-12)
    assert fn.gradcheck(lambda x, w: F.conv1d(x, w, padding="same", dilation=dilation), x, w)
    if length >= dilation * (kw - 1) + 1:
        np.testing.assert_allclose(F.conv1d(x, w, padding="valid", dilation=dilation)._data,
                                   _conv1d_reference(vx, vw, None, 1, 0, dilation, 1), rtol=1e-10, atol=1e-12)


def test_conv1d_module():
    fn.manual_seed(0)
    conv = nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2)
    assert list(conv.state_dict()) == ["weight", "bias"]
    assert conv.weight.shape == (6, 2, 3) and conv.bias.shape == (6,)
    assert (conv.kernel_size, conv.stride, conv.padding, conv.dilation) == ((3,), (2,), (1,), (1,))
    bound = 1 / math.sqrt(2 * 3)  # kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert np.abs(conv.weight._data).max() <= bound and np.abs(conv.bias._data).max() <= bound
    assert repr(conv) == "Conv1d(4, 6, kernel_size=(3,), stride=(2,), padding=(1,), groups=2)"
    assert conv(fn.randn(5, 4, 9)).shape == (5, 6, 5)
    assert conv(fn.randn(4, 9)).shape == (6, 5)  # unbatched
    same = nn.Conv1d(2, 3, 4, padding="same", bias=False, dtype=fn.float64)
    assert list(same.state_dict()) == ["weight"] and same.weight.dtype == np.float64
    assert same(fn.randn(1, 2, 7, dtype=fn.float64)).shape == (1, 3, 7)
    assert repr(same) == "Conv1d(2, 3, kernel_size=(4,), stride=(1,), padding='same', bias=False)"
    with pytest.raises(FreenetError, match="strided"):
        nn.Conv1d(2, 3, 3, stride=2, padding="same")
    with pytest.raises(FreenetError, match="groups"):
        nn.Conv1d(3, 4, 3, groups=2)
    with pytest.raises(FreenetError, match="padding_mode"):
        nn.Conv1d(2, 2, 3, padding_mode="reflect")
    with pytest.raises(FreenetError, match="3-d"):
        conv(fn.randn(1, 4, 2, 9))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_conv1d_matches_torch(dtype):
    torch = _torch()
    rng = np.random.default_rng(4)
    v = rng.standard_normal((2, 4, 11)).astype(dtype)
    rtol, atol = (1e-10, 1e-12) if dtype == "float64" else (1e-4, 1e-5)
    for stride, padding, dilation, groups, kw in [(1, 0, 1, 1, 3), (2, 2, 2, 2, 3), (1, "same", 2, 1, 4),
                                                  (3, 1, 1, 4, 2), (1, "valid", 1, 2, 5)]:
        w = rng.standard_normal((8, 4 // groups, kw)).astype(dtype)
        b = rng.standard_normal(8).astype(dtype)
        x, fw, fb = (fn.tensor(a, requires_grad=True) for a in (v, w, b))
        tx, tw, tb = (_t(torch, a) for a in (v, w, b))
        out = F.conv1d(x, fw, fb, stride, padding, dilation, groups)
        ref = torch.nn.functional.conv1d(tx, tw, tb, stride, padding, dilation, groups)
        g = rng.standard_normal(ref.shape).astype(dtype)
        out.backward(g)
        ref.backward(torch.from_numpy(g))
        _close(out, ref, rtol, atol)
        for ours, theirs in zip(_grads(x, fw, fb), (tx, tw, tb)):
            _close(ours, theirs.grad, rtol, atol)


# -- activations -----------------------------------------------------------------------------------

@given(shape=st.lists(st.integers(1, 4), max_size=3), seed=seeds, layout=layouts)
def test_silu_matches_numpy_and_gradchecks(shape, seed, layout):
    x, vx = leaf(tuple(shape), seed, layout=layout)
    np.testing.assert_allclose(F.silu(x)._data, vx / (1 + np.exp(-vx)), rtol=1e-14, atol=1e-15)
    assert fn.gradcheck(F.silu, x)


def test_silu_module_and_in_place():
    x = fn.tensor([-1.0, 0.0, 2.0])
    expected = x._data / (1 + np.exp(-x._data))
    np.testing.assert_allclose(nn.SiLU()(x)._data, expected, rtol=1e-6)
    assert x.tolist() == [-1.0, 0.0, 2.0]
    y = nn.SiLU(inplace=True)(x)
    assert y is x and x.version == 1
    np.testing.assert_allclose(x._data, expected, rtol=1e-6)
    assert repr(nn.SiLU(inplace=True)) == "SiLU(inplace=True)"
    leaf_ = fn.tensor([1.0, -2.0], dtype=fn.float64, requires_grad=True)
    h = leaf_ * 1.0
    F.silu(h, inplace=True).sum().backward()  # the gradient goes through the in-place op
    s = 1 / (1 + np.exp(-leaf_._data))
    np.testing.assert_allclose(leaf_.grad._data, s * (1 + leaf_._data * (1 - s)), rtol=1e-12)


def test_softmax_modules():
    x = fn.randn(2, 3, 4)
    assert np.array_equal(nn.Softmax(dim=1)(x)._data, F.softmax(x, 1)._data)
    assert np.array_equal(nn.LogSoftmax(-1)(x)._data, F.log_softmax(x, -1)._data)
    np.testing.assert_allclose(nn.Softmax(2)(x)._data.sum(axis=2), 1, rtol=1e-6)
    assert repr(nn.Softmax(dim=1)) == "Softmax(dim=1)" and repr(nn.LogSoftmax(0)) == "LogSoftmax(dim=0)"
    with pytest.warns(UserWarning, match="Implicit dimension"):  # PyTorch's legacy choice: dim 0 for 3-d
        implicit = nn.Softmax()(x)
    np.testing.assert_allclose(implicit._data.sum(axis=0), 1, rtol=1e-6)
    with pytest.warns(UserWarning, match="Implicit dimension"):  # and dim 1 for 2-d
        np.testing.assert_allclose(np.exp(nn.LogSoftmax()(x[0])._data).sum(axis=1), 1, rtol=1e-6)


def test_activation_modules_match_torch():
    torch = _torch()
    v = np.random.default_rng(5).standard_normal((3, 4, 5))
    for ours, theirs in [(nn.SiLU(), torch.nn.SiLU()), (nn.Softmax(1), torch.nn.Softmax(1)),
                         (nn.LogSoftmax(-1), torch.nn.LogSoftmax(-1))]:
        x, tx = fn.tensor(v, requires_grad=True), _t(torch, v)
        g = np.cos(v)
        ours(x).backward(g)
        theirs(tx).backward(torch.from_numpy(g))
        _close(ours(x), theirs(tx), 1e-12, 1e-14)
        _close(x.grad, tx.grad, 1e-12, 1e-14)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dims in [(5,), (3, 5), (2, 3, 5), (2, 3, 4, 5)]:
            x = np.random.default_rng(6).standard_normal(dims)
            _close(nn.Softmax()(fn.tensor(x)), torch.nn.Softmax()(torch.tensor(x)), 1e-12)


# -- losses ----------------------------------------------------------------------------------------

@given(shape=st.lists(st.integers(1, 3), max_size=3), reduction=st.sampled_from(["mean", "sum", "none"]),
       seed=seeds, target_grad=st.booleans())
def test_l1_loss_matches_numpy_and_gradchecks(shape, reduction, seed, target_grad):
    shape = tuple(shape)
    x, vx = leaf(shape, seed)
    vy = vx + np.where(values(shape, seed + 1) >= 0, 0.3, -0.3) * np.abs(values(shape, seed + 2) + 2.5)
    y = fn.tensor(vy, requires_grad=target_grad)
    losses = np.abs(vx - vy)
    expected = {"none": losses, "sum": losses.sum(), "mean": losses.mean()}[reduction]
    np.testing.assert_allclose(F.l1_loss(x, y, reduction=reduction)._data, expected, rtol=1e-14)
    assert fn.gradcheck(lambda x, y: F.l1_loss(x, y, reduction=reduction), x, y)


def test_l1_loss_gradient_at_ties_and_module():
    x = fn.tensor([1.0, 2.0, 3.0], requires_grad=True)
    nn.L1Loss(reduction="sum")(x, fn.tensor([1.0, 0.0, 5.0])).backward()
    assert x.grad.tolist() == [0.0, 1.0, -1.0]  # sign(0) = 0, as in PyTorch
    assert nn.L1Loss()(x, fn.tensor([0.0, 0.0, 0.0])).item() == 2.0
    assert nn.L1Loss(reduce=False)(x, fn.zeros(3)).tolist() == [1.0, 2.0, 3.0]  # the legacy flags
    assert nn.L1Loss(size_average=False)(x, fn.zeros(3)).item() == 6.0
    assert list(nn.L1Loss().state_dict()) == []
    assert F.l1_loss(x, fn.zeros(3), reduce=False).tolist() == [1.0, 2.0, 3.0]
    assert F.l1_loss(x, fn.zeros(3), weight=fn.tensor([1.0, 0.0, 2.0]), reduction="sum").item() == 7.0
    assert F.l1_loss(x, fn.zeros(3), weight=fn.tensor([1.0, 0.0, 2.0])).item() == pytest.approx(7 / 3)  # / sum(w)
    with pytest.raises(FreenetError, match="weight"):
        F.l1_loss(x, fn.zeros(3), weight=fn.ones(2, 3))
    with pytest.raises(FreenetError, match="shape"):
        F.l1_loss(x, fn.zeros(2))
    with pytest.raises(FreenetError, match="reduction"):
        nn.L1Loss(reduction="max")


@given(shape=st.lists(st.integers(1, 3), max_size=3), reduction=st.sampled_from(["mean", "sum", "none"]),
       weighted=st.booleans(), seed=seeds)
def test_binary_cross_entropy_matches_numpy_and_gradchecks(shape, reduction, weighted, seed):
    shape = tuple(shape)
    rng = np.random.default_rng(seed)
    p = fn.tensor(rng.uniform(0.05, 0.95, shape), requires_grad=True)
    y = fn.tensor(rng.uniform(0, 1, shape), requires_grad=True)
    w = fn.tensor(rng.uniform(0.5, 2, shape[-1:]) if weighted else np.ones(shape[-1:]))
    losses = -w._data * (y._data * np.log(p._data) + (1 - y._data) * np.log(1 - p._data))
    expected = {"none": losses, "sum": losses.sum(), "mean": losses.mean()}[reduction]
    out = F.binary_cross_entropy(p, y, weight=w if weighted else None, reduction=reduction)
    np.testing.assert_allclose(out._data, expected, rtol=1e-12)
    assert fn.gradcheck(lambda p, y: F.binary_cross_entropy(p, y, w if weighted else None, reduction), p, y)


def test_binary_cross_entropy_edges_and_module():
    p = fn.tensor([0.0, 1.0, 0.0, 1.0, 0.5], requires_grad=True)
    y = fn.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    losses = F.binary_cross_entropy(p, y, reduction="none")
    np.testing.assert_allclose(losses._data, [0.0, 0.0, 100.0, 100.0, math.log(2)], rtol=1e-6)  # logs clamped at -100
    losses.sum().backward()
    assert np.all(np.isfinite(p.grad._data)) and p.grad._data[0] == 0 and p.grad._data[1] == 0
    with pytest.raises(FreenetError, match="between 0 and 1"):
        F.binary_cross_entropy(fn.tensor([1.5]), fn.tensor([1.0]))
    with pytest.raises(FreenetError, match="shape"):
        F.binary_cross_entropy(fn.tensor([0.5, 0.5]), fn.tensor([1.0]))
    with pytest.raises(FreenetError, match="weight"):
        F.binary_cross_entropy(fn.tensor([0.5, 0.5]), fn.tensor([1.0, 0.0]), weight=fn.ones(3))
    half = F.binary_cross_entropy(fn.tensor([0.5, 0.5]), fn.tensor([1.0, 0.0]), size_average=False)
    assert half.item() == pytest.approx(2 * math.log(2), rel=1e-6)
    weight = fn.tensor([1.0, 2.0])
    loss = nn.BCELoss(weight=weight)
    assert list(loss.state_dict()) == ["weight"] and list(nn.BCELoss().state_dict()) == []
    pair = fn.tensor([0.5, 0.25])
    np.testing.assert_allclose(loss(pair, fn.tensor([1.0, 0.0])).item(),
                               (math.log(2) + 2 * -math.log(0.75)) / 2, rtol=1e-6)
    assert nn.BCELoss(reduction="sum")(pair, fn.tensor([1.0, 0.0])).item() == pytest.approx(
        math.log(2) - math.log(0.75), rel=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_match_torch(reduction):
    torch = _torch()
    rng = np.random.default_rng(7)
    p, y, v = rng.uniform(0.01, 0.99, (4, 3)), rng.uniform(0, 1, (4, 3)), rng.standard_normal((4, 3))
    w = rng.uniform(0.5, 2, 3)
    full = np.broadcast_to(w, v.shape).copy()  # PyTorch's l1_loss wants the input's shape (freenet broadcasts)
    weighted_l1 = (lambda a, b: F.l1_loss(a, b, reduction=reduction, weight=fn.tensor(full)),
                   lambda a, b: torch.nn.functional.l1_loss(a, b, reduction=reduction, weight=torch.tensor(full)),
                   v, y)
    for ours, theirs, a, b in [weighted_l1,
                               (nn.L1Loss(reduction=reduction), torch.nn.L1Loss(reduction=reduction), v, y),
                               (nn.BCELoss(reduction=reduction), torch.nn.BCELoss(reduction=reduction), p, y),
                               (nn.BCELoss(fn.tensor(w), reduction=reduction),
                                torch.nn.BCELoss(torch.tensor(w), reduction=reduction), p, y)]:
        fa, fb, ta, tb = fn.tensor(a, requires_grad=True), fn.tensor(b, requires_grad=True), _t(torch, a), _t(torch, b)
        out, ref = ours(fa, fb), theirs(ta, tb)
        g = np.cos(np.arange(ref.numel())).reshape(ref.shape)
        out.backward(g)
        ref.backward(torch.from_numpy(g))
        _close(out, ref, 1e-12)
        _close(fa.grad, ta.grad, 1e-10, 1e-14)
        _close(fb.grad, tb.grad, 1e-10, 1e-14)


# -- one_hot ---------------------------------------------------------------------------------------

@given(shape=st.lists(st.integers(0, 3), max_size=3), classes=st.integers(1, 5), seed=seeds)
def test_one_hot(shape, classes, seed):
    idx = np.random.default_rng(seed).integers(0, classes, size=tuple(shape))
    out = F.one_hot(fn.tensor(idx), classes)
    assert out.dtype == np.int64 and out.shape == tuple(shape) + (classes,)
    assert np.array_equal(out._data, (idx[..., None] == np.arange(classes)).astype(np.int64))
    if idx.size:
        assert F.one_hot(fn.tensor(idx)).shape == tuple(shape) + (int(idx.max()) + 1,)


def test_one_hot_errors_and_torch():
    assert F.one_hot(fn.tensor([2, 0])).tolist() == [[0, 0, 1], [1, 0, 0]]
    with pytest.raises(FreenetError, match="integer"):
        F.one_hot(fn.tensor([1.0]))
    with pytest.raises(FreenetError, match="smaller than num_classes"):
        F.one_hot(fn.tensor([3]), 3)
    with pytest.raises(FreenetError, match="non-negative"):
        F.one_hot(fn.tensor([-1]), 3)
    with pytest.raises(FreenetError, match="empty"):
        F.one_hot(fn.tensor(np.zeros(0, np.int64)))
    torch = _torch()
    idx = np.array([[0, 3], [2, 2]])
    assert np.array_equal(F.one_hot(fn.tensor(idx), 5)._data, torch.nn.functional.one_hot(torch.tensor(idx), 5))


# -- interpolate -----------------------------------------------------------------------------------

def _bilinear_reference(v, out_h, out_w, align_corners, scales=(None, None)):
    """Each output pixel the long way, in float64."""
    n, c, h, w = v.shape

    def source(dst, in_size, out_size, scale):
        if in_size == out_size:
            return float(dst)
        if align_corners:
            return dst * (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        ratio = 1 / scale if scale else in_size / out_size
        return max(ratio * (dst + 0.5) - 0.5, 0.0)

    out = np.zeros((n, c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            sy, sx = source(i, h, out_h, scales[0]), source(j, w, out_w, scales[1])
            y0, x0 = min(int(sy), h - 1), min(int(sx), w - 1)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            ly, lx = sy - y0, sx - x0
            out[:, :, i, j] = ((1 - ly) * ((1 - lx) * v[:, :, y0, x0] + lx * v[:, :, y0, x1])
                               + ly * ((1 - lx) * v[:, :, y1, x0] + lx * v[:, :, y1, x1]))
    return out


@st.composite
def resize_case(draw):
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    if draw(st.booleans()):
        return (h, w), dict(size=(draw(st.integers(1, 7)), draw(st.integers(1, 7))))
    scale = draw(st.sampled_from([0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0]))
    assume(math.floor(h * scale) >= 1 and math.floor(w * scale) >= 1)
    return (h, w), dict(scale_factor=scale)


@given(case=resize_case(), align_corners=st.booleans(), seed=seeds, layout=layouts)
def test_bilinear_interpolate_matches_numpy_and_gradchecks(case, align_corners, seed, layout):
    (h, w), size = case
    x, vx = leaf((2, 1, h, w), seed, layout=layout)
    out = F.interpolate(x, mode="bilinear", align_corners=align_corners, **size)
    scale = size.get("scale_factor")
    expected = _bilinear_reference(vx, *out.shape[2:], align_corners, (scale, scale))
    np.testing.assert_allclose(out._data, expected, rtol=1e-12, atol=1e-14)
    assert fn.gradcheck(lambda x: F.interpolate(x, mode="bilinear", align_corners=align_corners, **size), x)


@given(case=resize_case(), exact=st.booleans(), seed=seeds, layout=layouts)
def test_nearest_interpolate_picks_input_pixels_and_gradchecks(case, exact, seed, layout):
    (h, w), size = case
    mode = "nearest-exact" if exact else "nearest"
    # each input pixel holds 100 * row + column: the output says which pixels it took
    where = fn.tensor(np.broadcast_to(100.0 * np.arange(h)[:, None] + np.arange(w), (1, 2, h, w)))
    out = F.interpolate(where, mode=mode, **size)._data
    out_h, out_w = out.shape[2:]
    if "size" in size:
        assert (out_h, out_w) == size["size"]
        scales = (h / out_h, w / out_w)
    else:
        assert (out_h, out_w) == (math.floor(h * size["scale_factor"]), math.floor(w * size["scale_factor"]))
        scales = (1 / size["scale_factor"],) * 2
    shift = 0.5 if exact else 0.0
    rows = [min(math.floor((i + shift) * scales[0]), h - 1) if out_h != h or exact else i for i in range(out_h)]
    cols = [min(math.floor((j + shift) * scales[1]), w - 1) if out_w != w or exact else j for j in range(out_w)]
    assert np.array_equal(out[0, 1], 100.0 * np.array(rows)[:, None] + np.array(cols))
    x, _ = leaf((1, 2, h, w), seed, layout=layout)
    assert fn.gradcheck(lambda x: F.interpolate(x, mode=mode, **size), x)


def test_interpolate_known_values_and_errors():
    x = fn.tensor(np.arange(6.0).reshape(1, 1, 2, 3))
    assert F.interpolate(x, scale_factor=2)._data[0, 0].tolist() == [[0, 0, 1, 1, 2, 2]] * 2 + [[3, 3, 4, 4, 5, 5]] * 2
    assert F.interpolate(x, size=(1, 5))._data[0, 0].tolist() == [[0, 0, 1, 1, 2]]
    assert F.interpolate(x, size=(1, 5), mode="nearest-exact")._data[0, 0].tolist() == [[3, 3, 4, 5, 5]]
    np.testing.assert_allclose(F.interpolate(x, size=(3, 5), mode="bilinear", align_corners=True)._data[0, 0],
                               [[0, 0.5, 1, 1.5, 2], [1.5, 2, 2.5, 3, 3.5], [3, 3.5, 4, 4.5, 5]])
    np.testing.assert_allclose(F.interpolate(x, scale_factor=2, mode="bilinear")._data[0, 0, 0],
                               [0, 0.25, 0.75, 1.25, 1.75, 2])
    assert F.interpolate(x, scale_factor=2).dtype == np.float64
    assert F.interpolate(fn.zeros(1, 1, 2, 2), scale_factor=1.5, mode="bilinear").dtype == np.float32
    with pytest.raises(FreenetError, match="exactly one"):
        F.interpolate(x)
    with pytest.raises(FreenetError, match="exactly one"):
        F.interpolate(x, size=2, scale_factor=2)
    with pytest.raises(FreenetError, match="align_corners"):
        F.interpolate(x, scale_factor=2, align_corners=True)
    with pytest.raises(FreenetError, match="mode"):
        F.interpolate(x, scale_factor=2, mode="bicubic")
    with pytest.raises(FreenetError, match="4-d"):
        F.interpolate(fn.zeros(1, 2, 3), scale_factor=2)
    with pytest.raises(FreenetError, match="positive"):
        F.interpolate(x, scale_factor=0.1)
    pixels = fn.tensor(np.arange(4, dtype=np.uint8).reshape(1, 1, 2, 2))  # nearest takes integer images
    assert F.interpolate(pixels, scale_factor=2)._data[0, 0, :, 1].tolist() == [0, 0, 2, 2]
    with pytest.raises(FreenetError, match="float"):
        F.interpolate(pixels, scale_factor=2, mode="bilinear")


def test_interpolate_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(8)
    count = 0
    for h, w in [(1, 1), (3, 4), (5, 7), (8, 3)]:
        for dtype in ("float64", "float32"):
            v = rng.standard_normal((2, 3, h, w)).astype(dtype)
            sizes = [dict(size=s) for s in (1, 2, 5, 6, 9, (4, 11))]
            sizes += [dict(scale_factor=s, recompute_scale_factor=r)
                      for s in (0.5, 0.7, 1.3, 1.5, 2, 2.5, 3, (1.7, 0.6)) for r in (None, True)]
            for size in sizes:
                for mode, align in [("nearest", None), ("nearest-exact", None), ("bilinear", False),
                                    ("bilinear", True)]:
                    options = dict(size, mode=mode) if align is None else dict(size, mode=mode, align_corners=align)
                    tx = _t(torch, v)
                    try:
                        ref = torch.nn.functional.interpolate(tx, **options)
                    except (RuntimeError, ValueError):
                        with pytest.raises(FreenetError):
                            F.interpolate(fn.tensor(v), **options)
                        continue
                    x = fn.tensor(v, requires_grad=True)
                    out = F.interpolate(x, **options)
                    assert out.shape == tuple(ref.shape), options
                    if mode != "bilinear":  # the same pixels, bit for bit
                        assert np.array_equal(out._data, ref.detach().numpy()), options
                    rtol = 1e-12 if dtype == "float64" else 1e-5
                    _close(out, ref, rtol, rtol)
                    g = rng.standard_normal(ref.shape).astype(dtype)
                    out.backward(g)
                    ref.backward(torch.from_numpy(g))
                    _close(x.grad, tx.grad, rtol, rtol)
                    count += 1
    assert count > 600


# -- ModuleDict ------------------------------------------------------------------------------------

def test_module_dict_behaviour():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    d = nn.ModuleDict({"fc": a, "act": b})
    assert len(d) == 2 and list(d) == ["fc", "act"] and "fc" in d and "out" not in d
    assert d["fc"] is a and list(d.keys()) == ["fc", "act"] and list(d.values()) == [a, b]
    d["out"] = c
    assert list(d.items()) == [("fc", a), ("act", b), ("out", c)]
    assert list(d.state_dict()) == ["fc.weight", "fc.bias", "out.weight", "out.bias"]
    assert [name for name, _ in d.named_parameters()] == ["fc.weight", "fc.bias", "out.weight", "out.bias"]
    assert d.pop("act") is b and list(d) == ["fc", "out"]
    del d["fc"]
    assert list(d) == ["out"]
    d.update([("x", a), ("y", b)])
    d.update(nn.ModuleDict({"z": nn.Tanh()}))
    assert list(d) == ["out", "x", "y", "z"]
    d.clear()
    assert len(d) == 0

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = nn.ModuleDict({"policy": nn.Linear(4, 2), "value": nn.Linear(4, 1)})

        def forward(self, x):
            return {k: head(x) for k, head in self.heads.items()}

    net = Net()
    assert list(net.state_dict()) == ["heads.policy.weight", "heads.policy.bias", "heads.value.weight",
                                      "heads.value.bias"]
    assert net(fn.zeros(3, 4))["value"].shape == (3, 1)
    net.eval()
    assert not net.heads["policy"].training
    assert "(policy): Linear(in_features=4, out_features=2, bias=True)" in repr(net)
    with pytest.raises(FreenetError, match="not a Module"):
        d["bad"] = 3
    with pytest.raises(FreenetError, match="pair"):
        d.update([("a",)])
    with pytest.raises(FreenetError, match="'.'"):
        d["a.b"] = nn.ReLU()
    with pytest.raises(KeyError):
        d["missing"]
    with pytest.raises(FreenetError, match="no forward"):
        d(fn.zeros(1))


def test_module_dict_state_dict_loads_into_torch():
    torch = _torch()
    ours = nn.ModuleDict({"emb": nn.Embedding(5, 3), "norm": nn.LayerNorm(3), "conv": nn.Conv1d(3, 2, 2),
                          "group": nn.GroupNorm(1, 2)})
    theirs = torch.nn.ModuleDict({"emb": torch.nn.Embedding(5, 3), "norm": torch.nn.LayerNorm(3),
                                  "conv": torch.nn.Conv1d(3, 2, 2), "group": torch.nn.GroupNorm(1, 2)})
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in ours.state_dict().items()})
    ours.load_state_dict({k: v.detach() for k, v in theirs.state_dict().items()})


# -- a PyTorch script with its imports renamed -----------------------------------------------------

def _script(torch, nn, F, weights=None):
    """A small sequence model in PyTorch's API: run under freenet (renamed imports) and under torch."""

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(11, 8, padding_idx=0)
            self.norm = nn.LayerNorm(8)
            self.conv = nn.Conv1d(8, 6, 3, padding=1)
            self.group = nn.GroupNorm(3, 6)
            self.act = nn.SiLU()
            self.heads = nn.ModuleDict({"tag": nn.Linear(6, 4), "score": nn.Linear(6, 1)})
            self.log_softmax = nn.LogSoftmax(dim=-1)

        def forward(self, tokens):
            h = self.norm(self.emb(tokens))               # (N, L, 8)
            h = self.act(self.group(self.conv(h.transpose(1, 2))))  # (N, 6, L)
            image = F.interpolate(h.unsqueeze(1), scale_factor=2, mode="bilinear")  # (N, 1, 12, 2L)
            h = h.transpose(1, 2)
            tags = self.log_softmax(self.heads["tag"](h))
            score = torch.sigmoid(self.heads["score"](h).mean(1))
            return tags, score, image.mean()

    model = Model()
    if weights is not None:
        model.load_state_dict(weights)
    tokens = torch.tensor([[1, 5, 0, 3, 10], [2, 2, 7, 0, 0]])
    labels = torch.tensor([[0, 1, 2, 3, 0], [1, 1, 2, 3, 3]])
    tags, score, extra = model(tokens)
    loss = (F.nll_loss(tags.reshape(-1, 4), labels.reshape(-1))
            + nn.BCELoss()(score.reshape(-1), torch.tensor([1.0, 0.0]))
            + nn.L1Loss()(score.reshape(-1), torch.tensor([0.5, 0.5]))
            + extra
            + F.binary_cross_entropy(score.reshape(-1), torch.tensor([0.25, 0.75]))
            + (F.one_hot(labels, 4) * tags).sum() * -0.01)
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return model, loss, grads


def test_renamed_pytorch_script_runs():
    model, loss, grads = _script(fn, nn, F)
    assert np.isfinite(loss.item())
    assert set(grads) == {name for name, _ in model.named_parameters()}
    assert np.array_equal(grads["emb.weight"]._data[0], np.zeros(8))  # the padding row
    assert list(model.state_dict())[:3] == ["emb.weight", "norm.weight", "norm.bias"]


def test_renamed_pytorch_script_matches_torch():
    torch = _torch()
    fn.manual_seed(0)
    model, loss, grads = _script(fn, nn, F)
    weights = {k: torch.from_numpy(v.numpy()) for k, v in model.state_dict().items()}
    _, ref_loss, ref_grads = _script(torch, torch.nn, torch.nn.functional, weights)
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    for name, g in grads.items():
        _close(g, ref_grads[name], 1e-4, 1e-6)


@pytest.mark.parametrize("rows, uses", [(50, 1), (7, 40), (3, 2000), (2000, 3)])
def test_embedding_gradient_sums_are_np_add_at(rows, uses):
    """Rows used up to 16 times get np.add.at's bits; rows used more often its sum to rounding."""
    from freenet.ops.embedding import _sum_rows
    rng = np.random.default_rng(rows)
    flat = rng.integers(0, rows, size=rows * uses)
    g = rng.standard_normal((flat.size, 3)).astype(np.float32)
    expected = np.zeros((rows + 2, 3), np.float32)
    np.add.at(expected, flat, g)
    ours = _sum_rows(flat, g, rows + 2)
    counts = np.bincount(flat, minlength=rows + 2)
    short = counts <= 16
    assert np.array_equal(ours[short], expected[short])
    np.testing.assert_allclose(ours[~short], expected[~short], rtol=1e-4, atol=1e-4)
    assert _sum_rows(flat[:0], g[:0], 4).tolist() == [[0.0] * 3] * 4
