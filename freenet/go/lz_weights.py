"""Leela Zero's v1 weight format: export freenet nets to it and import Leela Zero nets from it.

The file is text: the line ``1``, then one line of space-separated numbers per tensor, in this order
(F filters, B residual blocks, N = 19 for Leela Zero itself):

    input conv:      weights (F x 18 x 3 x 3), biases (F), BN means (F), BN variances (F)
    each block:      the same four lines for conv 1, then for conv 2 (F x F x 3 x 3)
    policy head:     conv weights (2 x F x 1 x 1), biases, means, variances (2 each),
                     fc weights (N*N+1 x 2*N*N), fc biases (N*N+1)
    value head:      conv weights (1 x F x 1 x 1), bias, mean, variance (1 each),
                     fc1 weights (256 x N*N), fc1 biases (256), fc2 weights (1 x 256), fc2 bias (1)

so 19 + 8 B lines. Convolution weights are [out][in][y][x]; fully connected ones [out][in]; the fc
inputs are the head's planes flattened channel by channel, points numbered y * N + x from the bottom
row (as freenet numbers them). Leela Zero's batch norm has no scale or offset: it computes
``(conv(x) + bias - mean) / sqrt(variance + 1e-5)``. Export folds freenet's BN scale (gamma) and
offset (beta) into the weights and means; import puts the biases into the means and sets gamma = 1,
beta = 0, so both directions compute the same function. The value head's tanh output v becomes
Leela Zero's winrate (1 + v) / 2 for the side to move.
"""

import gzip
import math

import numpy as np

from freenet.errors import FreenetError
from freenet.go import features
from freenet.go.net import OPTIONS, GoNet, NetConfig

EPS = 1e-5  # Leela Zero's batch-norm epsilon (freenet's BatchNorm2d default too)


def _bn_parts(conv, bn):
    """(weights, biases, means, variances) of conv + BN in Leela Zero's form (BN scale and offset folded)."""
    w = conv.weight._data.astype(np.float64)
    gamma, beta = bn.weight._data.astype(np.float64), bn.bias._data.astype(np.float64)
    mean, var = bn.running_mean._data.astype(np.float64), bn.running_var._data.astype(np.float64)
    if bn.eps != EPS:
        # keep Leela Zero's epsilon: rescale so that gamma / sqrt(var + eps) is unchanged
        scale = np.sqrt(var + EPS) / np.sqrt(var + bn.eps)
        gamma = gamma * scale
    bias = np.zeros(w.shape[0]) if conv.bias is None else conv.bias._data.astype(np.float64)
    # gamma (conv + bias - mean) / s + beta  ==  (gamma conv - (gamma (mean - bias) - beta s)) / s
    s = np.sqrt(var + EPS)
    weights = w * gamma.reshape(-1, 1, 1, 1)
    means = gamma * (mean - bias) - beta * s
    return weights, np.zeros_like(means), means, var


def _line(array):
    return " ".join(f"{v:.9g}" for v in np.asarray(array, np.float32).ravel().tolist())


def export_lz(net, path):
    """Writes ``net`` (a GoNet) as a Leela Zero v1 weight file. Leela Zero itself plays 19x19 only with a
    256-unit value layer; other sizes are written too (for freenet's own import) with a warning returned."""
    c = net.config
    options = [name for name in OPTIONS if getattr(c, name)]
    if options:
        raise FreenetError(f"cannot export to Leela Zero's format: the net has {', '.join(options)} on "
                           "(KataGo-style options that Leela Zero's nets lack)")
    tensors = []
    tensors += _bn_parts(net.input_conv, net.input_bn)
    for block in net.blocks:
        tensors += _bn_parts(block.conv1, block.bn1)
        tensors += _bn_parts(block.conv2, block.bn2)
    tensors += _bn_parts(net.policy_conv, net.policy_bn)
    tensors += [net.policy_fc.weight._data, net.policy_fc.bias._data]
    tensors += _bn_parts(net.value_conv, net.value_bn)
    tensors += [net.value_fc1.weight._data, net.value_fc1.bias._data, net.value_fc2.weight._data,
                net.value_fc2.bias._data]
    text = "1\n" + "\n".join(_line(t) for t in tensors) + "\n"
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt") as f:
        f.write(text)
    if c.size != 19 or c.value_hidden != 256:
        return (f"note: Leela Zero plays 19x19 nets with a 256-unit value layer; this net is {c.size}x{c.size} "
                f"with {c.value_hidden}, so only freenet (import-lz) will read it")
    return None


