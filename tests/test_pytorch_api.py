"""PyTorch's API where PyTorch code expects it: results that used to differ silently, the torch.* functions and
Tensor methods real scripts use, devices, generators and autograd.grad. Compared with PyTorch where installed."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import freenet as fn
from freenet import FreenetError
from freenet.nn import functional as F


def f64(values, grad=True):
    return fn.tensor(np.asarray(values, dtype=np.float64), requires_grad=grad)


# -- results that used to differ silently ------------------------------------------------------------
def test_max_over_a_dim_gives_values_and_indices():
    out = fn.tensor([[0.1, 0.7, 0.2], [0.9, 0.05, 0.05]])
    values, indices = out.max(dim=1)
    np.testing.assert_allclose(values.numpy(), [0.7, 0.9])
    np.testing.assert_array_equal(indices.numpy(), [1, 0])
    labels = fn.tensor([1, 0])
    assert (out.max(1)[1] == labels).sum().item() == 2  # accuracy, the PyTorch way
    assert fn.max(out).item() == pytest.approx(0.9) and out.min(0).indices.tolist() == [0, 1, 1]
    np.testing.assert_array_equal(fn.max(out, fn.zeros(2, 3) + 0.5).numpy(), np.maximum(out.numpy(), 0.5))
    with pytest.raises(FreenetError, match="amax"):
        out.max(dim=(0, 1))


def test_max_over_a_dim_sends_the_gradient_to_the_index_found():
    x = f64([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]])
    x.max(dim=1).values.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0], [1, 0, 0]])  # first maximum on ties


def test_integer_division_and_promotion_follow_pytorch():
    i = fn.tensor([1, 2, 3])
    assert (i / 2).dtype == np.float32 and (i / i).dtype == np.float32
    assert (i * 2.5).dtype == np.float32
    assert (i * fn.tensor([1.0, 2.0, 3.0])).dtype == np.float32  # NumPy would say float64
    assert (i * 2).dtype == np.int64 and (i // 2).tolist() == [0, 1, 1] and (i % 2).tolist() == [1, 0, 1]
    assert (fn.tensor([-3]) // 2).item() == -2  # rounds towards minus infinity, as Python and PyTorch


def test_cross_entropy_gives_a_probability_target_its_gradient():
    rng = np.random.default_rng(0)
    logits, target = f64(rng.standard_normal((3, 4))), rng.random((3, 4))
    target = f64(target / target.sum(1, keepdims=True))
    assert fn.gradcheck(lambda t: F.cross_entropy(logits.detach(), t, label_smoothing=0.2), target)
    F.cross_entropy(logits, target).backward()
    np.testing.assert_allclose(target.grad.numpy(), -F.log_softmax(logits, 1).numpy() / 3, rtol=1e-12)


# -- Tensor methods and functions -------------------------------------------------------------------
shapes = st.lists(st.integers(1, 4), min_size=2, max_size=3).map(tuple)

GRADCHECKED = [
    ("clone", lambda x: x.clone() * x),
    ("square", lambda x: x.square()),
    ("norm", lambda x: x.norm()),
    ("norm_dim", lambda x: fn.norm(x, dim=0)),
    ("norm_1", lambda x: x.norm(p=1, dim=-1)),
    ("std", lambda x: fn.stack([x, x * 2]).std(0)),
    ("max_dim", lambda x: x.max(-1).values),
    ("sort", lambda x: x.sort(dim=0, descending=True).values * fn.arange(x.numel()).reshape(x.shape)),
    ("topk", lambda x: x.topk(1, dim=-1).values),
    ("repeat", lambda x: x.repeat(2, *([1] * (x.ndim - 1))) * 3),
    ("chunk", lambda x: x.chunk(2, dim=-1)[0] * 2),
    ("split", lambda x: x.split(1, dim=0)[-1]),
    ("roll", lambda x: x.roll(1, 0) * fn.arange(x.numel()).reshape(x.shape)),
    ("roll_flat", lambda x: x.roll(2) * fn.arange(x.numel()).reshape(x.shape)),
    ("flip", lambda x: x.flip(0) * fn.arange(x.numel()).reshape(x.shape)),
    ("tril", lambda x: x.tril()),
    ("triu", lambda x: fn.triu(x, 1)),
    ("gather", lambda x: x.gather(-1, fn.zeros(x.shape[:-1] + (2,), dtype=fn.int64))),
    ("index_select", lambda x: x.index_select(0, fn.tensor([0, 0]))),
    ("masked_fill", lambda x: x.masked_fill(x > 0, 1.5) * x),
    ("where", lambda x: x.where(x > 0, x * 3)),
    ("einsum", lambda x: fn.einsum("ij->j", x.reshape(x.shape[0], -1))),
    ("einsum_pair", lambda x: fn.einsum("ij,kj->ik", x.reshape(x.shape[0], -1), x.reshape(x.shape[0], -1))),
    ("einsum_outer_sum", lambda x: fn.einsum("i,j", x.reshape(-1), x.reshape(-1)[:2])),
    ("bmm", lambda x: fn.bmm(x.reshape(1, x.shape[0], -1), x.reshape(1, x.shape[0], -1).transpose(1, 2))),
    ("attention", lambda x: F.scaled_dot_product_attention(x.reshape(1, x.shape[0], -1), x.reshape(1, x.shape[0], -1),
                                                           x.reshape(1, x.shape[0], -1) * 2, is_causal=True)),
]


@pytest.mark.parametrize("name,f", GRADCHECKED, ids=[g[0] for g in GRADCHECKED])
@settings(max_examples=15, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_new_ops_are_gradchecked(name, f, shape, seed):
    values = np.random.default_rng(seed).standard_normal(shape) + 0.1  # keeps ties (max, sort) away
    assert fn.gradcheck(f, f64(values))


def test_methods_give_numpys_values():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    x = fn.tensor(a)
    np.testing.assert_array_equal(x.t().numpy(), a.T)
    np.testing.assert_array_equal(x.view_as(fn.zeros(4, 3)).numpy(), a.reshape(4, 3))
    np.testing.assert_array_equal(x.repeat(2, 3).numpy(), np.tile(a, (2, 3)))
    np.testing.assert_array_equal(x.topk(2).values.numpy(), -np.sort(-a, axis=1)[:, :2])
    np.testing.assert_array_equal(x.argsort(dim=0).numpy(), np.argsort(a, axis=0, kind="stable"))
    np.testing.assert_array_equal(fn.roll(x, (1, -1), (0, 1)).numpy(), np.roll(a, (1, -1), (0, 1)))
    assert [p.shape for p in x.chunk(3, dim=1)] == [(3, 2), (3, 2)]  # as PyTorch: fewer chunks than asked
    assert [p.shape for p in fn.split(x, [1, 3], dim=1)] == [(3, 1), (3, 3)]
    assert x.nelement() == 12 and x.dim() == 2 and x.contiguous() is x and x.t().contiguous().numpy().flags.c_contiguous
    assert x.long().dtype == np.int64 and x.int().dtype == np.int32 and x.bool().dtype == np.bool_
    assert x.eq(x).all().item() and not (x > 100).any().item() and ((x > 0) & (x < 0)).sum().item() == 0
    assert (~(x > 0)).tolist() == (a <= 0).tolist()
    np.testing.assert_array_equal(fn.tensor([3, 1, 2]).sort(descending=True).indices.numpy(), [0, 2, 1])
    np.testing.assert_array_equal(fn.tensor([0, 255, 7], dtype=fn.uint8).sort(descending=True).values.numpy(),
                                  [255, 7, 0])


def test_small_conveniences():
    x = fn.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert x.new_zeros(3).dtype == np.float32 and x.new_ones((2, 1)).shape == (2, 1)
    assert x.new_full((2,), 7).tolist() == [7.0, 7.0] and x.new_tensor([1, 2]).dtype == np.float32
    assert x.type() == "float32" and x.type(fn.long).dtype == np.int64 and x.mT.tolist() == [[1, 3], [2, 4]]
    assert fn.equal(x, x.clone()) and not fn.equal(x, x[:1]) and fn.allclose(x, x + 1e-9) and fn.numel(x) == 4
    assert isinstance(fn.manual_seed(0), np.random.Generator)
    with fn.no_grad():
        w = fn.empty(4000).normal_(mean=1.0, std=0.5)
    assert abs(float(w.mean()) - 1.0) < 0.05 and abs(float(w.std()) - 0.5) < 0.05


def test_attention_masks():
    rng = np.random.default_rng(0)
    q, k, v = (fn.tensor(rng.standard_normal((2, 4, 3))) for _ in range(3))
    causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    masked = F.scaled_dot_product_attention(q, k, v, attn_mask=fn.tril(fn.ones(4, 4)).bool())
    np.testing.assert_array_equal(causal.numpy(), masked.numpy())
    np.testing.assert_allclose(causal.numpy()[:, 0], v.numpy()[:, 0], rtol=1e-6)  # the first query sees one key
    with pytest.raises(FreenetError, match="not both"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=fn.ones(4, 4).bool(), is_causal=True)


def test_factories_and_generators():
    g = fn.Generator().manual_seed(7)
    first = fn.randint(0, 10, (5,), generator=g).tolist()
    assert fn.randint(0, 10, (5,), generator=fn.Generator().manual_seed(7)).tolist() == first
    assert all(0 <= v < 10 for v in first) and fn.randint(3, (2, 2)).shape == (2, 2)
    assert sorted(fn.randperm(6).tolist()) == list(range(6))
    np.testing.assert_allclose(fn.linspace(0, 1, 5).numpy(), [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_array_equal(fn.eye(2, 3).numpy(), np.eye(2, 3))
    draws = fn.multinomial(fn.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]]), 3, replacement=True, generator=g)
    assert draws.shape == (2, 3) and draws[0].tolist() == [1, 1, 1] and set(draws[1].tolist()) <= {0, 2}
    assert sorted(fn.multinomial(fn.tensor([0.5, 0.0, 0.5]), 2).tolist()) == [0, 2]  # without replacement
    with pytest.raises(FreenetError, match="without replacement"):
        fn.multinomial(fn.tensor([1.0, 0.0]), 2)


def test_devices_are_the_cpu():
    assert fn.cuda.is_available() is False and fn.backends.mps.is_available() is False
    dev = fn.device("cuda" if fn.cuda.is_available() else "cpu")
    x = fn.ones(2, device=dev)
    assert x.to(dev) is x and x.cpu() is x and x.device == fn.device("cpu") and x.device == "cpu"
    assert x.to("cpu", fn.float64).dtype == np.float64 and x.to(dtype=fn.long).dtype == np.int64
    net = fn.nn.Linear(2, 1).to(dev)
    assert net.to(fn.float64).weight.dtype == np.float64
    for attempt in (lambda: fn.device("cuda"), lambda: x.to("cuda:0"), lambda: x.cuda(), lambda: net.cuda(),
                    lambda: fn.zeros(1, device="cuda")):
        with pytest.raises(FreenetError, match="CPU only"):
            attempt()


def test_grad_modes():
    x = f64([1.0, 2.0])
    with fn.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad
    with fn.inference_mode():
        assert not (x * 2).requires_grad

    @fn.inference_mode()
    def predict(v):
        return v * 2

    assert not predict(x).requires_grad
    fn.set_grad_enabled(False)
    try:
        assert not fn.is_grad_enabled()
    finally:
        fn.set_grad_enabled(True)
    assert fn.is_grad_enabled()


def test_autograd_grad_leaves_dot_grad_alone():
    x, w = f64([1.0, 2.0]), f64([3.0, -1.0])
    h = x * w
    y = (h * h).sum()
    gx, gh = fn.autograd.grad(y, [x, h], retain_graph=True)
    np.testing.assert_array_equal(gx.numpy(), 2 * (x * w * w).numpy())
    np.testing.assert_array_equal(gh.numpy(), 2 * h.numpy())
    assert x.grad is None and w.grad is None
    with pytest.raises(FreenetError, match="allow_unused"):
        fn.autograd.grad(y, [x, f64([0.0])], retain_graph=True)
    assert fn.autograd.grad(y, [f64([0.0])], allow_unused=True) == (None,)


def test_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 5))

    def program(lib, x):
        v, i = x.max(1)
        s = x.sort(0, descending=True).values
        k = lib.topk(x, 2, dim=1).values
        return [v, i, s, k, x.norm(), x.std(1), x.repeat(2, 1), lib.tril(x, -1), x.roll(2, 1),
                lib.einsum("ij,kj->ik", x, x), x.gather(1, lib.tensor([[0, 2]] * 4)), x.masked_fill(x > 0, 0.5),
                lib.tensor([1, 2, 3]) / 2, lib.tensor([-7, 7]) // 2, lib.tensor([-7, 7]) % 3,
                lib.nn.functional.scaled_dot_product_attention(x[None], x[None], x[None], is_causal=True)]

    ours = program(fn, fn.tensor(a))
    theirs = program(torch, torch.tensor(a))
    for k, (o, t) in enumerate(zip(ours, theirs)):
        t = t.numpy()
        assert o.numpy().dtype == t.dtype or (o.numpy().dtype, t.dtype) == (np.float32, np.float32), k
        np.testing.assert_allclose(o.numpy(), t, rtol=1e-12, err_msg=str(k))
