"""nn.MultiheadAttention: gradchecked in float64 over generated shapes, masks and options, checked on
shapes and masks without PyTorch, and held to torch.nn.MultiheadAttention's outputs and gradients
(with copied weights) where torch is installed.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import freenet as fn
from freenet import FreenetError, nn

from arrays import seeds, values


def _mha(e, heads, seed, **options):
    """A float64 module with random values in every parameter (biases too, unlike the initialisation)."""
    m = nn.MultiheadAttention(e, heads, dtype=fn.float64, **options)
    for i, (_, p) in enumerate(m.named_parameters()):
        p._data[...] = values(p.shape, seed + i)
    return m


def _inputs(m, n, length, source, seed, batched=True):
    """query, key and value leaves in the module's layout (a batch of n, or unbatched)."""
    def shape(seq, dim):
        if not batched:
            return (seq, dim)
        return (n, seq, dim) if m.batch_first else (seq, n, dim)
    dims = ((length, m.embed_dim), (source, m.kdim), (source, m.vdim))
    return [fn.tensor(values(shape(*d), seed + 100 + i), requires_grad=True) for i, d in enumerate(dims)]


def _padding(n, source, seed, batched=True):
    """A bool key_padding_mask that leaves key 0 of every batch item unmasked."""
    mask = np.random.default_rng(seed).random((n, source)) < 0.4
    mask[:, 0] = False
    return mask if batched else mask[0]


@st.composite
def attention_case(draw):
    return dict(n=draw(st.integers(1, 2)), length=draw(st.integers(1, 3)), source=draw(st.integers(1, 3)),
                heads=draw(st.integers(1, 2)), head_dim=draw(st.integers(1, 2)), batch_first=draw(st.booleans()),
                batched=draw(st.booleans()), other_dims=draw(st.booleans()), bias=draw(st.booleans()),
                bias_kv=draw(st.booleans()), zero_attn=draw(st.booleans()),
                mask=draw(st.sampled_from(["none", "padding", "bool", "float", "per-head"])),
                need_weights=draw(st.booleans()), average=draw(st.booleans()))


@given(case=attention_case(), seed=seeds)
def test_multihead_attention_gradchecks(case, seed):
    n, length, source, heads = case["n"], case["length"], case["source"], case["heads"]
    e = heads * case["head_dim"]
    dims = dict(kdim=e + 1, vdim=e + 2) if case["other_dims"] else {}
    m = _mha(e, heads, seed, bias=case["bias"], add_bias_kv=case["bias_kv"], add_zero_attn=case["zero_attn"],
             batch_first=case["batch_first"], **dims)
    q, k, v = _inputs(m, n, length, source, seed, case["batched"])
    masks = {}
    if case["mask"] == "padding":
        masks["key_padding_mask"] = _padding(n, source, seed, case["batched"])
    elif case["mask"] == "bool":
        masks["attn_mask"] = ~np.tril(np.ones((length, source), dtype=bool))  # causal: key 0 always seen
    elif case["mask"] == "float":
        masks["attn_mask"] = values((length, source), seed + 7)
    elif case["mask"] == "per-head":
        masks["attn_mask"] = values(((n if case["batched"] else 1) * heads, length, source), seed + 7)
    params = [p for p in m.parameters()]

    def f(q, k, v, *_):
        out, weights = m(q, k, v, need_weights=case["need_weights"], average_attn_weights=case["average"], **masks)
        return (out,) if weights is None else (out, weights)

    assert fn.gradcheck(f, q, k, v, *params)


# -- without PyTorch ---------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_first", [False, True])
def test_shapes(batch_first):
    m = nn.MultiheadAttention(6, 3, batch_first=batch_first, kdim=4, vdim=5)
    q = fn.randn(*((2, 3, 6) if batch_first else (3, 2, 6)))
    k = fn.randn(*((2, 5, 4) if batch_first else (5, 2, 4)))
    v = fn.randn(*((2, 5, 5) if batch_first else (5, 2, 5)))
    out, w = m(q, k, v)
    assert out.shape == q.shape and out.dtype == np.float32 and w.shape == (2, 3, 5)
    assert m(q, k, v, average_attn_weights=False)[1].shape == (2, 3, 3, 5)
    assert m(q, k, v, need_weights=False)[1] is None
    out, w = m(q[0] if batch_first else q[:, 0], fn.randn(5, 4), fn.randn(5, 5))  # unbatched
    assert out.shape == (3, 6) and w.shape == (3, 5)
    assert m(fn.randn(3, 6), fn.randn(5, 4), fn.randn(5, 5), average_attn_weights=False)[1].shape == (3, 3, 5)