def _read_lines(path):
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rt", encoding="ascii", errors="strict") as f:
            return f.read().split("\n")
    except FileNotFoundError:
        raise FreenetError(f"no such weight file: {path}") from None
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as e:
        raise FreenetError(f"{path}: cannot read it as a Leela Zero weight file ({e})") from None


def _parse(path, lineno, text, expected, what):
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError:
        bad = next(t for t in text.split() if not _is_number(t))
        raise FreenetError(f"{path}: line {lineno} ({what}): {bad[:20]!r} is not a number") from None
    if values.size != expected:
        raise FreenetError(f"{path}: line {lineno} ({what}) has {values.size} numbers, expected {expected} "
                           "(truncated or not a Leela Zero v1 file?)")
    if not np.isfinite(values).all():
        raise FreenetError(f"{path}: line {lineno} ({what}) has a number that is not finite")
    return values.astype(np.float32)


def _is_number(t):
    try:
        float(t)
        return True
    except ValueError:
        return False


def import_lz(path):
    """A GoNet with the weights of a Leela Zero v1 file (any board size the file's shapes give)."""
    lines = _read_lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise FreenetError(f"{path}: empty file")
    version = lines[0].strip()
    if version != "1":
        hint = " (v2 is ELF's format, whose value head Leela Zero reads differently)" if version == "2" else ""
        raise FreenetError(f"{path}: not a Leela Zero v1 weight file: the first line is {version[:20]!r}, "
                           f"expected '1'{hint}")
    n = len(lines)
    if n < 19 or (n - 19) % 8:
        raise FreenetError(f"{path}: {n} lines; a Leela Zero v1 file has 19 + 8 x blocks (truncated?)")
    blocks = (n - 19) // 8
    filters = len(lines[2].split())
    if filters < 1:
        raise FreenetError(f"{path}: line 3 (input conv biases) is empty")
    pass_index = 1 + 4 + 8 * blocks + 5  # the policy fc biases
    moves = len(lines[pass_index].split())
    size = int(round(math.sqrt(max(moves - 1, 0))))
    if size * size + 1 != moves or not 5 <= size <= 19:
        raise FreenetError(f"{path}: line {pass_index + 1} (policy fc biases) has {moves} numbers, not N*N+1 for "
                           "a board size N from 5 to 19")
    hidden = len(lines[pass_index + 6].split())
    if hidden < 1:
        raise FreenetError(f"{path}: line {pass_index + 7} (value fc1 biases) is empty")
    net = GoNet(NetConfig(size, blocks, filters, hidden))
    at = [1]

    def take(expected, what):
        i = at[0]
        at[0] += 1
        return _parse(path, i + 1, lines[i], expected, what)

    def conv_bn(conv, bn, cin, cout, k, what):
        w = take(cout * cin * k * k, f"{what} weights").reshape(cout, cin, k, k)
        b = take(cout, f"{what} biases")
        mean = take(cout, f"{what} BN means")
        var = take(cout, f"{what} BN variances")
        if (var < 0).any():
            raise FreenetError(f"{path}: line {at[0]} ({what} BN variances) has a negative variance")
        conv.weight._data[...] = w
        bn.weight._data[...] = 1.0
        bn.bias._data[...] = 0.0
        bn.running_mean._data[...] = mean - b
        bn.running_var._data[...] = var
        bn.eps = EPS

    F, N = filters, size
    conv_bn(net.input_conv, net.input_bn, features.PLANES, F, 3, "input conv")
    for i, block in enumerate(net.blocks):
        conv_bn(block.conv1, block.bn1, F, F, 3, f"block {i + 1} conv 1")
        conv_bn(block.conv2, block.bn2, F, F, 3, f"block {i + 1} conv 2")
    conv_bn(net.policy_conv, net.policy_bn, F, 2, 1, "policy conv")
    net.policy_fc.weight._data[...] = take((N * N + 1) * 2 * N * N, "policy fc weights").reshape(N * N + 1, 2 * N * N)
    net.policy_fc.bias._data[...] = take(N * N + 1, "policy fc biases")
    conv_bn(net.value_conv, net.value_bn, F, 1, 1, "value conv")
    net.value_fc1.weight._data[...] = take(hidden * N * N, "value fc1 weights").reshape(hidden, N * N)
    net.value_fc1.bias._data[...] = take(hidden, "value fc1 biases")
    net.value_fc2.weight._data[...] = take(hidden, "value fc2 weights").reshape(1, hidden)
    net.value_fc2.bias._data[...] = take(1, "value fc2 bias")
    net.eval()
    return net
