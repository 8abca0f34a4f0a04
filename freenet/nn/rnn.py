"""Recurrent layers as in PyTorch: RNN, LSTM and GRU over sequences, and their one-step cells.

Each time step is composed from existing ops (linear, sigmoid, tanh, relu, mul, add), in a Python loop,
so autograd needs nothing new; the per-step outputs are stacked along time. Parameters carry PyTorch's
names, shapes, gate order (LSTM: i, f, g, o; GRU: r, z, n) and initialisation, so a state_dict loads
into the torch module and back. PackedSequence inputs and LSTM projections (``proj_size``) are not
supported.
"""

import math
import numbers
import warnings

import numpy as np

from freenet.errors import FreenetError
from freenet.factory import empty, zeros
from freenet.nn import functional as F
from freenet.nn import init
from freenet.nn.module import Module
from freenet.nn.parameter import Parameter
from freenet.ops.shape import cat, stack

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _step(mode, x, state, w_ih, w_hh, b_ih, b_hh):
    """One time step of ``mode`` for x (N, H_in) and state h (N, H), or (h, c) for LSTM; the new state."""
    h = state[0] if mode == "LSTM" else state
    gi = F.linear(x, w_ih, b_ih)
    gh = F.linear(h, w_hh, b_hh)
    if mode == "GRU":
        i_r, i_z, i_n = gi.chunk(3, 1)
        h_r, h_z, h_n = gh.chunk(3, 1)
        r = F.sigmoid(i_r + h_r)
        z = F.sigmoid(i_z + h_z)
        n = F.tanh(i_n + r * h_n)
        return n + z * (h - n)  # (1 - z) * n + z * h
    gates = gi + gh
    if mode == "RNN_TANH":
        return F.tanh(gates)
    if mode == "RNN_RELU":
        return F.relu(gates)
    i, f, g, o = gates.chunk(4, 1)
    c = F.sigmoid(f) * state[1] + F.sigmoid(i) * F.tanh(g)
    return F.sigmoid(o) * F.tanh(c), c


def _positive_int(owner, name, n):
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
        raise FreenetError(f"{owner}: {name} must be a positive int, not {n!r}")
    return int(n)


def _uniform_reset(module, generator):
    """PyTorch's initialisation of recurrent layers: every parameter ~ U(-1/sqrt(hidden), 1/sqrt(hidden))."""
    bound = 1.0 / math.sqrt(module.hidden_size)
    for weight in module.parameters():
        init.uniform_(weight, -bound, bound, generator=generator)


def _batched_input(module, input, weight, dims):
    """``input`` checked to have ``dims`` dims (or one fewer: unbatched, then given a batch dim of 1, at dim 1
    for a sequence, at dim 0 for a cell), its last of input_size and its dtype the weights'; and whether it was
    batched."""
    name = type(module).__name__
    if input.ndim not in (dims - 1, dims) or input.shape[-1] != module.input_size:
        raise FreenetError(f"{name}: expected input of {dims} dims (batched) or {dims - 1} (unbatched) ending in "
                           f"input_size={module.input_size}, got shape {tuple(input.shape)}")
    if input.dtype != weight.dtype:
        raise FreenetError(f"{name}: input dtype {input.dtype} does not match weight dtype {weight.dtype}; "
                           f"convert the input (input.to({weight.dtype})) or the module (module.to({input.dtype}))")
    batched = input.ndim == dims
    return (input if batched else input.unsqueeze(dims - 2)), batched


def _state_parts(module, hx, shape, batched):
    """hx as a tuple (h,) or (h, c) (LSTM), each checked to have ``shape`` (batched) or ``shape`` without its
    batch dim (the one before last), then given that dim back."""
    name, lstm = type(module).__name__, module.mode == "LSTM"
    parts = tuple(hx) if lstm else (hx,)
    if lstm and len(parts) != 2:
        raise FreenetError(f"{name}: hx must be a tuple (h_0, c_0)")
    want = shape if batched else shape[:-2] + shape[-1:]
    for part, label in zip(parts, ("h_0", "c_0")):
        if tuple(part.shape) != want:
            raise FreenetError(f"{name}: expected {label} of shape {want}, got {tuple(part.shape)}")
    return parts if batched else tuple(p.unsqueeze(len(shape) - 2) for p in parts)