def test_parameters_and_initialisation():
    m = nn.MultiheadAttention(8, 2)
    assert list(m.state_dict()) == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    assert m.in_proj_weight.shape == (24, 8) and m.in_proj_weight.dtype == np.float32
    bound = np.sqrt(6 / (8 + 24))
    assert np.abs(m.in_proj_weight._data).max() <= bound and np.abs(m.in_proj_weight._data).max() > bound / 2
    assert not m.in_proj_bias._data.any() and not m.out_proj.bias._data.any()
    assert isinstance(m.out_proj, nn.Linear)
    assert "NonDynamicallyQuantizableLinear(in_features=8, out_features=8, bias=True)" in repr(m)
    other = nn.MultiheadAttention(4, 1, bias=False, kdim=3, vdim=5, add_bias_kv=True)
    assert list(other.state_dict()) == ["q_proj_weight", "k_proj_weight", "v_proj_weight", "bias_k", "bias_v",
                                        "out_proj.weight"]
    assert other.k_proj_weight.shape == (4, 3) and other.v_proj_weight.shape == (4, 5)
    assert other.in_proj_weight is None and other.bias_k.shape == (1, 1, 4)
    with pytest.raises(FreenetError, match="divisible"):
        nn.MultiheadAttention(6, 4)


def test_masks_weights_and_causal():
    m = _mha(4, 2, 0)
    q, k, v = _inputs(m, 2, 3, 4, 1)
    out, w = m(q, k, v, average_attn_weights=False)
    np.testing.assert_allclose(w._data.sum(-1), 1.0, rtol=1e-12)
    padding = np.zeros((2, 4), dtype=bool)
    padding[0, 2] = padding[1, 0] = True
    out, w = m(q, k, v, key_padding_mask=padding)
    assert not w._data[0, :, 2].any() and not w._data[1, :, 0].any()
    np.testing.assert_allclose(w._data.sum(-1), 1.0, rtol=1e-12)
    float_out, float_w = m(q, k, v, key_padding_mask=np.where(padding, -np.inf, 0.0))  # the same as a float mask
    np.testing.assert_allclose(float_out._data, out._data, rtol=1e-12)
    np.testing.assert_allclose(float_w._data, w._data, rtol=1e-12)
    # causal: True above the diagonal masks the later keys out; outputs ignore later inputs
    causal = ~np.tril(np.ones((3, 4), dtype=bool))
    for need_weights in (True, False):
        out, w = m(q, k, v, attn_mask=causal, is_causal=True, need_weights=need_weights)
        later = [t.detach() * 1.0 for t in (k, v)]
        for t in later:
            t._data[2:] += 1.0  # keys 2 and 3 are seen by query 2 and no one, respectively
        out2, _ = m(q, *later, attn_mask=causal, is_causal=True)
        np.testing.assert_allclose(out2._data[:2], out._data[:2], rtol=1e-12)
        assert not np.allclose(out2._data[2], out._data[2])
    assert not np.triu(m(q, k, v, attn_mask=causal)[1]._data, 1).any()
    with pytest.raises(FreenetError, match="is_causal"):
        m(q, k, v, is_causal=True)


