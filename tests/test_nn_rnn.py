"""Recurrent modules (RNN, LSTM, GRU) and their cells: gradchecked in float64 over generated sizes, checked
without torch for shapes, states and the unbatched and batch_first forms, and compared with PyTorch
(outputs, final states, every gradient; state_dicts both ways) where torch is installed.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import freenet as fn
from freenet import FreenetError, nn

from arrays import seeds

MODULES = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
CELLS = {"RNN": nn.RNNCell, "LSTM": nn.LSTMCell, "GRU": nn.GRUCell}
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}


def _torch():
    return pytest.importorskip("torch")


def _state(kind, shape, rng, grad=True):
    """A random hx for ``kind`` (a tensor, or (h, c) for LSTM) of ``shape``."""
    make = [fn.tensor(rng.standard_normal(shape), requires_grad=grad) for _ in range(2 if kind == "LSTM" else 1)]
    return tuple(make) if kind == "LSTM" else make[0]


def _flat(result):
    """(output, h_n) or (output, (h_n, c_n)) as a flat tuple of tensors."""
    output, state = result
    return (output,) + (tuple(state) if isinstance(state, tuple) else (state,))


def _hx(kind, parts):
    return tuple(parts) if kind == "LSTM" else parts[0]


# -- gradients ---------------------------------------------------------------------------------------

@st.composite
def rnn_case(draw):
    return dict(kind=draw(st.sampled_from(sorted(MODULES))), layers=draw(st.integers(1, 2)),
                bidirectional=draw(st.booleans()), batch_first=draw(st.booleans()), bias=draw(st.booleans()),
                length=draw(st.integers(1, 4)), batch=draw(st.integers(1, 2)), input_size=draw(st.integers(1, 3)),
                hidden=draw(st.integers(1, 3)), with_hx=draw(st.booleans()), unbatched=draw(st.booleans()))


@given(case=rnn_case(), seed=seeds)
def test_modules_gradcheck(case, seed):
    kind, rng = case["kind"], np.random.default_rng(seed)
    fn.manual_seed(seed % 1000)
    m = MODULES[kind](case["input_size"], case["hidden"], case["layers"], bias=case["bias"],
                      batch_first=case["batch_first"], bidirectional=case["bidirectional"], dtype=fn.float64)
    shape = (case["length"], case["batch"])[::-1 if case["batch_first"] else 1]
    shape = (case["length"],) if case["unbatched"] else shape
    x = fn.tensor(rng.standard_normal(shape + (case["input_size"],)), requires_grad=True)
    directions = 2 if case["bidirectional"] else 1
    h_shape = (case["layers"] * directions,) + (() if case["unbatched"] else (case["batch"],)) + (case["hidden"],)
    hx = _state(kind, h_shape, rng) if case["with_hx"] else None
    hx_parts = () if hx is None else (tuple(hx) if kind == "LSTM" else (hx,))

    def f(x, *rest):
        return _flat(m(x, _hx(kind, rest[:len(hx_parts)]) if hx_parts else None))

    assert fn.gradcheck(f, x, *hx_parts, *m.parameters())


@given(kind=st.sampled_from(sorted(CELLS)), bias=st.booleans(), batch=st.integers(0, 2), input_size=st.integers(1, 3),
       hidden=st.integers(1, 3), with_hx=st.booleans(), seed=seeds)
def test_cells_gradcheck(kind, bias, batch, input_size, hidden, with_hx, seed):
    rng = np.random.default_rng(seed)
    cell = CELLS[kind](input_size, hidden, bias=bias, dtype=fn.float64)
    lead = (batch,) if batch else ()  # batch 0 here means the unbatched form
    x = fn.tensor(rng.standard_normal(lead + (input_size,)), requires_grad=True)
    hx = _state(kind, lead + (hidden,), rng) if with_hx else None
    parts = () if hx is None else (tuple(hx) if kind == "LSTM" else (hx,))

    def f(x, *rest):
        out = cell(x, _hx(kind, rest[:len(parts)]) if parts else None)
        return out if kind == "LSTM" else (out,)

    assert fn.gradcheck(f, x, *parts, *cell.parameters())


# -- without torch -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(MODULES))
def test_parameters_names_shapes_and_init(kind):
    m = MODULES[kind](3, 5, num_layers=2, bidirectional=True)
    g = GATES[kind] * 5
    expected = {}
    for layer, inputs in ((0, 3), (1, 10)):
        for suffix in ("", "_reverse"):
            expected.update({f"weight_ih_l{layer}{suffix}": (g, inputs), f"weight_hh_l{layer}{suffix}": (g, 5),
                             f"bias_ih_l{layer}{suffix}": (g,), f"bias_hh_l{layer}{suffix}": (g,)})
    state = m.state_dict()
    assert list(state) == list(expected)  # PyTorch's order too
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert all(p.dtype == np.float32 for p in m.parameters())
    values = np.abs(np.concatenate([p._data.ravel() for p in m.parameters()]))
    assert values.max() <= 1 / np.sqrt(5) and values.max() > 0.4 and 0.18 < values.mean() < 0.27  # U(-a, a)
    assert list(MODULES[kind](3, 5, bias=False).state_dict()) == ["weight_ih_l0", "weight_hh_l0"]
    assert len(m.all_weights) == 4 and len(m.all_weights[0]) == 4
    cell = CELLS[kind](3, 5)
    assert [(k, tuple(v.shape)) for k, v in cell.state_dict().items()] == [
        ("weight_ih", (g, 3)), ("weight_hh", (g, 5)), ("bias_ih", (g,)), ("bias_hh", (g,))]
    assert list(CELLS[kind](3, 5, bias=False).state_dict()) == ["weight_ih", "weight_hh"]
    assert MODULES[kind](2, 2, dtype=fn.float64).weight_hh_l0.dtype == np.float64


@pytest.mark.parametrize("kind", sorted(MODULES))
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_shapes_states_and_forms(kind, batch_first, bidirectional):
    rng = np.random.default_rng(3)
    m = MODULES[kind](3, 4, num_layers=2, batch_first=batch_first, bidirectional=bidirectional, dtype=fn.float64)
    d = 2 if bidirectional else 1
    v = rng.standard_normal((5, 2, 3))
    x = fn.tensor(v.transpose(1, 0, 2) if batch_first else v)
    out, *states = _flat(m(x))
    assert out.shape == ((2, 5, 4 * d) if batch_first else (5, 2, 4 * d))
    assert all(s.shape == (2 * d, 2, 4) for s in states) and len(states) == (2 if kind == "LSTM" else 1)
    # the last layer's final state is the output at the sequence's end (forward) or start (reverse)
    seq = out._data.transpose(1, 0, 2) if batch_first else out._data
    np.testing.assert_array_equal(states[0]._data[d], seq[-1, :, :4])
    if bidirectional:
        np.testing.assert_array_equal(states[0]._data[3], seq[0, :, 4:])
    # zeros given equal hx=None
    zeros = _hx(kind, [fn.zeros(2 * d, 2, 4, dtype=fn.float64)] * len(states))
    for a, b in zip(_flat(m(x, zeros)), (out, *states)):
        np.testing.assert_array_equal(a._data, b._data)
    # a given hx changes the result
    given_hx = _state(kind, (2 * d, 2, 4), rng, grad=False)
    assert not np.allclose(_flat(m(x, given_hx))[0]._data, out._data)
    # batched items are independent: the unbatched form of item 1 gives its slice
    item = fn.tensor(v[:, 1])
    parts = tuple(given_hx) if kind == "LSTM" else (given_hx,)
    single = _flat(m(item, _hx(kind, [p[:, 1] for p in parts])))
    full = _flat(m(x, given_hx))
    assert single[0].shape == (5, 4 * d)
    full_seq = full[0]._data.transpose(1, 0, 2) if batch_first else full[0]._data
    np.testing.assert_allclose(single[0]._data, full_seq[:, 1], rtol=1e-12, atol=1e-14)
    for s, f in zip(single[1:], full[1:]):
        assert s.shape == (2 * d, 4)
        np.testing.assert_allclose(s._data, f._data[:, 1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_one_layer_is_the_cell_in_a_loop(kind):
    rng = np.random.default_rng(4)
    m = MODULES[kind](3, 4, dtype=fn.float64)
    cell = CELLS[kind](3, 4, dtype=fn.float64)
    cell.load_state_dict({k[:-3]: v for k, v in m.state_dict().items()})
    x = fn.tensor(rng.standard_normal((6, 2, 3)))
    state = None
    outs = []
    for t in range(6):
        state = cell(x[t], state)
        outs.append((state[0] if kind == "LSTM" else state)._data)
    out, *final = _flat(m(x))
    np.testing.assert_allclose(out._data, np.stack(outs), rtol=1e-12, atol=1e-14)
    last = state if kind == "LSTM" else (state,)
    for f, s in zip(final, last):
        np.testing.assert_allclose(f._data[0], s._data, rtol=1e-12, atol=1e-14)


def test_lstm_and_gru_gate_formulas():
    rng = np.random.default_rng(5)
    x, h, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 2)), rng.standard_normal((2, 2))

    def sig(a):
        return 1 / (1 + np.exp(-a))

    lstm = nn.LSTMCell(3, 2, dtype=fn.float64)
    w_ih, w_hh, b_ih, b_hh = (p._data for p in lstm.parameters())
    i, f, g, o = np.split(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh, 4, axis=1)
    c1 = sig(f) * c + sig(i) * np.tanh(g)
    h1, c1_out = lstm(fn.tensor(x), (fn.tensor(h), fn.tensor(c)))
    np.testing.assert_allclose(c1_out._data, c1, rtol=1e-12)
    np.testing.assert_allclose(h1._data, sig(o) * np.tanh(c1), rtol=1e-12)
    gru = nn.GRUCell(3, 2, dtype=fn.float64)
    w_ih, w_hh, b_ih, b_hh = (p._data for p in gru.parameters())
    (ir, iz, i_n), (hr, hz, hn) = np.split(x @ w_ih.T + b_ih, 3, axis=1), np.split(h @ w_hh.T + b_hh, 3, axis=1)
    r, z = sig(ir + hr), sig(iz + hz)
    n = np.tanh(i_n + r * hn)
    np.testing.assert_allclose(gru(fn.tensor(x), fn.tensor(h))._data, (1 - z) * n + z * h, rtol=1e-12)
    relu = nn.RNNCell(3, 2, nonlinearity="relu", dtype=fn.float64)
    w_ih, w_hh, b_ih, b_hh = (p._data for p in relu.parameters())
    np.testing.assert_allclose(relu(fn.tensor(x), fn.tensor(h))._data,
                               np.maximum(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh, 0), rtol=1e-12)


def test_dropout_between_layers_in_training_only():
    x = fn.randn(4, 3, 5)
    m = nn.GRU(5, 6, num_layers=2, dropout=0.5)
    plain = nn.GRU(5, 6, num_layers=2)
    plain.load_state_dict(m.state_dict())
    m.eval()
    np.testing.assert_array_equal(m(x)[0]._data, plain(x)[0]._data)
    m.train()
    assert not np.allclose(m(x)[0]._data, plain(x)[0]._data)
    with pytest.warns(UserWarning, match="num_layers=1"):
        nn.LSTM(2, 2, dropout=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.LSTM(2, 2, num_layers=2, dropout=0.2)


def test_backward_reaches_every_parameter_and_repr():
    m = nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    out, (h, c) = m(fn.randn(2, 5, 3))
    (out.sum() + h.sum() + c.sum()).backward()
    assert all(p.grad is not None and np.abs(p.grad._data).sum() > 0 for p in m.parameters())
    assert repr(m) == "LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)"
    assert repr(nn.GRU(3, 4, bias=False, dropout=0.0)) == "GRU(3, 4, bias=False)"
    assert repr(nn.RNNCell(3, 4, nonlinearity="relu")) == "RNNCell(3, 4, nonlinearity=relu)"
    assert repr(nn.LSTMCell(3, 4, bias=False)) == "LSTMCell(3, 4, bias=False)"
    m.flatten_parameters()  # PyTorch programs call it; nothing to do


def test_errors():
    with pytest.raises(FreenetError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)
    with pytest.raises(FreenetError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(FreenetError, match="nonlinearity"):
        nn.RNNCell(3, 4, nonlinearity="gelu")
    with pytest.raises(FreenetError, match="hidden_size"):
        nn.GRU(3, 0)
    with pytest.raises(FreenetError, match="dropout"):
        nn.GRU(3, 2, dropout=1.5)
    m = nn.LSTM(3, 4)
    with pytest.raises(FreenetError, match="input_size=3"):
        m(fn.randn(5, 2, 4))
    with pytest.raises(FreenetError, match="dims"):
        m(fn.randn(3))
    with pytest.raises(FreenetError, match="dtype"):
        m(fn.randn(5, 2, 3, dtype=fn.float64))
    with pytest.raises(FreenetError, match="h_0"):
        m(fn.randn(5, 2, 3), (fn.zeros(1, 3, 4), fn.zeros(1, 2, 4)))
    with pytest.raises(FreenetError, match="c_0"):
        m(fn.randn(5, 2, 3), (fn.zeros(1, 2, 4), fn.zeros(2, 2, 4)))
    with pytest.raises(FreenetError, match="h_0"):
        nn.GRU(3, 4)(fn.randn(5, 3), fn.zeros(1, 1, 4))  # unbatched input takes a 2-d hx
    with pytest.raises(FreenetError, match="empty"):
        nn.GRU(3, 4)(fn.randn(0, 2, 3))
    with pytest.raises(FreenetError, match="shape"):
        nn.GRUCell(3, 4)(fn.randn(2, 3), fn.zeros(3, 4))


# -- with torch --------------------------------------------------------------------------------------

def _to_torch(torch, module):
    return {k: torch.from_numpy(v.numpy().copy()) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("kind,nonlinearity", [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", None), ("GRU", None)])
@pytest.mark.parametrize("layers,bidirectional,batch_first,unbatched",
                         [(1, False, False, False), (2, True, False, False), (2, False, True, False),
                          (1, True, True, False), (2, True, False, True)])
def test_modules_match_torch(kind, nonlinearity, layers, bidirectional, batch_first, unbatched):
    torch = _torch()
    rng = np.random.default_rng(6)
    extra = {"nonlinearity": nonlinearity} if nonlinearity else {}
    m = MODULES[kind](3, 4, layers, batch_first=batch_first, bidirectional=bidirectional, dtype=fn.float64,
                      **extra)
    ref = getattr(torch.nn, kind)(3, 4, layers, batch_first=batch_first, bidirectional=bidirectional,
                                  dtype=torch.float64, **extra)
    ref.load_state_dict(_to_torch(torch, m))
    d = 2 if bidirectional else 1
    shape = (5,) if unbatched else ((2, 5) if batch_first else (5, 2))
    v = rng.standard_normal(shape + (3,))
    h_shape = (layers * d,) + (() if unbatched else (2,)) + (4,)
    hvals = [rng.standard_normal(h_shape) for _ in range(2 if kind == "LSTM" else 1)]
    x, tx = fn.tensor(v, requires_grad=True), torch.tensor(v, requires_grad=True)
    hs = [fn.tensor(h, requires_grad=True) for h in hvals]
    ths = [torch.tensor(h, requires_grad=True) for h in hvals]
    ours, theirs = _flat(m(x, _hx(kind, hs))), _flat(ref(tx, _hx(kind, ths)))
    weights = [rng.standard_normal(o.shape) for o in ours]
    sum(((o * fn.tensor(w)).sum() for o, w in zip(ours, weights)), fn.tensor(0.0, dtype=fn.float64)).backward()
    sum((t * torch.from_numpy(w)).sum() for t, w in zip(theirs, weights)).backward()
    for o, t in zip(ours, theirs):
        assert o.shape == tuple(t.shape)
        np.testing.assert_allclose(o._data, t.detach().numpy(), rtol=1e-10, atol=1e-12)
    named = dict(ref.named_parameters())
    pairs = [(x, tx)] + list(zip(hs, ths)) + [(p, named[k]) for k, p in m.named_parameters()]
    for a, b in pairs:
        np.testing.assert_allclose(a.grad._data, b.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("unbatched", [False, True])
def test_cells_match_torch(kind, unbatched):
    torch = _torch()
    rng = np.random.default_rng(7)
    cell = CELLS[kind](3, 4, dtype=fn.float64)
    ref = getattr(torch.nn, kind + "Cell")(3, 4, dtype=torch.float64)
    ref.load_state_dict(_to_torch(torch, cell))
    lead = () if unbatched else (2,)
    v = rng.standard_normal(lead + (3,))
    hvals = [rng.standard_normal(lead + (4,)) for _ in range(2 if kind == "LSTM" else 1)]
    x, tx = fn.tensor(v, requires_grad=True), torch.tensor(v, requires_grad=True)
    hs = [fn.tensor(h, requires_grad=True) for h in hvals]
    ths = [torch.tensor(h, requires_grad=True) for h in hvals]
    ours, theirs = cell(x, _hx(kind, hs)), ref(tx, _hx(kind, ths))
    ours, theirs = (ours, theirs) if kind == "LSTM" else ((ours,), (theirs,))
    sum(o.sum() * (k + 1) for k, o in enumerate(ours)).backward()
    sum(t.sum() * (k + 1) for k, t in enumerate(theirs)).backward()
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o._data, t.detach().numpy(), rtol=1e-10, atol=1e-12)
    named = dict(ref.named_parameters())
    for a, b in [(x, tx)] + list(zip(hs, ths)) + [(p, named[k]) for k, p in cell.named_parameters()]:
        np.testing.assert_allclose(a.grad._data, b.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_state_dict_round_trips_through_torch(kind):
    torch = _torch()
    ref = getattr(torch.nn, kind)(3, 4, num_layers=2, bidirectional=True)  # float32, torch's own init
    m = MODULES[kind](3, 4, num_layers=2, bidirectional=True)
    result = m.load_state_dict({k: fn.tensor(v.numpy()) for k, v in ref.state_dict().items()})
    assert not result.missing_keys and not result.unexpected_keys
    v = np.random.default_rng(8).standard_normal((5, 2, 3)).astype(np.float32)
    with torch.no_grad():
        expected = _flat(ref(torch.from_numpy(v)))
    for o, t in zip(_flat(m(fn.tensor(v))), expected):
        np.testing.assert_allclose(o._data, t.numpy(), rtol=1e-5, atol=1e-6)
    back = getattr(torch.nn, kind)(3, 4, num_layers=2, bidirectional=True)
    back.load_state_dict(_to_torch(torch, m))
    for k, t in back.state_dict().items():
        np.testing.assert_array_equal(t.numpy(), ref.state_dict()[k].numpy())
    ref_cell = getattr(torch.nn, kind + "Cell")(3, 4)
    cell = CELLS[kind](3, 4)
    cell.load_state_dict({k: fn.tensor(v.numpy()) for k, v in ref_cell.state_dict().items()})
    with torch.no_grad():
        expected = ref_cell(torch.from_numpy(v[0]))
    ours = cell(fn.tensor(v[0]))
    for o, t in zip(*((ours, expected) if kind == "LSTM" else ((ours,), (expected,)))):
        np.testing.assert_allclose(o._data, t.numpy(), rtol=1e-5, atol=1e-6)