class RNNBase(Module):
    """The multi-layer, optionally bidirectional recurrence shared by RNN, LSTM and GRU."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, dtype=None, *, generator=None):
        super().__init__()
        name = type(self).__name__
        self.mode = mode
        self.input_size = _positive_int(name, "input_size", input_size)
        self.hidden_size = _positive_int(name, "hidden_size", hidden_size)
        self.num_layers = _positive_int(name, "num_layers", num_layers)
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise FreenetError(f"{name}: dropout must be a number in [0, 1], not {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{name}: dropout applies between recurrent layers, so dropout={dropout} does nothing "
                          f"with num_layers=1", stacklevel=3)
        if proj_size != 0:
            raise FreenetError(f"{name}: proj_size={proj_size} (LSTM projections) is not supported by freenet")
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        self.dropout, self.proj_size = float(dropout), 0
        dtype = np.float32 if dtype is None else dtype
        gate_size = _GATES[mode] * self.hidden_size
        directions = 2 if self.bidirectional else 1
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.hidden_size * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                setattr(self, "weight_ih" + suffix, Parameter(empty(gate_size, layer_input, dtype=dtype)))
                setattr(self, "weight_hh" + suffix, Parameter(empty(gate_size, self.hidden_size, dtype=dtype)))
                if self.bias:
                    setattr(self, "bias_ih" + suffix, Parameter(empty(gate_size, dtype=dtype)))
                    setattr(self, "bias_hh" + suffix, Parameter(empty(gate_size, dtype=dtype)))
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        _uniform_reset(self, generator)

    def flatten_parameters(self):
        """Does nothing: PyTorch compacts the weights for cuDNN here; freenet has no cuDNN."""

    def _weights(self, layer, direction):
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if self.bias else ())
        weights = [getattr(self, n + suffix) for n in names]
        return weights if self.bias else weights + [None, None]

    @property
    def all_weights(self):
        """The parameters of each layer and direction, as lists: [w_ih, w_hh, b_ih, b_hh] (or without biases)."""
        return [[w for w in self._weights(layer, d) if w is not None]
                for layer in range(self.num_layers) for d in range(2 if self.bidirectional else 1)]

    def forward(self, input, hx=None):
        lstm = self.mode == "LSTM"
        input, batched = _batched_input(self, input, self.weight_ih_l0, 3)
        if batched and self.batch_first:
            input = input.transpose(0, 1)
        length, batch = input.shape[0], input.shape[1]
        if length == 0:
            raise FreenetError(f"{type(self).__name__}: the input sequence is empty")
        directions = 2 if self.bidirectional else 1
        expected = (self.num_layers * directions, batch, self.hidden_size)
        if hx is None:
            h0 = zeros(batch, self.hidden_size, dtype=input.dtype)
            states = [(h0, h0) if lstm else h0] * expected[0]
        else:
            parts = _state_parts(self, hx, expected, batched)
            states = [tuple(p[k] for p in parts) if lstm else parts[0][k] for k in range(expected[0])]
        xs = [input[t] for t in range(length)]
        finals = []
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                xs = [F.dropout(x, self.dropout, True) for x in xs]
            outputs = []
            for direction in range(directions):
                weights = self._weights(layer, direction)
                state = states[layer * directions + direction]
                hs = [None] * length
                for t in (reversed(range(length)) if direction else range(length)):
                    state = _step(self.mode, xs[t], state, *weights)
                    hs[t] = state[0] if lstm else state
                outputs.append(hs)
                finals.append(state)
            xs = outputs[0] if directions == 1 else [cat(pair, 1) for pair in zip(*outputs)]
        output = stack(xs, 1 if batched and self.batch_first else 0)
        h_n = stack([s[0] for s in finals] if lstm else finals, 0)
        c_n = stack([s[1] for s in finals], 0) if lstm else None
        if not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if lstm else None
        return (output, (h_n, c_n)) if lstm else (output, h_n)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act tanh or relu (``nonlinearity``).

    forward(input, hx=None): input (L, N, H_in), (N, L, H_in) with ``batch_first`` or unbatched (L, H_in);
    hx (num_layers * directions, N, H) or zeros. Returns (output (L, N, directions * H), h_n).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=None, *, generator=None):
        if nonlinearity not in ("tanh", "relu"):
            raise FreenetError(f"RNN: nonlinearity must be 'tanh' or 'relu', not {nonlinearity!r}")
        self.nonlinearity = nonlinearity  # a plain attribute: fine before Module.__init__
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, 0, dtype, generator=generator)


class LSTM(RNNBase):
    """Long short-term memory, gates i, f, g, o (in that order in the weights' rows):
    c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t).

    forward(input, hx=None) with hx = (h_0, c_0) or zeros; returns (output, (h_n, c_n)), shapes as for RNN.
    ``proj_size`` other than 0 is not supported.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, dtype=None, *, generator=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, dtype, generator=generator)