def test_fully_masked_query_and_errors():
    m = _mha(4, 2, 0)
    q, k, v = _inputs(m, 1, 2, 3, 1)
    mask = np.zeros((2, 3), dtype=bool)
    mask[1] = True  # query 1 sees nothing
    out, w = m(q, k, v, attn_mask=mask)
    assert np.isnan(w._data[0, 1]).all() and not np.isnan(w._data[0, 0]).any()
    out, _ = m(q, k, v, attn_mask=mask, need_weights=False)  # zero attention: out_proj's bias
    np.testing.assert_allclose(out._data[1, 0], m.out_proj.bias._data, rtol=1e-12)
    with pytest.raises(FreenetError, match="attn_mask"):
        m(q, k, v, attn_mask=np.zeros((3, 2), dtype=bool))
    with pytest.raises(FreenetError, match="key_padding_mask"):
        m(q, k, v, key_padding_mask=np.zeros((3, 1), dtype=bool))
    with pytest.raises(FreenetError, match="bool or float"):
        m(q, k, v, attn_mask=np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(FreenetError, match="3-d"):
        m(q, k[0], v)


def test_dropout_only_in_training():
    m = _mha(4, 2, 0, dropout=0.5)
    q, k, v = _inputs(m, 2, 3, 4, 1)
    fn.manual_seed(0)
    _, w = m(q, k, v, average_attn_weights=False)
    assert (w._data == 0).any()
    m.eval()
    np.testing.assert_allclose(m(q, k, v, average_attn_weights=False)[1]._data.sum(-1), 1.0, rtol=1e-12)


# -- with PyTorch ------------------------------------------------------------------------------------

CASES = [dict(), dict(batch_first=True), dict(need_weights=False), dict(average_attn_weights=False),
         dict(unbatched=True), dict(unbatched=True, average_attn_weights=False, mask="per-head"),
         dict(kdim=3, vdim=5), dict(kdim=3, vdim=5, batch_first=True, bias=False), dict(mask="padding"),
         dict(mask="padding", need_weights=False), dict(mask="bool"), dict(mask="float"),
         dict(mask="per-head", batch_first=True), dict(mask="both"), dict(mask="float-both"),
         dict(mask="causal"), dict(mask="causal", need_weights=False), dict(add_bias_kv=True, mask="both"),
         dict(add_zero_attn=True, mask="padding"), dict(add_bias_kv=True, add_zero_attn=True, unbatched=True)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_matches_torch(case):
    torch = pytest.importorskip("torch")
    case = dict(case)
    n, length, source, e, heads = 2, 3, 4, 6, 2
    unbatched, kind = case.pop("unbatched", False), case.pop("mask", "none")
    call = {key: case.pop(key) for key in ("need_weights", "average_attn_weights") if key in case}
    m = _mha(e, heads, 3, **case)
    theirs = torch.nn.MultiheadAttention(e, heads, dtype=torch.float64, **case)
    theirs.load_state_dict({k: torch.from_numpy(t.numpy().copy()) for k, t in m.state_dict().items()})
    q, k, v = _inputs(m, n, length, source, 5, batched=not unbatched)
    tq, tk, tv = (torch.tensor(t.numpy(), requires_grad=True) for t in (q, k, v))
    rows = 1 if unbatched else n
    rng = np.random.default_rng(9)
    padding = _padding(n, source, 11, batched=not unbatched)
    masks = {}
    if kind in ("padding", "both"):
        masks["key_padding_mask"] = padding
    if kind in ("bool", "both"):
        masks["attn_mask"] = rng.random((length, source)) < 0.3
        masks["attn_mask"][:, 0] = False
    if kind == "float":
        masks["attn_mask"] = rng.standard_normal((length, source))
    if kind == "float-both":
        masks["attn_mask"] = rng.standard_normal((length, source))
        masks["key_padding_mask"] = np.where(padding, -np.inf, rng.standard_normal(padding.shape))
    if kind == "per-head":
        masks["attn_mask"] = rng.standard_normal((rows * heads, length, source))
    if kind == "causal":
        masks["attn_mask"] = ~np.tril(np.ones((length, source), dtype=bool))
        call["is_causal"] = True
    out, w = m(q, k, v, **masks, **call)
    tout, tw = theirs(tq, tk, tv, **{key: torch.from_numpy(a) for key, a in masks.items()}, **call)
    np.testing.assert_allclose(out._data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert (w is None) == (tw is None)
    g = rng.standard_normal(out.shape)
    loss, tloss = (out * fn.tensor(g)).sum(), (tout * torch.from_numpy(g)).sum()
    if w is not None:
        np.testing.assert_allclose(w._data, tw.detach().numpy(), rtol=1e-10, atol=1e-12)
        gw = rng.standard_normal(w.shape)
        loss, tloss = loss + (w * fn.tensor(gw)).sum(), tloss + (tw * torch.from_numpy(gw)).sum()
    loss.backward()
    tloss.backward()
    for ours, t in zip((q, k, v), (tq, tk, tv)):
        np.testing.assert_allclose(ours.grad._data, t.grad.numpy(), rtol=1e-10, atol=1e-12)
    theirs_params = dict(theirs.named_parameters())
    assert [name for name, _ in m.named_parameters()] == list(theirs_params)
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.grad._data, theirs_params[name].grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)


def test_state_dict_loads_from_torch():
    torch = pytest.importorskip("torch")
    theirs = torch.nn.MultiheadAttention(6, 3, kdim=2, vdim=4, add_bias_kv=True)
    m = nn.MultiheadAttention(6, 3, kdim=2, vdim=4, add_bias_kv=True)
    m.load_state_dict(theirs.state_dict())
    for name, t in theirs.state_dict().items():
        assert np.array_equal(m.state_dict()[name].numpy(), t.numpy())
    q = np.random.default_rng(0).standard_normal((3, 2, 6)).astype(np.float32)
    k = np.random.default_rng(1).standard_normal((5, 2, 2)).astype(np.float32)
    val = np.random.default_rng(2).standard_normal((5, 2, 4)).astype(np.float32)
    out, w = m(fn.tensor(q), fn.tensor(k), fn.tensor(val))
    tout, tw = theirs(*(torch.from_numpy(a) for a in (q, k, val)))
    np.testing.assert_allclose(out._data, tout.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(w._data, tw.detach().numpy(), rtol=1e-4, atol=1e-5)