class GRU(RNNBase):
    """Gated recurrent unit, gates r, z, n: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),
    h_t = (1 - z) * n + z * h_{t-1}. forward(input, hx=None) returns (output, h_n), shapes as for RNN.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype=None, *, generator=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0,
                         dtype, generator=generator)


class RNNCellBase(Module):
    """One step of a recurrence: parameters weight_ih, weight_hh, bias_ih, bias_hh as in PyTorch."""

    def __init__(self, mode, input_size, hidden_size, bias, dtype, generator):
        super().__init__()
        name = type(self).__name__
        self.mode = mode
        self.input_size = _positive_int(name, "input_size", input_size)
        self.hidden_size = _positive_int(name, "hidden_size", hidden_size)
        self.bias = bool(bias)
        dtype = np.float32 if dtype is None else dtype
        gate_size = _GATES[mode] * self.hidden_size
        self.weight_ih = Parameter(empty(gate_size, self.input_size, dtype=dtype))
        self.weight_hh = Parameter(empty(gate_size, self.hidden_size, dtype=dtype))
        if self.bias:
            self.bias_ih = Parameter(empty(gate_size, dtype=dtype))
            self.bias_hh = Parameter(empty(gate_size, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        _uniform_reset(self, generator)

    def forward(self, input, hx=None):
        """input (N, H_in) or (H_in); hx (N, H) (LSTM: (h, c)) or zeros; the new state, batched like input."""
        lstm = self.mode == "LSTM"
        input, batched = _batched_input(self, input, self.weight_ih, 2)
        if hx is None:
            h0 = zeros(input.shape[0], self.hidden_size, dtype=input.dtype)
            state = (h0, h0) if lstm else h0
        else:
            parts = _state_parts(self, hx, (input.shape[0], self.hidden_size), batched)
            state = parts if lstm else parts[0]
        out = _step(self.mode, input, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        if batched:
            return out
        return tuple(o.squeeze(0) for o in out) if lstm else out.squeeze(0)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity=relu"
        return s


class RNNCell(RNNCellBase):
    """h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act tanh or relu (``nonlinearity``)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=None, *, generator=None):
        if nonlinearity not in ("tanh", "relu"):
            raise FreenetError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', not {nonlinearity!r}")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, bias, dtype,
                         generator)
        self.nonlinearity = nonlinearity


class LSTMCell(RNNCellBase):
    """One LSTM step: forward(input, (h, c)) returns (h', c'); gates i, f, g, o as in LSTM."""

    def __init__(self, input_size, hidden_size, bias=True, dtype=None, *, generator=None):
        super().__init__("LSTM", input_size, hidden_size, bias, dtype, generator)


class GRUCell(RNNCellBase):
    """One GRU step: forward(input, h) returns h'; gates r, z, n as in GRU."""

    def __init__(self, input_size, hidden_size, bias=True, dtype=None, *, generator=None):
        super().__init__("GRU", input_size, hidden_size, bias, dtype, generator)
